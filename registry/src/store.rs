//! Durable state: a redb database in the data directory, plus content-addressed component
//! files `blobs/<hex>` written atomically (temporary file, fsync, rename, fsync directory).
//!
//! Tables (no type of our own is serialized: manifests are kept as their signed bytes,
//! history entries as the protocol's `HistoryEntry`):
//! - `meta`: `registry_id`, `seq_reserved` (event numbers below it may have been used),
//!   `last_alive_ms` (wall time of the last flush), `history_seq`.
//! - `registrations`: lease id -> signature (64 bytes) || canonical manifest bytes. Written
//!   once, at registration.
//! - `leases`: lease id -> (expires_at_ms, ttl_ms, renewals). Expiry is absolute wall-clock
//!   time (ms since the Unix epoch), so the time left survives a restart.
//! - `names`: service name -> owning vendor key; `grants`: (name, key) -> ().
//! - `history`: (client, seq) -> postcard `HistoryEntry`; `history_order`: seq -> client,
//!   the same entries oldest first, so the oldest can go when the history is full
//!   (`meta` `history_order_v1` marks a store whose order is kept).
//! - `rotations`: old vendor key -> postcard `SignedKeyStatement` (its rotation).
//! - `revocations`: vendor key -> postcard `SignedKeyStatement` (its own revocation), or
//!   empty bytes (revoked by the operator).
//! - `blob_refs`: component hash -> how many stored registrations name it. Kept in the same
//!   transactions as the registrations, so a blob file is deleted once (and only once) no
//!   registration needs it (counted again at every open, so that nothing else can make
//!   them wrong).
//!
//! Every commit here is durable (`Durability::Immediate`) when it returns.
//!
//! Blob files: a commit that takes a component's last reference deletes its file after the
//! transaction is durable; [`Store::open`] deletes what a crash left behind (files no
//! registration names, and temporary files). Commits that delete files must not race a
//! registration of the same bytes: the registry commits under one writer lock and calls
//! [`Store::put_blob`] again under it before committing a registration.

use courier_protocol::{
    ContentHash, HistoryEntry, LeaseId, SignedKeyStatement, SignedManifest, VendorKey, codec,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::io::Write;
use std::path::{Path, PathBuf};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const REGISTRATIONS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("registrations");
const LEASES: TableDefinition<&[u8; 16], (u64, u64, u64)> = TableDefinition::new("leases");
const NAMES: TableDefinition<&str, &[u8; 32]> = TableDefinition::new("names");
const GRANTS: TableDefinition<(&str, &[u8; 32]), ()> = TableDefinition::new("grants");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
const ROTATIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("rotations");
const REVOCATIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("revocations");
const BLOB_REFS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("blob_refs");
const HISTORY_ORDER: TableDefinition<u64, &str> = TableDefinition::new("history_order");

/// `meta` key set once `history_order` lists every history entry.
const HISTORY_ORDER_KEPT: &str = "history_order_v1";

const DB_FILE: &str = "registry.redb";
const BLOB_DIR: &str = "blobs";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// Stored bytes do not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A lease's durable row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRow {
    /// When it runs out, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Last granted duration.
    pub ttl_ms: u64,
    /// Renewals so far.
    pub renewals: u64,
    /// Whether the lease is in its post-restart grace period (stored in the top bit of the
    /// renewal count, so the table's row keeps its shape).
    pub in_grace: bool,
}

/// The grace flag's bit in a stored renewal count.
const ROW_GRACE_BIT: u64 = 1 << 63;

impl LeaseRow {
    fn to_stored(self) -> (u64, u64, u64) {
        let grace = if self.in_grace { ROW_GRACE_BIT } else { 0 };
        (
            self.expires_at_ms,
            self.ttl_ms,
            self.renewals.min(ROW_GRACE_BIT - 1) | grace,
        )
    }

    fn from_stored((expires_at_ms, ttl_ms, renewals): (u64, u64, u64)) -> Self {
        Self {
            expires_at_ms,
            ttl_ms,
            renewals: renewals & !ROW_GRACE_BIT,
            in_grace: renewals & ROW_GRACE_BIT != 0,
        }
    }
}

/// One stored registration with its lease, as read at open.
#[derive(Debug, Clone)]
pub struct StoredLease {
    /// The lease.
    pub lease: LeaseId,
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// Its lease row.
    pub row: LeaseRow,
}

