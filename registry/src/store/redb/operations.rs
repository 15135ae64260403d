//! The redb tables of what clients and operators do, beside the registrations: client
//! records, bans, drains, revoked leases, operators' signed revocations and the audit log.
//!
//! - `clients`: client key -> postcard `ClientInfo` (the whole record).
//! - `bans`: (service name, vendor key) -> reason; `drains`: service name -> reason.
//! - `children`: child registry key -> (allowed at, wall-clock ms; name).
//! - `lease_revocations`: lease id -> (until wall-clock ms, reason).
//! - `operator_statements`: (revoked key, signature) -> postcard `SignedOperatorStatement`.
//! - `audit`: number -> postcard `AuditEntry`; the highest number is the last used.
//! - `usage`: (hour, client key or zeros, service name) -> (handed out, bytes, calls,
//!   failed), added to by each flush.

use crate::store::{Batch, StoreError, StoredMeta, UsageRecord};
use courier_protocol::{
    AuditEntry, ClientInfo, LeaseId, SignedOperatorStatement, VendorKey, codec,
};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

const CLIENTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("clients");
const BANS: TableDefinition<(&str, &[u8; 32]), &str> = TableDefinition::new("bans");
const DRAINS: TableDefinition<&str, &str> = TableDefinition::new("drains");
const CHILDREN: TableDefinition<&[u8; 32], (u64, &str)> = TableDefinition::new("children");
const LEASE_REVOCATIONS: TableDefinition<&[u8; 16], (u64, &str)> =
    TableDefinition::new("lease_revocations");
const OPERATOR_STATEMENTS: TableDefinition<(&[u8; 32], &[u8; 64]), &[u8]> =
    TableDefinition::new("operator_statements");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Usage rows keyed by (hour, client key, service): handed out, bytes,
/// calls, failed calls.
type UsageKey<'a> = (u64, &'a [u8; 32], &'a str);
type UsageCounts = (u64, u64, u64, u64);
const USAGE: TableDefinition<UsageKey, UsageCounts> = TableDefinition::new("usage");

/// The client key column of an anonymous usage row.
const NO_CLIENT: [u8; 32] = [0; 32];

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Creates the tables, so readers never meet a missing one.
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CLIENTS)?;
    txn.open_table(BANS)?;
    txn.open_table(DRAINS)?;
    txn.open_table(CHILDREN)?;
    txn.open_table(LEASE_REVOCATIONS)?;
    txn.open_table(OPERATOR_STATEMENTS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(USAGE)?;
    Ok(())
}

/// Reads every table into `meta`. A record that does not decode is an error: dropping a
/// ban or an operator's revocation silently would let back what an operator stopped.
pub(super) fn load(txn: &ReadTransaction, meta: &mut StoredMeta) -> Result<(), StoreError> {
    for item in txn.open_table(CLIENTS)?.iter()? {
        let (_, v) = item?;
        meta.clients
            .push(decode::<ClientInfo>("client", v.value())?);
    }
    for item in txn.open_table(BANS)?.iter()? {
        let (k, v) = item?;
        let (name, key) = k.value();
        meta.bans
            .push((name.to_string(), VendorKey(*key), v.value().to_string()));
    }
    for item in txn.open_table(DRAINS)?.iter()? {
        let (k, v) = item?;
        meta.drains
            .push((k.value().to_string(), v.value().to_string()));
    }
    for item in txn.open_table(CHILDREN)?.iter()? {
        let (k, v) = item?;
        let (at, name) = v.value();
        meta.children
            .push((VendorKey(*k.value()), name.to_string(), at));
    }
    for item in txn.open_table(LEASE_REVOCATIONS)?.iter()? {
        let (k, v) = item?;
        let (until, reason) = v.value();
        meta.lease_revocations
            .push((LeaseId(*k.value()), reason.to_string(), until));
    }
    for item in txn.open_table(OPERATOR_STATEMENTS)?.iter()? {
        let (k, v) = item?;
        let statement = decode::<SignedOperatorStatement>("operator statement", v.value())?;
        meta.operator_statements
            .push((VendorKey(*k.value().0), statement));
    }
    meta.audit_seq = txn.open_table(AUDIT)?.last()?.map_or(0, |(k, _)| k.value());
    let mut served = std::collections::BTreeSet::new();
    for item in txn.open_table(USAGE)?.iter()? {
        let (k, v) = item?;
        let (_, client, service) = k.value();
        if *client != NO_CLIENT && v.value().0 > 0 {
            served.insert((service.to_string(), VendorKey(*client)));
        }
    }
    meta.served = served.into_iter().collect();
    Ok(())
}

