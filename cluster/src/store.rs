//! [`EtcdStore`]: the registry's [`Storage`] in an etcd cluster. Every record the redb
//! store keeps is a key under the cluster's [`Layout`]; component bytes stay on this
//! node's disk, content-addressed (etcd is not a blob store), and a node that lacks one
//! gets it from another node (see [`ComponentSource`]).
//!
//! Lookups never wait for etcd: the signed manifests of the live registrations are held
//! in memory (loaded at open, kept by every commit), so the one store read a lookup makes
//! is a map read. Only the elected node writes ([`Fence`]); the others are standbys.

use crate::etcd::Etcd;
use crate::held;
use crate::layout::{self, Layout};
use crate::read;
use crate::write::{self, Fence};
use courier_protocol::{AuditEntry, ContentHash, HistoryEntry, LeaseId, SignedManifest, codec};
use courier_registry::store_records::{decode_manifest, row_from_stored};
use courier_registry::{Batch, BlobDir, Storage, StoreError, StoredLease, StoredMeta, UsageRecord};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a node gets component bytes it lacks: another node of the cluster (the store
/// checks them against their hash).
pub use courier_registry::ComponentSource;

/// The manifests of live registrations and the components they name.
#[derive(Default)]
struct Held {
    manifests: HashMap<LeaseId, SignedManifest>,
    refs: HashMap<ContentHash, u64>,
    /// History entries in etcd (this node is the only writer while it leads).
    history_len: u64,
    /// The etcd revision the registrations and lease rows were last loaded at.
    loaded_at: i64,
}

impl Held {
    fn add(&mut self, lease: LeaseId, m: SignedManifest) {
        if let Ok(p) = m.peek() {
            *self.refs.entry(p.component_hash).or_default() += 1;
        }
        if let Some(old) = self.manifests.insert(lease, m) {
            self.unref(&old);
        }
    }

    /// Drops `lease`; returns its component if no registration names it any more.
    fn remove(&mut self, lease: &LeaseId) -> Option<ContentHash> {
        let old = self.manifests.remove(lease)?;
        self.unref(&old)
    }

    fn unref(&mut self, m: &SignedManifest) -> Option<ContentHash> {
        let hash = m.peek().ok()?.component_hash;
        let n = self.refs.get_mut(&hash)?;
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.refs.remove(&hash);
            return Some(hash);
        }
        None
    }
}

/// The registry's store in etcd, components on this node's disk.
pub struct EtcdStore {
    etcd: Arc<Etcd>,
    layout: Layout,
    fence: Option<Fence>,
    /// The node whose store this is (lease rows name it).
    holder: String,
    /// A standby's store: reads only, every write refused but the rows of the leases it
    /// renewed, under `membership`.
    read_only: bool,
    /// The standby's membership key and its create revision.
    membership: Option<Fence>,
    blobs: Arc<BlobDir>,
    held: Arc<Mutex<Held>>,
    source: Option<Box<dyn ComponentSource>>,
}

/// A standby's handle on its store's manifests and components, for what the writer
/// commits after the store was loaded (see [`crate::Standby`]).
#[derive(Clone)]
pub struct HeldManifests {
    held: Arc<Mutex<Held>>,
    blobs: Arc<BlobDir>,
}

impl HeldManifests {
    /// A registration the writer committed: lookups read its manifest from here.
    pub fn put(&self, lease: LeaseId, manifest: SignedManifest) {
        lock(&self.held).add(lease, manifest);
    }

    /// The etcd revision the store's registrations and lease rows were last loaded at: a
    /// change to either at or before it is in what was loaded.
    pub fn loaded_at(&self) -> i64 {
        lock(&self.held).loaded_at
    }

    /// A registration the writer removed; its component goes when nothing names it.
    pub fn remove(&self, lease: &LeaseId) {
        let gone = lock(&self.held).remove(lease);
        if let Some(hash) = gone
            && let Err(e) = self.blobs.remove(&hash)
        {
            tracing::warn!(%hash, "cannot delete unregistered component: {e}");
        }
    }
}

