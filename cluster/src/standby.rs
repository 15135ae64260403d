//! A standby node's registry: the cluster's state read from etcd and kept current with a
//! watch, so that a standby answers lookups and fetches (and the operators' reads) for
//! every registration the writer acknowledged, shortly after it did, and renews the leases
//! of the vendors connected to it (writing their rows behind, see `held.rs`), while the
//! writer alone registers and expires.
//!
//! Opening reads the store at or after revision `r` (a read of `reg/` and `lease/`, the
//! keys and controls); the watch then replays every change from `r + 1` in order, so
//! nothing between is missed. A change to `reg/` or `lease/` at or before the revision
//! they were read at is skipped (applying it over the newer state would show lookups the
//! past); other replays are applied again, harmlessly.
//! Per watch answer (one or more of etcd's revisions):
//! - `reg/<lease>` put, with the `lease/<lease>` row of the same transaction: a
//!   registration; its component is copied from the writer first (pinned, hash-checked),
//!   so a client that finds it here can fetch it here;
//! - `lease/<lease>` put alone: a flush's renewal (the lease's new end), unless this node
//!   wrote it;
//! - `reg/<lease>` delete: gone (expired, cancelled, replaced, revoked);
//! - `meta/last_alive_ms`: the writer's clock at its flush (see below);
//! - `fresh/`: a vendor's freshness statement, checked again and kept (lookups hand it out);
//! - `client/`: a client's record, kept;
//! - `name/` and `grant/` put: a new name's first owner, a grant (a burst of new vendors
//!   claims a name each, so these must not cost a read of the whole store);
//! - keys, controls and roots, a name changing owner, a grant taken away: rarer, and what
//!   they change reaches into the whole state, so the standby reads the store again;
//! - the election (`leader/`): the writer its lease pages name;
//! - and, from every answer, the cluster's events, numbered as every node numbers them
//!   (`feed.rs`).
//!
//! Time left on a lease is worked out on the writer's clock, never this machine's: the
//! writer's `last_alive_ms` at its latest flush, carried on by this node's monotonic clock
//! since it was seen.

