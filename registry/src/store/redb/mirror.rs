//! The redb tables of a child registry's mirror of its parent:
//! - `mirrored`: lease id -> () for each registration mirrored from the parent (deleted with
//!   the registration);
//! - `mirror_rules`: rule id -> postcard `MirrorRule`;
//! - `approvals`: (vendor key, service name, version) -> postcard `Approval`;
//! - `mirror_anchor`: the parent's pin -> the next event number of its feed to apply (one
//!   row at most).

use super::operations::decode;
use crate::store::{Batch, MirrorAnchor, StoreError, StoredMeta};
use courier_protocol::{LeaseId, codec};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

const MIRRORED: TableDefinition<&[u8; 16], ()> = TableDefinition::new("mirrored");
const RULES: TableDefinition<u32, &[u8]> = TableDefinition::new("mirror_rules");
const APPROVALS: TableDefinition<(&[u8; 32], &str, &str), &[u8]> =
    TableDefinition::new("approvals");
const ANCHOR: TableDefinition<&str, u64> = TableDefinition::new("mirror_anchor");

/// Creates the tables, so readers never meet a missing one.
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(MIRRORED)?;
    txn.open_table(RULES)?;
    txn.open_table(APPROVALS)?;
    txn.open_table(ANCHOR)?;
    Ok(())
}

/// Reads the tables into `meta`. A rule or an approval that does not decode is an error:
/// dropping a declined version silently would mirror what an operator refused.
pub(super) fn load(txn: &ReadTransaction, meta: &mut StoredMeta) -> Result<(), StoreError> {
    for item in txn.open_table(MIRRORED)?.iter()? {
        meta.mirrored.push(LeaseId(*item?.0.value()));
    }
    for item in txn.open_table(RULES)?.iter()? {
        meta.mirror_rules
            .push(decode("mirror rule", item?.1.value())?);
    }
    for item in txn.open_table(APPROVALS)?.iter()? {
        meta.approvals.push(decode("approval", item?.1.value())?);
    }
    if let Some(item) = txn.open_table(ANCHOR)?.iter()?.next() {
        let (k, v) = item?;
        meta.mirror_anchor = Some(MirrorAnchor {
            parent: k.value().to_string(),
            next: v.value(),
        });
    }
    Ok(())
}

/// Writes what `batch` changes in these tables, inside its transaction.
pub(super) fn commit(txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    if !batch.mirrored.is_empty() || !batch.delete.is_empty() {
        let mut t = txn.open_table(MIRRORED)?;
        // A registry that mirrors nothing (most) skips a lookup per deleted lease.
        if t.first()?.is_some() {
            for (lease, _) in &batch.delete {
                t.remove(&lease.0)?;
            }
        }
        for lease in &batch.mirrored {
            t.insert(&lease.0, ())?;
        }
    }
    if !batch.mirror_rules.is_empty() || !batch.unmirror_rules.is_empty() {
        let mut t = txn.open_table(RULES)?;
        for id in &batch.unmirror_rules {
            t.remove(*id)?;
        }
        for rule in &batch.mirror_rules {
            t.insert(rule.id, codec::encode(rule).as_slice())?;
        }
    }
    if !batch.approvals.is_empty() {
        let mut t = txn.open_table(APPROVALS)?;
        for a in &batch.approvals {
            let key = (&a.vendor.0, a.name.as_str(), a.version.as_str());
            t.insert(key, codec::encode(a).as_slice())?;
        }
    }
    if let Some(anchor) = &batch.mirror_anchor {
        let mut t = txn.open_table(ANCHOR)?;
        t.retain(|_, _| false)?;
        t.insert(anchor.parent.as_str(), anchor.next)?;
    }
    Ok(())
}