/// A `lease/<lease>` value's row (what follows it names its holder).
pub(crate) fn lease_row(v: &[u8]) -> Option<courier_registry::LeaseRow> {
    let [a, b, c] = layout::be_n::<3>(v)?;
    Some(row_from_stored((a, b, c)))
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("etcd", &self.etcd)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// The store of cluster `layout` in `etcd`, writing under `fence` (the node's election
    /// key; `None` only for tools and tests that write alone), components in
    /// `dir/blobs`. Makes the cluster's id on first use.
    pub fn open(
        etcd: Arc<Etcd>,
        layout: Layout,
        fence: Option<Fence>,
        dir: &Path,
        source: Option<Box<dyn ComponentSource>>,
    ) -> Result<Self, StoreError> {
        let blobs = Arc::new(BlobDir::open(dir.join("blobs"))?);
        let store = Self {
            etcd,
            layout,
            fence,
            holder: String::new(),
            read_only: false,
            membership: None,
            blobs,
            held: Arc::default(),
            source,
        };
        store.ensure_id()?;
        store.held().history_len = read::count(&store.etcd, &store.layout, "hist/")?;
        Ok(store)
    }

    /// This store for a reader: every write is refused (`Unavailable`).
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// This store for a standby: every write is refused (`Unavailable`) but that of the
    /// rows of the leases it renewed, which go under its `membership` key (see `held.rs`).
    pub fn standby(mut self, membership: Fence) -> Self {
        self.read_only = true;
        self.membership = Some(membership);
        self
    }

    /// Names `node` as the holder of the lease rows this store writes.
    pub fn held_by(mut self, node: &str) -> Self {
        self.holder = node.to_string();
        self
    }

    /// The directory of this node's components.
    pub(crate) fn blobs(&self) -> Arc<BlobDir> {
        self.blobs.clone()
    }

    /// The handle a standby keeps its manifests current with.
    pub fn held_manifests(&self) -> HeldManifests {
        HeldManifests {
            held: self.held.clone(),
            blobs: self.blobs.clone(),
        }
    }

    /// Refuses a standby's writes.
    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::Unavailable(
                "a standby does not write: the cluster's writer does".into(),
            ));
        }
        Ok(())
    }

    /// The cluster's id, made once by whichever node comes first.
    pub fn cluster_id(&self) -> Result<String, StoreError> {
        read::one(&self.etcd, self.layout.key("meta/registry_id"))?
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| StoreError::Corrupt("meta registry_id".into()))
            .map(Option::unwrap_or_default)
    }

    /// The last writer's wall-clock time at its last flush (0: never written).
    pub fn last_alive_ms(&self) -> Result<u64, StoreError> {
        read::meta_u64(&self.etcd, &self.layout, "last_alive_ms")
    }

    fn ensure_id(&self) -> Result<(), StoreError> {
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        let key = self.layout.key("meta/registry_id");
        let id = hex::encode(rand::random::<[u8; 16]>());
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, id, None)]);
        self.etcd
            .run("make the cluster id", move |mut c| async move {
                c.txn(txn).await
            })?;
        Ok(())
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        lock(&self.held)
    }

    /// Makes sure the component of `m` is on this disk, from another node if need be.
    fn have_component(&self, m: &SignedManifest) -> bool {
        let Ok(p) = m.peek() else { return false };
        let hash = p.component_hash;
        if matches!(self.blobs.size(&hash), Ok(Some(n)) if n == p.component_size) {
            return true;
        }
        let Some(bytes) = self
            .source
            .as_ref()
            .and_then(|s| s.fetch(&hash, p.component_size))
        else {
            return false;
        };
        ContentHash::of(&bytes) == hash && self.blobs.put(&hash, &bytes).is_ok()
    }
}

impl Storage for EtcdStore {
    fn load_meta(&self) -> Result<StoredMeta, StoreError> {
        read::load_meta(&self.etcd, &self.layout)
    }

