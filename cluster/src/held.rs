//! The lease rows a standby writes for the vendors connected to it: renewals are taken by
//! whichever node a vendor reaches, and written behind in batches, not one etcd write each.
//!
//! A standby writes nothing but `lease/<lease>` rows, and each only
//! - while the standby's own membership key (`nodes/<name>`, under its session) is the one
//!   it created: a node whose session ended writes nothing more, as the writer's fence
//!   does for the writer;
//! - while the lease's registration (`reg/<lease>`) is still there: a row never brings
//!   back a lease the writer expired, cancelled or replaced meanwhile.
//!
//! Both are compares of one transaction per chunk. When one fails, the transaction's
//! other branch reads the membership key and the registrations, and the chunk is written
//! again without the leases that are gone (once; a second failure leaves the rows for the
//! next flush, as an error that does not mark the store unavailable).

use crate::etcd::Etcd;
use crate::layout::{self, Layout};
use crate::write::{Fence, lease_value};
use courier_protocol::LeaseId;
use courier_registry::{LeaseRow, StoreError};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

/// Rows per transaction: etcd's `--max-txn-ops` (128) caps compares too, and each row
/// brings one besides the membership's.
const ROWS_PER_TXN: usize = 100;

/// Writes `rows` as `holder`'s, under its membership `fence`.
pub(crate) fn commit_rows(
    etcd: &Etcd,
    l: &Layout,
    holder: &str,
    fence: &Fence,
    rows: &[(LeaseId, LeaseRow)],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_TXN) {
        let mut chunk = chunk.to_vec();
        for attempt in 0..2 {
            match try_rows(etcd, l, holder, fence, &chunk)? {
                Outcome::Written => break,
                Outcome::Gone(gone) if attempt == 0 => {
                    chunk.retain(|(lease, _)| !gone.contains(lease));
                    if chunk.is_empty() {
                        break;
                    }
                }
                // etcd answered: not the store's unavailability; the rows wait.
                Outcome::Gone(_) => {
                    return Err(StoreError::Db(
                        "lease rows raced with their removal twice; kept for the next flush".into(),
                    ));
                }
            }
        }
    }
    Ok(())
}

enum Outcome {
    Written,
    /// The leases whose registrations are gone.
    Gone(Vec<LeaseId>),
}

fn try_rows(
    etcd: &Etcd,
    l: &Layout,
    holder: &str,
    fence: &Fence,
    rows: &[(LeaseId, LeaseRow)],
) -> Result<Outcome, StoreError> {
    let reg = |lease: &LeaseId| l.key(&format!("reg/{}", layout::lease(lease)));
    let mut compares = vec![Compare::create_revision(
        fence.key.clone(),
        CompareOp::Equal,
        fence.revision,
    )];
    let mut puts = Vec::with_capacity(rows.len());
    let mut reads = vec![TxnOp::get(fence.key.clone(), None)];
    for (lease, row) in rows {
        compares.push(Compare::version(reg(lease), CompareOp::Greater, 0));
        puts.push(TxnOp::put(
            l.key(&format!("lease/{}", layout::lease(lease))),
            lease_value(row, holder),
            None,
        ));
        reads.push(TxnOp::get(
            reg(lease),
            Some(GetOptions::new().with_keys_only()),
        ));
    }
    let txn = Txn::new().when(compares).and_then(puts).or_else(reads);
    let resp = etcd.run("write held lease rows", move |mut c| async move {
        c.txn(txn).await
    })?;
    if resp.succeeded() {
        return Ok(Outcome::Written);
    }
    // The create revision of each key read: the membership's, then each registration's.
    let answers: Vec<Option<i64>> = resp
        .op_responses()
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.create_revision()),
            _ => None,
        })
        .collect();
    let member = answers.first().copied().flatten() == Some(fence.revision);
    if !member {
        return Err(StoreError::Unavailable(
            "this node's etcd session ended (its membership key is gone): it writes no lease \
             rows until it joins again"
                .into(),
        ));
    }
    Ok(Outcome::Gone(
        rows.iter()
            .zip(answers.iter().skip(1))
            .filter(|(_, created)| created.is_none())
            .map(|((lease, _), _)| *lease)
            .collect(),
    ))
}
