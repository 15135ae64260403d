//! Service history in the redb store: `history` maps (client, seq) to a postcard
//! `HistoryEntry`; `history_order` maps seq to client, the same entries oldest first, so
//! that the oldest can go when the history is full (`meta` `history_order_v1` marks a store
//! whose order is kept).

use super::{HISTORY, HISTORY_ORDER, META, meta_u64};
use crate::store::StoreError;
use courier_protocol::{HistoryEntry, codec};
use redb::{Database, ReadableDatabase, ReadableTableMetadata};

/// Appends a history entry for `client` under `seq` (durably), and records `seq` as the
/// last used. When more than `keep` entries are stored, the oldest go in the same
/// transaction, whichever client they belong to.
pub(super) fn append(
    db: &Database,
    client: &str,
    seq: u64,
    entry: &HistoryEntry,
    keep: u64,
) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
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
pub(super) fn newest(
    db: &Database,
    client: &str,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let txn = db.begin_read()?;
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