    /// Registrations whose component is on no node this one can reach are returned as
    /// unreadable (the restart rule deletes them; their vendors' keepers register again,
    /// bytes included, at their next renewal).
    fn load_leases(&self, each: &mut dyn FnMut(StoredLease)) -> Result<Vec<LeaseId>, StoreError> {
        // Rows and registrations at one revision: a registration committed between two
        // reads would otherwise be found without its row.
        let mut rows = HashMap::new();
        let (lease_rows, revision) = read::all_at(&self.etcd, &self.layout, "lease/", 0)?;
        for (k, v) in lease_rows {
            match (layout::parse_lease(&k), lease_row(&v)) {
                (Some(lease), Some(row)) => {
                    rows.insert(lease, row);
                }
                _ => tracing::warn!(key = %k, "skipping an unreadable lease row"),
            }
        }
        let mut bad = Vec::new();
        let mut held = Held::default();
        for (k, v) in read::all_at(&self.etcd, &self.layout, "reg/", revision)?.0 {
            let Some(lease) = layout::parse_lease(&k) else {
                tracing::warn!(key = %k, "skipping a registration under an unreadable key");
                continue;
            };
            let manifest = match decode_manifest(&v) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%lease, "skipping stored registration: {e}");
                    bad.push(lease);
                    continue;
                }
            };
            let Some(row) = rows.get(&lease).copied() else {
                tracing::warn!(%lease, "skipping stored registration without a lease row");
                bad.push(lease);
                continue;
            };
            if !self.have_component(&manifest) {
                tracing::warn!(
                    %lease,
                    "dropping a registration whose component no reachable node holds \
                     (its vendor registers again)"
                );
                bad.push(lease);
                continue;
            }
            held.add(lease, manifest.clone());
            each(StoredLease {
                lease,
                manifest,
                row,
            });
        }
        let mut mine = self.held();
        held.history_len = mine.history_len;
        held.loaded_at = revision;
        *mine = held;
        Ok(bad)
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if let (true, Some(membership)) = (batch.is_lease_rows_only(), &self.membership) {
            return held::commit_rows(
                &self.etcd,
                &self.layout,
                &self.holder,
                membership,
                &batch.leases,
            );
        }
        if batch.touches_mirror() {
            return Err(StoreError::Unavailable(
                "a cluster does not mirror a parent registry: run a single registry as the child"
                    .into(),
            ));
        }
        if batch.touches_rollouts() {
            return Err(StoreError::Unavailable(
                "a cluster does not run staged rollouts yet: run them at a single registry".into(),
            ));
        }
        self.writable()?;
        let writes = write::plan(&self.etcd, &self.layout, batch, &self.holder)?;
        if !writes.is_empty() {
            writes.commit(&self.etcd, self.fence.as_ref())?;
        }
        let mut gone = Vec::new();
        {
            let mut held = self.held();
            for (lease, m) in &batch.registrations {
                held.add(*lease, m.clone());
            }
            for (lease, _) in &batch.delete {
                gone.extend(held.remove(lease));
            }
        }
        for hash in gone {
            if let Err(e) = self.blobs.remove(&hash) {
                tracing::warn!(%hash, "cannot delete unregistered component: {e}");
            }
        }
        Ok(())
    }

    fn manifests(&self, leases: &[LeaseId]) -> Result<Vec<Option<SignedManifest>>, StoreError> {
        let held = self.held();
        Ok(leases
            .iter()
            .map(|l| held.manifests.get(l).cloned())
            .collect())
    }

    fn append_history(
        &self,
        client: &str,
        seq: u64,
        entry: &HistoryEntry,
        keep: u64,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let l = &self.layout;
        let client_hex = hex::encode(client);
        let mut w = write::Writes::default();
        w.put(
            l.key(&format!("hist/{}", layout::num(seq))),
            client_hex.clone().into_bytes(),
        );
        w.put(
            l.key(&format!("histc/{client_hex}/{}", layout::num(seq))),
            codec::encode(entry),
        );
        let mark = read::meta_u64(&self.etcd, l, "history_seq")?.max(seq);
        w.mark(l.key("meta/history_seq"), layout::be(mark));
        w.commit(&self.etcd, self.fence.as_ref())?;
        let len = {
            let mut held = self.held();
            held.history_len += 1;
            held.history_len
        };
        let excess = len.saturating_sub(keep.max(1));
        if excess > 0 {
            let mut w = write::Writes::default();
            let mut n = 0u64;
            for (seq, c) in read::first(&self.etcd, l, "hist/", excess)? {
                let Ok(c) = String::from_utf8(c) else {
                    continue;
                };
                w.delete(l.key(&format!("hist/{seq}")));
                w.delete(l.key(&format!("histc/{c}/{seq}")));
                w.end();
                n += 1;
            }
            w.commit(&self.etcd, self.fence.as_ref())?;
            let mut held = self.held();
            held.history_len = held.history_len.saturating_sub(n);
        }
        Ok(())
    }

    fn history(
        &self,
        client: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        use etcd_client::{GetOptions, SortOrder, SortTarget};
        let start = self.layout.key(&format!("histc/{}/", hex::encode(client)));
        let end = read::prefix_end(&start);
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
        let resp = self.etcd.run("history", move |mut c| async move {
            c.get(
                start,
                Some(
                    GetOptions::new()
                        .with_range(end)
                        .with_limit(limit_i)
                        .with_sort(SortTarget::Key, SortOrder::Descend),
                ),
            )
            .await
        })?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for kv in resp.kvs().iter().take(limit) {
            bytes = bytes.saturating_add(kv.value().len());
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(codec::decode(kv.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    fn last_history(&self, client: &str) -> Result<Option<HistoryEntry>, StoreError> {
        Ok(self.history(client, 1, usize::MAX)?.pop())
    }

    fn usage_since(&self, since_hour_ms: u64) -> Result<Vec<UsageRecord>, StoreError> {
        read::usage_since(&self.etcd, &self.layout, since_hour_ms)
    }

    fn audit(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        read::audit(&self.etcd, &self.layout, from_seq, limit)
    }

    fn put_component(&self, hash: &ContentHash, bytes: &[u8]) -> Result<(), StoreError> {
        self.blobs.put(hash, bytes)
    }

    fn drop_unclaimed_component(&self, hash: &ContentHash) -> Result<(), StoreError> {
        if self.held().refs.contains_key(hash) {
            return Ok(());
        }
        Ok(self.blobs.remove(hash)?)
    }

    fn component_size(&self, hash: &ContentHash) -> Result<Option<u64>, StoreError> {
        self.blobs.size(hash)
    }

    fn read_component(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.blobs.read(hash)
    }
}
