//! The redb store: one redb database in the data directory (`registry.redb`) and the
//! component files beside it (`blobs/<sha256>`, see [`BlobDir`]).
//!
//! Tables (no type of our own is serialized: manifests are kept as their signed bytes,
//! history entries as the protocol's `HistoryEntry`):
//! - `meta`: `registry_id`, `seq_reserved` (event numbers below it may have been used),
//!   `last_alive_ms` (wall time of the last write that found the registry alive),
//!   `history_seq`.
//! - `registrations`: lease id -> signature (64 bytes) || canonical manifest bytes. Written
//!   once, at registration.
//! - `leases`: lease id -> (expires_at_ms, ttl_ms, renewals with the grace flag in the top
//!   bit). Expiry is absolute wall-clock time, so the time left survives a restart.
//! - `names`: service name -> owning vendor key; `grants`: (name, key) -> ().
//! - `history`, `history_order`: see [`history`].
//! - `rotations`: old vendor key -> postcard `SignedKeyStatement` (its rotation).
//! - `revocations`: vendor key -> postcard `SignedKeyStatement` (its own revocation), or
//!   empty bytes (revoked by the operator).
//! - `root_statements`, `delegations`: vendor roots' statements and further delegations,
//!   see [`roots`].
//! - `mirrored`, `mirror_rules`, `approvals`, `mirror_anchor`: a child registry's mirror
//!   of its parent, see [`mirror`].
//! - `freshness`: see [`freshness`].
//! - `staged`, `rollouts`, `rollout_marks`: staged rollouts, see [`rollouts`].
//! - `blob_refs`: component hash -> how many stored registrations name it, kept in the
//!   same transactions as the registrations, so a component file is deleted once (and only
//!   once) no registration needs it; counted again at every open, so that nothing else can
//!   make the counts wrong (in the background, see [`recount`]).
//!
//! Every commit is durable (`Durability::Immediate`) when it returns. A commit that takes a
//! component's last reference deletes its file after the transaction is durable; opening
//! deletes what a crash left behind (files no registration names, temporary files).
//! Commits that delete files must not race a registration of the same bytes: the registry
//! commits under one writer lock and stores the component again under it before it commits
//! a registration.

mod freshness;
mod history;
mod mirror;
mod operations;
mod recount;
mod rollouts;
mod roots;

use super::blobs::BlobDir;
use super::{Batch, LeaseRow, Storage, StoreError, StoredLease, StoredMeta, UsageRecord};
use courier_protocol::{
    AuditEntry, ContentHash, HistoryEntry, LeaseId, SignedKeyStatement, SignedManifest, VendorKey,
    codec,
};
use recount::Recount;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

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

/// The grace flag's bit in a stored renewal count.
const ROW_GRACE_BIT: u64 = 1 << 63;

/// A lease row as the `leases` table keeps it (the grace flag in the top bit of the
/// renewal count, so the row keeps its shape).
pub fn row_to_stored(row: LeaseRow) -> (u64, u64, u64) {
    let grace = if row.in_grace { ROW_GRACE_BIT } else { 0 };
    (
        row.expires_at_ms,
        row.ttl_ms,
        row.renewals.min(ROW_GRACE_BIT - 1) | grace,
    )
}

/// Reads what [`row_to_stored`] wrote.
pub fn row_from_stored((expires_at_ms, ttl_ms, renewals): (u64, u64, u64)) -> LeaseRow {
    LeaseRow {
        expires_at_ms,
        ttl_ms,
        renewals: renewals & !ROW_GRACE_BIT,
        in_grace: renewals & ROW_GRACE_BIT != 0,
    }
}

/// A registration's stored record: the signature (64 bytes), then the canonical manifest.
pub fn encode_manifest(m: &SignedManifest) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + m.bytes.len());
    v.extend_from_slice(&m.signature);
    v.extend_from_slice(&m.bytes);
    v
}

