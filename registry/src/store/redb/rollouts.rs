//! The redb tables of staged rollouts:
//! - `staged`: lease id -> () for each registration staged for a rollout (deleted with the
//!   registration);
//! - `rollouts`: rollout id -> postcard `RolloutRecord`;
//! - `rollout_marks`: (rollout id, client key) -> postcard `RolloutMark`.

use super::operations::decode;
use crate::store::{Batch, StoreError, StoredMeta};
use courier_protocol::{LeaseId, VendorKey, codec};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

const STAGED: TableDefinition<&[u8; 16], ()> = TableDefinition::new("staged");
const ROLLOUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("rollouts");
const MARKS: TableDefinition<(u64, &[u8; 32]), &[u8]> = TableDefinition::new("rollout_marks");

/// Creates the tables, so readers never meet a missing one.
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(STAGED)?;
    txn.open_table(ROLLOUTS)?;
    txn.open_table(MARKS)?;
    Ok(())
}

/// Reads the tables into `meta`. A record that does not decode is an error: a rollout
/// forgotten would show its staged version to no one, or open a wave again.
pub(super) fn load(txn: &ReadTransaction, meta: &mut StoredMeta) -> Result<(), StoreError> {
    for item in txn.open_table(STAGED)?.iter()? {
        meta.staged.push(LeaseId(*item?.0.value()));
    }
    for item in txn.open_table(ROLLOUTS)?.iter()? {
        meta.rollouts.push(decode("rollout", item?.1.value())?);
    }
    for item in txn.open_table(MARKS)?.iter()? {
        let (k, v) = item?;
        let (id, client) = k.value();
        meta.rollout_marks
            .push((id, VendorKey(*client), decode("rollout mark", v.value())?));
    }
    Ok(())
}

/// Writes what `batch` changes in these tables, inside its transaction.
pub(super) fn commit(txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    if !batch.staged.is_empty() || !batch.delete.is_empty() {
        let mut t = txn.open_table(STAGED)?;
        // A registry that stages nothing (most) skips a lookup per deleted lease.
        if t.first()?.is_some() {
            for (lease, _) in &batch.delete {
                t.remove(&lease.0)?;
            }
        }
        for lease in &batch.staged {
            t.insert(&lease.0, ())?;
        }
    }
    if !batch.rollouts.is_empty() {
        let mut t = txn.open_table(ROLLOUTS)?;
        for r in &batch.rollouts {
            t.insert(r.id, codec::encode(r).as_slice())?;
        }
    }
    if !batch.rollout_marks.is_empty() {
        let mut t = txn.open_table(MARKS)?;
        for (id, client, mark) in &batch.rollout_marks {
            t.insert((*id, &client.0), codec::encode(mark).as_slice())?;
        }
    }
    Ok(())
}
