//! The tables of vendor roots:
//! - `root_statements`: (root id, version) -> postcard `SignedRootStatement`, every version
//!   held (a client that knows an older one needs the chain from it).
//! - `delegations`: (root id, signature) -> postcard `SignedDelegation`.
//!
//! A record that does not decode is an error at open: dropping a root's newer statement
//! silently would let an older one (with a delegation it revoked) be served as newest.

use super::operations::decode;
use crate::store::{Batch, StoreError, StoredMeta};
use courier_protocol::{SignedDelegation, SignedRootStatement, codec};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

const ROOT_STATEMENTS: TableDefinition<(&[u8; 32], u64), &[u8]> =
    TableDefinition::new("root_statements");
const DELEGATIONS: TableDefinition<(&[u8; 32], &[u8; 64]), &[u8]> =
    TableDefinition::new("delegations");

/// Creates the tables.
pub(super) fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ROOT_STATEMENTS)?;
    txn.open_table(DELEGATIONS)?;
    Ok(())
}

/// Reads both tables into `meta`, statements in (root, version) order.
pub(super) fn load(txn: &ReadTransaction, meta: &mut StoredMeta) -> Result<(), StoreError> {
    for item in txn.open_table(ROOT_STATEMENTS)?.iter()? {
        let (_, v) = item?;
        meta.root_statements
            .push(decode::<SignedRootStatement>("root statement", v.value())?);
    }
    for item in txn.open_table(DELEGATIONS)?.iter()? {
        let (_, v) = item?;
        meta.delegations
            .push(decode::<SignedDelegation>("delegation", v.value())?);
    }
    Ok(())
}

/// Writes what `batch` adds to these tables, inside its transaction.
pub(super) fn commit(txn: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
    if !batch.root_statements.is_empty() {
        let mut t = txn.open_table(ROOT_STATEMENTS)?;
        for s in &batch.root_statements {
            let p = decode_peek(s)?;
            t.insert((&p.root.0, p.version), codec::encode(s).as_slice())?;
        }
    }
    if !batch.delegations.is_empty() {
        let mut t = txn.open_table(DELEGATIONS)?;
        for d in &batch.delegations {
            let root = d
                .peek()
                .map_err(|e| StoreError::Corrupt(format!("delegation: {e}")))?
                .root;
            t.insert((&root.0, &d.signature), codec::encode(d).as_slice())?;
        }
    }
    Ok(())
}

fn decode_peek(s: &SignedRootStatement) -> Result<courier_protocol::RootStatement, StoreError> {
    s.peek()
        .map_err(|e| StoreError::Corrupt(format!("root statement: {e}")))
}