/// What a write transaction changes. Everything in it commits together, durably.
#[derive(Debug, Default)]
pub struct Batch {
    /// New registrations (the component each names is read from its manifest).
    pub registrations: Vec<(LeaseId, SignedManifest)>,
    /// Lease rows to write.
    pub leases: Vec<(LeaseId, LeaseRow)>,
    /// Registrations and leases to delete.
    pub delete: Vec<LeaseId>,
    /// Service names and their owners.
    pub names: Vec<(String, VendorKey)>,
    /// Names granted to more keys.
    pub grants: Vec<(String, VendorKey)>,
    /// A new event number high-water mark.
    pub seq_reserved: Option<u64>,
    /// Wall time of this write.
    pub last_alive_ms: Option<u64>,
    /// Key rotations: the old key and its statement.
    pub rotations: Vec<(VendorKey, SignedKeyStatement)>,
    /// Key revocations: the key and its own statement (`None`: by the operator).
    pub revocations: Vec<(VendorKey, Option<SignedKeyStatement>)>,
    /// Names owned by, and grants to, the first key pass to the second (a rotation).
    pub transfers: Vec<(VendorKey, VendorKey)>,
}

impl Batch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.registrations.is_empty()
            && self.leases.is_empty()
            && self.delete.is_empty()
            && self.names.is_empty()
            && self.grants.is_empty()
            && self.seq_reserved.is_none()
            && self.last_alive_ms.is_none()
            && self.rotations.is_empty()
            && self.revocations.is_empty()
            && self.transfers.is_empty()
    }
}

/// What the store held at open (the registrations are streamed separately).
#[derive(Debug, Clone)]
pub struct Meta {
    /// This registry's id, made at first open.
    pub registry_id: String,
    /// Whether the store was created now.
    pub fresh: bool,
    /// Event numbers below this may have been used.
    pub seq_reserved: u64,
    /// Wall time of the last flush, 0 if none.
    pub last_alive_ms: u64,
    /// The last history sequence number used.
    pub history_seq: u64,
}

/// What [`Store::open`] tidied in the blob directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobSweep {
    /// Component files no stored registration names (left by a crash), deleted.
    pub orphans: usize,
    /// Temporary files of interrupted writes, deleted.
    pub temporaries: usize,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    blobs: PathBuf,
}

fn encode_manifest(m: &SignedManifest) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + m.bytes.len());
    v.extend_from_slice(&m.signature);
    v.extend_from_slice(&m.bytes);
    v
}

fn decode_manifest(v: &[u8]) -> Result<SignedManifest, StoreError> {
    if v.len() < 64 {
        return Err(StoreError::Corrupt("registration record too short".into()));
    }
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&v[..64]);
    Ok(SignedManifest {
        bytes: v[64..].to_vec(),
        signature,
    })
}

/// The component hash a stored registration record names (`None` if it does not decode:
/// such a record is reported when the registrations are loaded).
fn component_of(record: &[u8]) -> Option<ContentHash> {
    decode_manifest(record)
        .ok()?
        .peek()
        .ok()
        .map(|m| m.component_hash)
}

/// Applies reference-count changes; returns the components left with none.
fn apply_refs(
    refs: &mut redb::Table<&'static [u8; 32], u64>,
    delta: std::collections::HashMap<[u8; 32], i64>,
) -> Result<Vec<ContentHash>, StoreError> {
    let mut unreferenced = Vec::new();
    for (hash, d) in delta {
        if d == 0 {
            continue;
        }
        let n = refs.get(&hash)?.map_or(0, |g| g.value());
        let after = n.saturating_add_signed(d);
        if after == 0 {
            refs.remove(&hash)?;
            unreferenced.push(ContentHash(hash));
        } else {
            refs.insert(&hash, after)?;
        }
    }
    Ok(unreferenced)
}