/// Writes what `batch` changes in these tables, inside its transaction.
pub(super) fn commit(txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    if !batch.clients.is_empty() {
        let mut t = txn.open_table(CLIENTS)?;
        for c in &batch.clients {
            t.insert(&c.key.0, codec::encode(c).as_slice())?;
        }
    }
    if !batch.bans.is_empty() || !batch.unbans.is_empty() {
        let mut t = txn.open_table(BANS)?;
        for (name, key, reason) in &batch.bans {
            t.insert((name.as_str(), &key.0), reason.as_str())?;
        }
        for (name, key) in &batch.unbans {
            t.remove((name.as_str(), &key.0))?;
        }
    }
    if !batch.drains.is_empty() || !batch.undrains.is_empty() {
        let mut t = txn.open_table(DRAINS)?;
        for (name, reason) in &batch.drains {
            t.insert(name.as_str(), reason.as_str())?;
        }
        for name in &batch.undrains {
            t.remove(name.as_str())?;
        }
    }
    if !batch.children.is_empty() || !batch.unchildren.is_empty() {
        let mut t = txn.open_table(CHILDREN)?;
        for (key, name, at) in &batch.children {
            t.insert(&key.0, (*at, name.as_str()))?;
        }
        for key in &batch.unchildren {
            t.remove(&key.0)?;
        }
    }
    if !batch.lease_revocations.is_empty() || !batch.forget_lease_revocations.is_empty() {
        let mut t = txn.open_table(LEASE_REVOCATIONS)?;
        for (lease, reason, until) in &batch.lease_revocations {
            t.insert(&lease.0, (*until, reason.as_str()))?;
        }
        for lease in &batch.forget_lease_revocations {
            t.remove(&lease.0)?;
        }
    }
    if !batch.operator_statements.is_empty() {
        let mut t = txn.open_table(OPERATOR_STATEMENTS)?;
        for (key, s) in &batch.operator_statements {
            t.insert((&key.0, &s.signature), codec::encode(s).as_slice())?;
        }
    }
    if !batch.usage.is_empty() {
        let mut t = txn.open_table(USAGE)?;
        for u in &batch.usage {
            let client = u.client.map_or(NO_CLIENT, |c| c.0);
            let key = (u.hour_ms, &client, u.service.as_str());
            let (h, b, c, f) = t.get(key)?.map_or((0, 0, 0, 0), |v| v.value());
            t.insert(
                key,
                (
                    h.saturating_add(u.handed_out),
                    b.saturating_add(u.bytes),
                    c.saturating_add(u.calls),
                    f.saturating_add(u.failed),
                ),
            )?;
        }
    }
    if !batch.audit.is_empty() {
        let mut t = txn.open_table(AUDIT)?;
        for entry in &batch.audit {
            t.insert(entry.seq, codec::encode(entry).as_slice())?;
        }
    }
    Ok(())
}

/// Audit entries from `from_seq` on, at most `limit`.
pub(super) fn audit(
    txn: &ReadTransaction,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let t = txn.open_table(AUDIT)?;
    let mut out = Vec::new();
    for item in t.range(from_seq..)?.take(limit) {
        let (_, v) = item?;
        out.push(decode("audit entry", v.value())?);
    }
    Ok(out)
}

/// Usage records from hour `since` on.
pub(super) fn usage_since(
    txn: &ReadTransaction,
    since: u64,
) -> Result<Vec<UsageRecord>, StoreError> {
    let t = txn.open_table(USAGE)?;
    let mut out = Vec::new();
    for item in t.range((since, &[0u8; 32], "")..)? {
        let (k, v) = item?;
        let (hour_ms, client, service) = k.value();
        let (handed_out, bytes, calls, failed) = v.value();
        out.push(UsageRecord {
            hour_ms,
            client: (*client != NO_CLIENT).then_some(VendorKey(*client)),
            service: service.to_string(),
            handed_out,
            bytes,
            calls,
            failed,
        });
    }
    Ok(out)
}