use crate::ClusterError;
use crate::clock::wall_ms;
use crate::etcd::{Changes, WatchError};
use crate::feed;
use crate::layout::{self, Layout};
use crate::mirror::{self, Copier};
use crate::node::Node;
use crate::store::{HeldManifests, lease_row};
use crate::write::row_holder;
use courier_protocol::{
    ClientInfo, ClusterNodes, LeaseId, SignedFreshness, SignedManifest, VendorKey, codec,
};
use courier_registry::store_records::decode_manifest;
use courier_registry::{EventRing, Followed, LeaseRow, Registry, RegistryConfig, StoredLease};
use etcd_client::{Client, EventType};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Prefixes whose changes make a standby read the store again (rare, and they reach into
/// the whole state). A new name or grant is applied on its own; a name that changes owner
/// or a grant taken away (both only with a key rotation) reads the store again too.
const RELOAD_ON: [&str; 9] = [
    "rot/", "revoc/", "ban/", "drain/", "lrev/", "opst/", "root/", "deleg/", "child/",
];

/// How often a standby says in etcd how far it has applied the writer's commits.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A standby's registry and the tasks that keep it current and report how far it is.
/// Dropping it stops them.
pub struct Standby {
    registry: Arc<Registry>,
    applied: Arc<AtomicI64>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Standby {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby").finish_non_exhaustive()
    }
}

impl Standby {
    /// Opens `node`'s standby registry on the cluster's store (components in
    /// `dir/blobs`), and follows the writer's commits from then on. Blocking (etcd reads).
    pub fn open(node: &Node, dir: &Path, config: RegistryConfig) -> Result<Self, ClusterError> {
        let store = node.store(dir, None)?.standby(node.membership());
        let (held, blobs) = (store.held_manifests(), store.blobs());
        let layout = node.layout().clone();
        let key = layout.key("meta/registry_id");
        let revision = node
            .etcd()
            .run("read the revision", move |c| revision_now(c, key))?;
        // The writer's clock at its last flush, carried on by this one within the bounds a
        // takeover uses (the flush may be seconds old).
        let clock = WriterClock::start(crate::takeover_wall_ms(
            store.last_alive_ms()?,
            wall_ms(),
            node.session_ttl(),
            config.flush_interval,
        ));
        let registry = Registry::open_standby(config, Box::new(store), clock.now_ms())
            .map_err(ClusterError::Standby)?;
        registry.number_events_from_store(feed::after(revision));
        registry.set_cluster(ClusterNodes {
            answered_by: node.name().to_string(),
            writer: node.leader()?,
        });
        let registry = Arc::new(registry);
        let applied = Arc::new(AtomicI64::new(revision));
        let applied_here = applied.clone();
        let progress = report_progress(
            node.etcd().client(),
            node.layout().key(&format!("progress/{}", node.name())),
            node.session_id(),
            applied.clone(),
        );
        let follower = Follower {
            loaded_at: held.loaded_at(),
            applied,
            name: node.name().to_string(),
            client: node.etcd().client(),
            copier: Copier::new(node.etcd().client(), layout.clone(), blobs),
            layout,
            held,
            registry: registry.clone(),
            clock,
        };
        let handle = node.etcd().handle();
        let tasks = [handle.spawn(follower.run(revision)), handle.spawn(progress)];
        Ok(Self {
            registry,
            applied: applied_here,
            tasks,
        })
    }

    /// The registry to serve.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Stops following and hands over the events kept and the revision they go up to:
    /// the writer this node becomes goes on from them ([`crate::Writer::take_over`]).
    pub fn into_events(self) -> CarriedEvents {
        for t in &self.tasks {
            t.abort();
        }
        // The revision first: everything up to it is in the ring already (a watch answer's
        // events are kept before its revision is stored), and what the follower might
        // still keep after the ring is taken lies beyond it, for the writer to replay.
        let applied = self.applied.load(Ordering::Relaxed);
        CarriedEvents {
            ring: self.registry.take_events(),
            applied,
        }
    }
}

/// The events a standby kept, for the writer it becomes: its subscribers resume at the
/// writer without a gap.
#[derive(Debug)]
pub struct CarriedEvents {
    pub(crate) ring: EventRing,
    /// The standby applied etcd's history up to here (its ring may end before).
    pub(crate) applied: i64,
}

/// The writer's wall clock as this node knows it: its value at the writer's latest flush,
/// and this node's monotonic time when that was seen.
#[derive(Debug, Clone, Copy)]
struct WriterClock {
    at_flush_ms: u64,
    seen: Instant,
}

impl WriterClock {
    /// The writer's clock reads `writer_now_ms` now.
    fn start(writer_now_ms: u64) -> Self {
        Self {
            at_flush_ms: writer_now_ms,
            seen: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        let since = u64::try_from(self.seen.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_flush_ms.saturating_add(since)
    }

    /// The time left on a lease that ends at `expires_at_ms` by the writer's clock.
    fn remaining(&self, expires_at_ms: u64) -> u64 {
        expires_at_ms.saturating_sub(self.now_ms())
    }
}

/// etcd's revision now (read with the header of a one-key get).
async fn revision_now(mut client: Client, key: Vec<u8>) -> Result<i64, etcd_client::Error> {
    Ok(client
        .get(key, None)
        .await?
        .header()
        .map_or(0, |h| h.revision()))
}

struct Follower {
    /// The revision the registrations and lease rows were last read at: the watch may
    /// deliver changes to them from before it (it starts at or before what was read, and
    /// runs behind a reload that reads the store as it is now), and applying one of those
    /// over the newer state would show a lookup the past (a replaced registration back
    /// until its replacement comes round again), so they are skipped.
    loaded_at: i64,
    /// The etcd revision this standby has applied everything up to.
    applied: Arc<AtomicI64>,
    /// This node's name.
    name: String,
    client: Client,
    /// Copies components from the writer, on a connection it keeps.
    copier: Copier,
    layout: Layout,
    held: HeldManifests,
    registry: Arc<Registry>,
    clock: WriterClock,
}

/// What one watch answer holds, in etcd's order.
enum Seen {
    Reg(LeaseId, SignedManifest),
    Row(LeaseId, LeaseRow, String),
    Gone(LeaseId),
    Fresh(SignedFreshness),
    Client(Box<ClientInfo>),
    Name(String, VendorKey),
    Grant(String, VendorKey),
}

impl Follower {
    /// Follows from `revision + 1`. A watch that breaks (etcd, or the connection to it,
    /// lost a while) is opened again from the last revision applied; one whose history
    /// etcd compacted away reads the whole store again and follows from there.
    async fn run(mut self, mut revision: i64) {
        loop {
            match self.watch(revision).await {
                Ok(()) => {
                    tracing::debug!("the standby's watch ended: following on");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    revision = self.applied.load(Ordering::Relaxed);
                    continue;
                }
                Err(WatchError::Broken(e)) => {
                    tracing::warn!("the standby's watch broke ({e}): following on");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    revision = self.applied.load(Ordering::Relaxed);
                    continue;
                }
                Err(e @ WatchError::Compacted(_)) => {
                    tracing::warn!("the standby's watch ended ({e}): reading the store again");
                }
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.reload().await {
                    Ok(r) => {
                        revision = r;
                        // The skip first: a takeover that takes the ring once `applied`
                        // says `r` must find the stretch before it given up.
                        self.registry.skip_events_to(feed::after(r));
                        self.applied.store(r, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => tracing::debug!("the standby cannot read the store yet: {e}"),
                }
            }
        }
    }

    /// Reads the whole store again; returns a revision at or before what it read.
    async fn reload(&mut self) -> Result<i64, String> {
        let key = self.layout.key("meta/registry_id");
        let revision = revision_now(self.client.clone(), key)
            .await
            .map_err(|e| e.to_string())?;
        let (registry, wall) = (self.registry.clone(), self.clock.now_ms());
        let counts = tokio::task::spawn_blocking(move || registry.reload(wall))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.loaded_at = self.held.loaded_at();
        self.registry.set_writer_clock(self.clock.now_ms());
        tracing::debug!(kept = counts.kept, "the standby read the store again");
        Ok(revision)
    }

    async fn watch(&mut self, revision: i64) -> Result<(), WatchError> {
        let mut client = self.client.clone();
        let mut changes = Changes::open(client.clone(), self.layout.key(""), revision + 1).await?;
        while let Some(resp) = changes.next().await? {
            let events = feed::events(&self.layout, resp.events());
            let mut seen = Vec::new();
            let (mut reload, mut elected) = (false, false);
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let put = event.event_type() == EventType::Put;
                let l = &self.layout;
                let loaded = kv.mod_revision() <= self.loaded_at;
                if let Some(hex) = l.strip(kv.key(), "reg/") {
                    let Some(lease) = layout::parse_lease(hex) else {
                        continue;
                    };
                    if loaded {
                        continue;
                    } else if !put {
                        seen.push(Seen::Gone(lease));
                    } else if let Ok(m) = decode_manifest(kv.value()) {
                        seen.push(Seen::Reg(lease, m));
                    }
                } else if let Some(hex) = l.strip(kv.key(), "lease/") {
                    // A row this node wrote is a renewal it holds already.
                    let holder = row_holder(kv.value());
                    let mine = holder == self.name;
                    if let (true, false, false, Some(lease), Some(row)) = (
                        put,
                        loaded,
                        mine,
                        layout::parse_lease(hex),
                        lease_row(kv.value()),
                    ) {
                        // The writer holds what no other node renews: no name.
                        let writer = self.registry.cluster().and_then(|c| c.writer);
                        let holder = if writer.as_deref() == Some(holder) {
                            String::new()
                        } else {
                            holder.to_string()
                        };
                        seen.push(Seen::Row(lease, row, holder));
                    }
                } else if l.strip(kv.key(), "fresh/").is_some() {
                    match codec::decode::<SignedFreshness>(kv.value()) {
                        Ok(signed) if put => seen.push(Seen::Fresh(signed)),
                        Ok(_) => {}
                        Err(e) => tracing::warn!("a standby skips a freshness record: {e}"),
                    }
                } else if l.strip(kv.key(), "client/").is_some() {
                    match codec::decode::<ClientInfo>(kv.value()) {
                        Ok(info) if put => seen.push(Seen::Client(Box::new(info))),
                        Ok(_) => {}
                        Err(e) => tracing::warn!("a standby skips a client record: {e}"),
                    }
                } else if l.strip(kv.key(), "meta/last_alive_ms").is_some() {
                    if let (true, Some([ms])) = (put, layout::be_n::<1>(kv.value())) {
                        self.clock = WriterClock::start(ms);
                        self.registry.set_writer_clock(ms);
                    }
                } else if let Some(name) = l.strip(kv.key(), "name/") {
                    let owner = <[u8; 32]>::try_from(kv.value()).ok().map(VendorKey);
                    match (put, owner) {
                        (true, Some(owner))
                            if self.registry.owner(name).is_none_or(|o| o == owner) =>
                        {
                            seen.push(Seen::Name(name.to_string(), owner));
                        }
                        _ => reload = true,
                    }
                } else if let Some(rest) = l.strip(kv.key(), "grant/") {
                    let granted = rest
                        .split_once('/')
                        .and_then(|(k, name)| Some((layout::parse_vendor(k)?, name)));
                    match (put, granted) {
                        (true, Some((key, name))) => seen.push(Seen::Grant(name.to_string(), key)),
                        _ => reload = true,
                    }
                } else if RELOAD_ON.iter().any(|p| l.strip(kv.key(), p).is_some()) {
                    reload = true;
                } else if l.strip(kv.key(), "leader/").is_some() {
                    elected = true;
                }
            }
            self.apply(seen).await;
            self.registry.record_events(events);
            if elected {
                self.copier.forget_writer();
                let writer = mirror::writer_name(&mut client, &self.layout).await;
                self.registry.set_cluster(ClusterNodes {
                    answered_by: self.name.clone(),
                    writer,
                });
            }
            if reload {
                // Not applied yet: a watch opened again replays this answer.
                self.reload().await.map_err(WatchError::Broken)?;
            }
            if let Some(r) = feed::last_revision(&resp) {
                self.applied.store(r, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Applies one watch answer: components first, then manifests, then the registry.
    async fn apply(&mut self, seen: Vec<Seen>) {
        if seen.is_empty() {
            return;
        }
        let mut rows: HashMap<LeaseId, (LeaseRow, String)> = HashMap::new();
        for s in &seen {
            if let Seen::Row(lease, row, holder) = s {
                rows.insert(*lease, (*row, holder.clone()));
            }
        }
        let mut registered = std::collections::HashSet::new();
        for s in &seen {
            if let Seen::Reg(lease, m) = s {
                self.copier.keep(m).await;
                self.held.put(*lease, m.clone());
                registered.insert(*lease);
            }
        }
        let clock = self.clock;
        let mut changes = Vec::with_capacity(seen.len());
        let mut gone = Vec::new();
        for s in seen {
            changes.push(match s {
                Seen::Reg(lease, manifest) => {
                    let Some((row, holder)) = rows.get(&lease).cloned() else {
                        tracing::warn!(%lease, "a registration came without its lease row");
                        continue;
                    };
                    Followed::Put {
                        remaining_ms: clock.remaining(row.expires_at_ms),
                        stored: StoredLease {
                            lease,
                            manifest,
                            row,
                        },
                        holder,
                    }
                }
                Seen::Row(lease, ..) if registered.contains(&lease) => continue,
                Seen::Row(lease, row, holder) => Followed::Row {
                    lease,
                    row,
                    remaining_ms: clock.remaining(row.expires_at_ms),
                    holder,
                },
                Seen::Gone(lease) => {
                    gone.push(lease);
                    Followed::Delete(lease)
                }
                Seen::Fresh(signed) => Followed::Freshness(signed),
                Seen::Client(info) => Followed::Client(*info),
                Seen::Name(name, owner) => Followed::Name { name, owner },
                Seen::Grant(name, key) => Followed::Grant { name, key },
            });
        }
        self.registry.follow(changes);
        for lease in gone {
            self.held.remove(&lease);
        }
    }
}

/// Every [`PROGRESS_EVERY`], puts the revision this standby has applied and the time under
/// `key` (`progress/<node>`, under the node's session), for `courier cluster status`.
async fn report_progress(mut client: Client, key: Vec<u8>, session: i64, applied: Arc<AtomicI64>) {
    let mut reported = -1;
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let now = applied.load(Ordering::Relaxed);
        if now == reported {
            continue;
        }
        let mut value = layout::be(u64::try_from(now).unwrap_or(0));
        value.extend(layout::be(wall_ms()));
        let options = etcd_client::PutOptions::new().with_lease(session);
        match client.put(key.clone(), value, Some(options)).await {
            Ok(_) => reported = now,
            Err(e) => tracing::debug!("cannot report the standby's progress: {e}"),
        }
    }
}