fn meta_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<u64, StoreError> {
    match table.get(key)? {
        None => Ok(0),
        Some(v) => {
            let b: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("meta {key}")))?;
            Ok(u64::from_be_bytes(b))
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<(Self, Meta), StoreError> {
        std::fs::create_dir_all(dir.join(BLOB_DIR))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join(DB_FILE))?;
        let txn = db.begin_write()?;
        let meta = {
            let mut meta = txn.open_table(META)?;
            // Create every table so readers never meet a missing one.
            txn.open_table(REGISTRATIONS)?;
            txn.open_table(LEASES)?;
            txn.open_table(NAMES)?;
            txn.open_table(GRANTS)?;
            txn.open_table(HISTORY)?;
            txn.open_table(ROTATIONS)?;
            txn.open_table(REVOCATIONS)?;
            txn.open_table(BLOB_REFS)?;
            txn.open_table(HISTORY_ORDER)?;
            let existing = meta.get("registry_id")?.map(|v| v.value().to_vec());
            let (registry_id, fresh) = match existing {
                Some(id) => (
                    String::from_utf8(id).map_err(|_| StoreError::Corrupt("registry_id".into()))?,
                    false,
                ),
                None => {
                    let id = hex::encode(rand::random::<[u8; 16]>());
                    meta.insert("registry_id", id.as_bytes())?;
                    (id, true)
                }
            };
            Meta {
                registry_id,
                fresh,
                seq_reserved: meta_u64(&meta, "seq_reserved")?,
                last_alive_ms: meta_u64(&meta, "last_alive_ms")?,
                history_seq: meta_u64(&meta, "history_seq")?,
            }
        };
        txn.commit()?;
        let store = Self {
            db,
            blobs: dir.join(BLOB_DIR),
        };
        store.count_blob_refs()?;
        store.order_history()?;
        let mut meta = meta;
        meta.history_seq = meta.history_seq.max(store.last_history_seq()?);
        let swept = store.sweep_blobs()?;
        if swept != BlobSweep::default() {
            tracing::info!(
                orphans = swept.orphans,
                temporaries = swept.temporaries,
                "deleted component files no registration needs"
            );
        }
        Ok((store, meta))
    }

    /// Counts the references of the stored registrations to each component and makes
    /// `blob_refs` say exactly that (at every open, before anything is swept: a store
    /// written by another version of courier, which may not keep the counts, cannot make
    /// the registry delete a component a registration needs).
    fn count_blob_refs(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let regs = txn.open_table(REGISTRATIONS)?;
            let mut counts: std::collections::HashMap<[u8; 32], u64> = Default::default();
            for item in regs.iter()? {
                let (_, v) = item?;
                if let Some(hash) = component_of(v.value()) {
                    *counts.entry(hash.0).or_default() += 1;
                }
            }
            let mut refs = txn.open_table(BLOB_REFS)?;
            let mut agreeing = 0usize;
            let mut stored = 0usize;
            for item in refs.iter()? {
                let (k, v) = item?;
                stored += 1;
                if counts.get(k.value()) == Some(&v.value()) {
                    agreeing += 1;
                }
            }
            if agreeing == stored && stored == counts.len() {
                return Ok(());
            }
            if stored > 0 {
                tracing::warn!(
                    "component reference counts did not match the stored registrations \
                     (a store written by another version?); counted again"
                );
            }
            refs.retain(|_, _| false)?;
            for (hash, n) in &counts {
                refs.insert(hash, *n)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The highest history number stored (0 if none).
    fn last_history_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let order = txn.open_table(HISTORY_ORDER)?;
        Ok(order.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Lists every history entry in `history_order`, once, for a store written before the
    /// order was kept.
    fn order_history(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(HISTORY_ORDER_KEPT)?.is_some() {
                return Ok(());
            }
            let history = txn.open_table(HISTORY)?;
            let mut order = txn.open_table(HISTORY_ORDER)?;
            for item in history.iter()? {
                let (k, _) = item?;
                let (client, seq) = k.value();
                order.insert(seq, client)?;
            }
            meta.insert(HISTORY_ORDER_KEPT, [1u8].as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Deletes component files that no stored registration names, and temporary files of
    /// interrupted writes. Only while nothing else uses the store (at open).
    fn sweep_blobs(&self) -> Result<BlobSweep, StoreError> {
        let txn = self.db.begin_read()?;
        let refs = txn.open_table(BLOB_REFS)?;
        let mut swept = BlobSweep::default();
        for entry in std::fs::read_dir(&self.blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".tmp-") {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => swept.temporaries += 1,
                    Err(e) => tracing::warn!("cannot delete {name} in the blob directory: {e}"),
                }
                continue;
            }
            // Only names this store writes (64 lowercase hex digits); anything else an
            // operator put there is left alone.
            let Some(hash) = name
                .parse::<ContentHash>()
                .ok()
                .filter(|h| h.to_hex() == name)
            else {
                continue;
            };
            if refs.get(&hash.0)?.is_none() {
                // A file that cannot go now is only space; the next open tries again.
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => swept.orphans += 1,
                    Err(e) => tracing::warn!("cannot delete unregistered component {hash}: {e}"),
                }
            }
        }
        Ok(swept)
    }

    /// Calls `each` for every stored registration with its lease row, one at a time (so a
    /// large store never sits in memory twice). Records that do not decode are skipped
    /// with a warning; their ids are returned so the caller can delete them.
    pub fn load(&self, mut each: impl FnMut(StoredLease)) -> Result<Vec<LeaseId>, StoreError> {
        let txn = self.db.begin_read()?;
        let regs = txn.open_table(REGISTRATIONS)?;
        let leases = txn.open_table(LEASES)?;
        let mut bad = Vec::new();
        for item in regs.iter()? {
            let (k, v) = item?;
            let lease = LeaseId(*k.value());
            let manifest = match decode_manifest(v.value()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%lease, "skipping stored registration: {e}");
                    bad.push(lease);
                    continue;
                }
            };
            let Some(row) = leases.get(&lease.0)? else {
                tracing::warn!(%lease, "skipping stored registration without a lease row");
                bad.push(lease);
                continue;
            };
            each(StoredLease {
                lease,
                manifest,
                row: LeaseRow::from_stored(row.value()),
            });
        }
        Ok(bad)
    }

    /// Every name with its owner, and every grant.
    #[allow(clippy::type_complexity)]
    pub fn load_names(
        &self,
    ) -> Result<(Vec<(String, VendorKey)>, Vec<(String, VendorKey)>), StoreError> {
        let txn = self.db.begin_read()?;
        let names = txn
            .open_table(NAMES)?
            .iter()?
            .map(|r| r.map(|(k, v)| (k.value().to_string(), VendorKey(*v.value()))))
            .collect::<Result<Vec<_>, _>>()?;
        let grants = txn
            .open_table(GRANTS)?
            .iter()?
            .map(|r| {
                r.map(|(k, _)| {
                    let (name, key) = k.value();
                    (name.to_string(), VendorKey(*key))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((names, grants))
    }

    /// Every key rotation (old key, statement) and revocation (key, statement or `None`
    /// for the operator's). A record that does not decode is an error: dropping a
    /// revocation silently would trust a revoked key again.
    #[allow(clippy::type_complexity)]
    pub fn load_keys(
        &self,
    ) -> Result<
        (
            Vec<(VendorKey, SignedKeyStatement)>,
            Vec<(VendorKey, Option<SignedKeyStatement>)>,
        ),
        StoreError,
    > {
        let txn = self.db.begin_read()?;
        let decode = |what: &str, key: &[u8; 32], v: &[u8]| {
            codec::decode::<SignedKeyStatement>(v)
                .map_err(|e| StoreError::Corrupt(format!("{what} of {}: {e}", VendorKey(*key))))
        };
        let mut rotations = Vec::new();
        for item in txn.open_table(ROTATIONS)?.iter()? {
            let (k, v) = item?;
            rotations.push((
                VendorKey(*k.value()),
                decode("rotation", k.value(), v.value())?,
            ));
        }
        let mut revocations = Vec::new();
        for item in txn.open_table(REVOCATIONS)?.iter()? {
            let (k, v) = item?;
            let statement = if v.value().is_empty() {
                None
            } else {
                Some(decode("revocation", k.value(), v.value())?)
            };
            revocations.push((VendorKey(*k.value()), statement));
        }
        Ok((rotations, revocations))
    }

    /// Commits `batch` durably; then deletes the component files whose last registration
    /// it deleted (a file that cannot be deleted now is swept at the next open).
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let unreferenced;
        {
            let mut regs = txn.open_table(REGISTRATIONS)?;
            let mut leases = txn.open_table(LEASES)?;
            // Net change of each component's references: a replacement by the same bytes
            // must not drop them to zero on the way.
            let mut refs_delta: std::collections::HashMap<[u8; 32], i64> = Default::default();
            for (lease, m) in &batch.registrations {
                let record = encode_manifest(m);
                regs.insert(&lease.0, record.as_slice())?;
                if let Some(hash) = component_of(&record) {
                    *refs_delta.entry(hash.0).or_default() += 1;
                }
            }
            for (lease, row) in &batch.leases {
                leases.insert(&lease.0, row.to_stored())?;
            }
            for lease in &batch.delete {
                let old = regs.remove(&lease.0)?;
                if let Some(hash) = old.and_then(|o| component_of(o.value())) {
                    *refs_delta.entry(hash.0).or_default() -= 1;
                }
                leases.remove(&lease.0)?;
            }
            unreferenced = apply_refs(&mut txn.open_table(BLOB_REFS)?, refs_delta)?;
            if !batch.names.is_empty() {
                let mut names = txn.open_table(NAMES)?;
                for (name, key) in &batch.names {
                    if names.get(name.as_str())?.is_none() {
                        names.insert(name.as_str(), &key.0)?;
                    }
                }
            }
            if !batch.grants.is_empty() {
                let mut grants = txn.open_table(GRANTS)?;
                for (name, key) in &batch.grants {
                    grants.insert((name.as_str(), &key.0), ())?;
                }
            }
            if !batch.rotations.is_empty() {
                let mut t = txn.open_table(ROTATIONS)?;
                for (key, s) in &batch.rotations {
                    t.insert(&key.0, codec::encode(s).as_slice())?;
                }
            }
            if !batch.revocations.is_empty() {
                let mut t = txn.open_table(REVOCATIONS)?;
                for (key, s) in &batch.revocations {
                    let bytes = s.as_ref().map(codec::encode).unwrap_or_default();
                    t.insert(&key.0, bytes.as_slice())?;
                }
            }
            for (from, to) in &batch.transfers {
                let mut names = txn.open_table(NAMES)?;
                let owned: Vec<String> = names
                    .iter()?
                    .filter_map(|r| match r {
                        Ok((k, v)) if *v.value() == from.0 => Some(Ok(k.value().to_string())),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<_, _>>()?;
                for name in &owned {
                    names.insert(name.as_str(), &to.0)?;
                }
                let mut grants = txn.open_table(GRANTS)?;
                let granted: Vec<String> = grants
                    .iter()?
                    .filter_map(|r| match r {
                        Ok((k, _)) if *k.value().1 == from.0 => Some(Ok(k.value().0.to_string())),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<_, _>>()?;
                for name in &granted {
                    grants.remove((name.as_str(), &from.0))?;
                    grants.insert((name.as_str(), &to.0), ())?;
                }
            }
            if batch.seq_reserved.is_some() || batch.last_alive_ms.is_some() {
                let mut meta = txn.open_table(META)?;
                if let Some(s) = batch.seq_reserved {
                    meta.insert("seq_reserved", s.to_be_bytes().as_slice())?;
                }
                if let Some(t) = batch.last_alive_ms {
                    meta.insert("last_alive_ms", t.to_be_bytes().as_slice())?;
                }
            }
        }
        txn.commit()?;
        for hash in unreferenced {
            match self.remove_blob(&hash) {
                Ok(()) => tracing::debug!(%hash, "component no longer registered; file deleted"),
                Err(e) => tracing::warn!(%hash, "cannot delete unregistered component: {e}"),
            }
        }
        Ok(())
    }

    /// The signed manifests of `leases`, `None` where there is none (any more).
    pub fn manifests(&self, leases: &[LeaseId]) -> Result<Vec<Option<SignedManifest>>, StoreError> {
        let txn = self.db.begin_read()?;
        let regs = txn.open_table(REGISTRATIONS)?;
        leases
            .iter()
            .map(|l| match regs.get(&l.0)? {
                Some(v) => decode_manifest(v.value()).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    /// Appends a history entry for `client` under `seq` (durably), and records `seq` as the
    /// last used. When more than `keep` entries are stored, the oldest go in the same
    /// transaction, whichever client they belong to.
    pub fn append_history(
        &self,
        client: &str,
        seq: u64,
        entry: &HistoryEntry,
        keep: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut h = txn.open_table(HISTORY)?;
            let mut order = txn.open_table(HISTORY_ORDER)?;
            h.insert((client, seq), codec::encode(entry).as_slice())?;
            order.insert(seq, client)?;
            while order.len()? > keep.max(1) {
                let Some((old_seq, old_client)) = order.pop_first()? else {
                    break;
                };
                h.remove((old_client.value(), old_seq.value()))?;
            }
            // Numbers are taken before their commits, which may land out of order: the
            // mark only ever rises.
            let mut meta = txn.open_table(META)?;
            let mark = meta_u64(&meta, "history_seq")?.max(seq);
            meta.insert("history_seq", mark.to_be_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The newest history entries of `client`, newest first: at most `limit`, and no more
    /// than `max_bytes` of them in all (at least one, if there is one).
    pub fn history(
        &self,
        client: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let h = txn.open_table(HISTORY)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in h.range((client, 0)..=(client, u64::MAX))?.rev().take(limit) {
            let (_, v) = item?;
            bytes = bytes.saturating_add(v.value().len());
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(codec::decode(v.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    fn blob_path(&self, hash: &ContentHash) -> PathBuf {
        self.blobs.join(hash.to_hex())
    }

    /// Deletes the file of `hash` if no stored registration names it (a registration that
    /// wrote its component and then failed). Call under the writer lock.
    pub fn drop_unclaimed_blob(&self, hash: &ContentHash) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        if txn.open_table(BLOB_REFS)?.get(&hash.0)?.is_some() {
            return Ok(());
        }
        Ok(self.remove_blob(hash)?)
    }

    /// Deletes the file of `hash`; one that is not there is no error.
    fn remove_blob(&self, hash: &ContentHash) -> std::io::Result<()> {
        match std::fs::remove_file(self.blob_path(hash)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Stores component bytes under their hash, atomically and durably. Does nothing if a
    /// blob of that hash and size is there already.
    pub fn put_blob(&self, hash: &ContentHash, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(hash);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(());
        }
        let tmp = self.blobs.join(format!(
            ".tmp-{}-{}",
            hash.to_hex(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.blobs)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(result?)
    }

    /// The size of the component stored under `hash`, if any.
    pub fn blob_size(&self, hash: &ContentHash) -> Result<Option<u64>, StoreError> {
        match std::fs::metadata(self.blob_path(hash)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The component bytes stored under `hash`, if any. The bytes are checked against the
    /// hash, so a damaged file is reported, never served.
    pub fn read_blob(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.blob_path(hash)) {
            Ok(bytes) if ContentHash::of(&bytes) == *hash => Ok(Some(bytes)),
            Ok(_) => Err(StoreError::Corrupt(format!(
                "blob {hash} does not match its hash"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::Outcome;

    #[test]
    fn round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, meta) = Store::open(dir.path(), 1 << 20).unwrap();
        assert!(meta.fresh);
        let m = signed_for(b"component", 1);
        let row = LeaseRow {
            expires_at_ms: 123,
            ttl_ms: 10,
            renewals: 2,
            in_grace: true,
        };
        store
            .commit(&Batch {
                registrations: vec![(LeaseId([1; 16]), m.clone()), (LeaseId([2; 16]), m.clone())],
                leases: vec![(LeaseId([1; 16]), row), (LeaseId([2; 16]), row)],
                names: vec![("a/b".into(), VendorKey([3; 32]))],
                grants: vec![("a/b".into(), VendorKey([4; 32]))],
                seq_reserved: Some(77),
                last_alive_ms: Some(55),
                ..Default::default()
            })
            .unwrap();
        store
            .commit(&Batch {
                delete: vec![LeaseId([2; 16])],
                ..Default::default()
            })
            .unwrap();
        let hash = ContentHash::of(b"component");
        store.put_blob(&hash, b"component").unwrap();
        store.put_blob(&hash, b"component").unwrap();
        let entry = HistoryEntry {
            at_ms: 5,
            outcome: Outcome {
                client: "c1".into(),
                name: "a/b".into(),
                version: "1.0.0".into(),
                component: hash,
                function: "f".into(),
                ok: true,
                detail: "fine".into(),
                duration_us: 3,
                facts: Default::default(),
            },
        };
        store.append_history("c1", 1, &entry, 100).unwrap();
        let mut second = entry.clone();
        second.at_ms = 6;
        store.append_history("c1", 2, &second, 100).unwrap();
        store.append_history("c2", 3, &entry, 100).unwrap();
        drop(store);

        let (store, meta) = Store::open(dir.path(), 1 << 20).unwrap();
        assert!(!meta.fresh);
        assert_eq!(
            (meta.seq_reserved, meta.last_alive_ms, meta.history_seq),
            (77, 55, 3)
        );
        let mut loaded = Vec::new();
        assert!(store.load(|s| loaded.push(s)).unwrap().is_empty());
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].lease, LeaseId([1; 16]));
        assert_eq!(loaded[0].manifest, m);
        assert_eq!(loaded[0].row, row);
        let (names, grants) = store.load_names().unwrap();
        assert_eq!(names, vec![("a/b".to_string(), VendorKey([3; 32]))]);
        assert_eq!(grants, vec![("a/b".to_string(), VendorKey([4; 32]))]);
        assert_eq!(store.read_blob(&hash).unwrap().unwrap(), b"component");
        assert_eq!(store.read_blob(&ContentHash([0; 32])).unwrap(), None);
        let h = store.history("c1", 10, 1 << 20).unwrap();
        assert_eq!(h.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![6, 5]);
        assert_eq!(store.history("c1", 1, 1 << 20).unwrap().len(), 1);
        assert_eq!(store.history("c1", 10, 1).unwrap().len(), 1, "at least one");
        assert!(store.history("c3", 10, 1 << 20).unwrap().is_empty());
        // A full history lets its oldest entries go, whichever client they belong to.
        let mut third = entry.clone();
        third.at_ms = 7;
        store.append_history("c2", 4, &third, 2).unwrap();
        assert!(store.history("c1", 10, 1 << 20).unwrap().is_empty());
        let c2: Vec<u64> = store
            .history("c2", 10, 1 << 20)
            .unwrap()
            .iter()
            .map(|e| e.at_ms)
            .collect();
        assert_eq!(c2, vec![7, 5]);
        assert_eq!(
            store
                .manifests(&[LeaseId([1; 16]), LeaseId([2; 16])])
                .unwrap(),
            vec![Some(m), None]
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join(BLOB_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(hash.to_hex())]);
    }

    /// A real signed manifest naming `component`.
    fn signed_for(component: &[u8], seed: u8) -> SignedManifest {
        let key = courier_protocol::SigningKey::from_bytes(&[seed; 32]);
        let m = courier_protocol::Manifest {
            name: format!("acme/svc{seed}"),
            version: "1.0.0".into(),
            exports: vec![courier_protocol::Export {
                interface: "courier:echo/echo@0.1.0".into(),
                functions: vec!["say".into()],
            }],
            imports: vec![],
            attributes: Default::default(),
            endpoints: vec!["127.0.0.1:1".into()],
            provider_pin: courier_protocol::SpkiPin([1; 32]),
            issued_at_ms: 0,
            not_after_ms: u64::MAX / 2,
            component_hash: ContentHash::of(component),
            component_size: component.len() as u64,
            vendor_key: VendorKey::of(&key),
        };
        SignedManifest::sign(&m, &key)
    }

    #[test]
    fn wrong_reference_counts_are_counted_again_before_anything_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), 1 << 20).unwrap();
        let hash = ContentHash::of(b"shared");
        let row = LeaseRow {
            expires_at_ms: 1,
            ttl_ms: 1,
            renewals: 0,
            in_grace: false,
        };
        store.put_blob(&hash, b"shared").unwrap();
        store
            .commit(&Batch {
                registrations: vec![
                    (LeaseId([1; 16]), signed_for(b"shared", 1)),
                    (LeaseId([2; 16]), signed_for(b"shared", 2)),
                ],
                leases: vec![(LeaseId([1; 16]), row), (LeaseId([2; 16]), row)],
                ..Default::default()
            })
            .unwrap();
        // As a store written by a version that kept no counts, or wrong ones.
        let txn = store.db.begin_write().unwrap();
        txn.open_table(BLOB_REFS)
            .unwrap()
            .insert(&hash.0, 1)
            .unwrap();
        txn.commit().unwrap();
        drop(store);

        let (store, _) = Store::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.read_blob(&hash).unwrap().unwrap(), b"shared");
        store
            .commit(&Batch {
                delete: vec![LeaseId([1; 16])],
                ..Default::default()
            })
            .unwrap();
        assert!(
            store.read_blob(&hash).unwrap().is_some(),
            "one reference left"
        );
        store
            .commit(&Batch {
                delete: vec![LeaseId([2; 16])],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(store.read_blob(&hash).unwrap(), None);
    }
}