/// Reads a record [`encode_manifest`] wrote.
pub fn decode_manifest(v: &[u8]) -> Result<SignedManifest, StoreError> {
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
pub fn component_of(record: &[u8]) -> Option<ContentHash> {
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

/// Lists every history entry in `history_order`, once, for a store written before the
/// order was kept.
fn order_history(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
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

/// A `leases` row with its key, as read at open.
type StoredRow = ([u8; 16], (u64, u64, u64));

/// The redb store of a single registry.
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    blobs: Arc<BlobDir>,
    /// The reference counts' check and the sweep of this open, running until waited for.
    recount: Recount,
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`, with a page cache of `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let blobs = BlobDir::open(dir.join(BLOB_DIR))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join(DB_FILE))?;
        let txn = db.begin_write()?;
        {
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
            operations::create(&txn)?;
            mirror::create(&txn)?;
            roots::create(&txn)?;
            freshness::create(&txn)?;
            rollouts::create(&txn)?;
            if meta.get("registry_id")?.is_none() {
                let id = hex::encode(rand::random::<[u8; 16]>());
                meta.insert("registry_id", id.as_bytes())?;
            }
        }
        txn.commit()?;
        order_history(&db)?;
        // Last: it holds the write transaction while it counts.
        let (db, blobs) = (Arc::new(db), Arc::new(blobs));
        let recount = Recount::start(db.clone(), blobs.clone())?;
        Ok(Self { db, blobs, recount })
    }

    /// The highest history number stored (0 if none).
    fn last_history_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let order = txn.open_table(HISTORY_ORDER)?;
        Ok(order.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Every name with its owner, and every grant.
    #[allow(clippy::type_complexity)]
    fn load_names(
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
    fn load_keys(
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
}

impl Drop for RedbStore {
    /// Waits for the open's recount, which holds the database too (a store opened again
    /// at once would find it still in use).
    fn drop(&mut self) {
        if let Err(e) = self.recount.wait() {
            tracing::warn!("{e}");
        }
    }
}

impl Storage for RedbStore {
    fn load_meta(&self) -> Result<StoredMeta, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let registry_id = meta
            .get("registry_id")?
            .map(|v| String::from_utf8(v.value().to_vec()))
            .transpose()
            .map_err(|_| StoreError::Corrupt("registry_id".into()))?
            .unwrap_or_default();
        let (names, grants) = self.load_names()?;
        let (rotations, revocations) = self.load_keys()?;
        let mut stored = StoredMeta {
            registry_id,
            seq_reserved: meta_u64(&meta, "seq_reserved")?,
            last_alive_ms: meta_u64(&meta, "last_alive_ms")?,
            history_seq: meta_u64(&meta, "history_seq")?.max(self.last_history_seq()?),
            names,
            grants,
            rotations,
            revocations,
            ..Default::default()
        };
        operations::load(&txn, &mut stored)?;
        mirror::load(&txn, &mut stored)?;
        roots::load(&txn, &mut stored)?;
        freshness::load(&txn, &mut stored)?;
        rollouts::load(&txn, &mut stored)?;
        Ok(stored)
    }

    fn load_leases(&self, each: &mut dyn FnMut(StoredLease)) -> Result<Vec<LeaseId>, StoreError> {
        let txn = self.db.begin_read()?;
        let regs = txn.open_table(REGISTRATIONS)?;
        let leases = txn.open_table(LEASES)?;
        // Both tables are keyed by lease id, in the same (byte) order: their rows are
        // matched walking both at once, not by a lookup of each lease (a tenth of an open).
        let mut rows = leases.iter()?;
        let mut next_row = || -> Result<Option<StoredRow>, StoreError> {
            Ok(rows
                .next()
                .transpose()?
                .map(|(k, v)| (*k.value(), v.value())))
        };
        let mut row = next_row()?;
        let mut bad = Vec::new();
        for item in regs.iter()? {
            let (k, v) = item?;
            let lease = LeaseId(*k.value());
            while row.as_ref().is_some_and(|(key, _)| *key < lease.0) {
                row = next_row()?;
            }
            let manifest = match decode_manifest(v.value()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%lease, "skipping stored registration: {e}");
                    bad.push(lease);
                    continue;
                }
            };
            let Some(stored) = row.filter(|(key, _)| *key == lease.0).map(|(_, r)| r) else {
                tracing::warn!(%lease, "skipping stored registration without a lease row");
                bad.push(lease);
                continue;
            };
            each(StoredLease {
                lease,
                manifest,
                row: row_from_stored(stored),
            });
        }
        Ok(bad)
    }

    /// Then deletes the component files whose last registration the batch deleted (a file
    /// that cannot be deleted now is swept at the next open).
    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        self.recount.wait()?;
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
                leases.insert(&lease.0, row_to_stored(*row))?;
            }
            for (lease, _) in &batch.delete {
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
            operations::commit(&txn, batch)?;
            mirror::commit(&txn, batch)?;
            roots::commit(&txn, batch)?;
            freshness::commit(&txn, batch)?;
            rollouts::commit(&txn, batch)?;
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
            match self.blobs.remove(&hash) {
                Ok(()) => tracing::debug!(%hash, "component no longer registered; file deleted"),
                Err(e) => tracing::warn!(%hash, "cannot delete unregistered component: {e}"),
            }
        }
        Ok(())
    }

    fn manifests(&self, leases: &[LeaseId]) -> Result<Vec<Option<SignedManifest>>, StoreError> {
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

    fn append_history(
        &self,
        client: &str,
        seq: u64,
        entry: &HistoryEntry,
        keep: u64,
    ) -> Result<(), StoreError> {
        history::append(&self.db, client, seq, entry, keep)
    }

    fn history(
        &self,
        client: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        history::newest(&self.db, client, limit, max_bytes)
    }

    fn last_history(&self, client: &str) -> Result<Option<HistoryEntry>, StoreError> {
        Ok(history::newest(&self.db, client, 1, usize::MAX)?.pop())
    }

    fn usage_since(&self, since_hour_ms: u64) -> Result<Vec<UsageRecord>, StoreError> {
        operations::usage_since(&self.db.begin_read()?, since_hour_ms)
    }

    fn audit(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        operations::audit(&self.db.begin_read()?, from_seq, limit)
    }

    fn put_component(&self, hash: &ContentHash, bytes: &[u8]) -> Result<(), StoreError> {
        self.recount.wait()?;
        self.blobs.put(hash, bytes)
    }

    fn drop_unclaimed_component(&self, hash: &ContentHash) -> Result<(), StoreError> {
        self.recount.wait()?;
        let txn = self.db.begin_read()?;
        if txn.open_table(BLOB_REFS)?.get(&hash.0)?.is_some() {
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

#[cfg(test)]
mod tests;
