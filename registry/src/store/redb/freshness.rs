//! The redb table of freshness statements: `freshness`: (vendor key, service name) ->
//! postcard `SignedFreshness`, the latest statement of that service (a statement naming
//! several services is written under each).

use crate::store::{Batch, StoreError, StoredMeta};
use courier_protocol::{SignedFreshness, codec};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use std::collections::HashSet;

const FRESHNESS: TableDefinition<(&[u8; 32], &str), &[u8]> = TableDefinition::new("freshness");

/// Creates the table, so readers never meet a missing one.
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(FRESHNESS)?;
    Ok(())
}

/// Reads every statement held, each once, into `meta`.
pub(super) fn load(txn: &ReadTransaction, meta: &mut StoredMeta) -> Result<(), StoreError> {
    let mut seen = HashSet::new();
    for item in txn.open_table(FRESHNESS)?.iter()? {
        let (_, v) = item?;
        let signed: SignedFreshness = codec::decode(v.value())
            .map_err(|e| StoreError::Corrupt(format!("freshness statement: {e}")))?;
        if seen.insert(signed.clone()) {
            meta.freshness.push(signed);
        }
    }
    Ok(())
}

/// Writes the batch's statements under every service each names.
pub(super) fn commit(txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    if batch.freshness.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(FRESHNESS)?;
    for signed in &batch.freshness {
        let statement = signed
            .peek()
            .map_err(|e| StoreError::Corrupt(format!("freshness statement: {e}")))?;
        let bytes = codec::encode(signed);
        for service in statement.services.keys() {
            table.insert((&statement.vendor.0, service.as_str()), bytes.as_slice())?;
        }
    }
    Ok(())
}
