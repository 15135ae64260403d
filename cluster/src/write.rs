//! Committing a registry's [`Batch`] to etcd: every change as a put or a delete under the
//! cluster's [`Layout`], in transactions that each carry the writer's fence (the election
//! key this node holds), so that a node that lost the election cannot write.
//!
//! etcd caps a transaction at `--max-txn-ops` operations (128 by default). A batch that
//! fits is one transaction, all or nothing. A larger one (a flush of many renewed leases,
//! a slice of an expiry storm) is several, in order, each a whole number of records, the
//! marks (`meta/`) last: if one fails, the registry abandons the batch, and what the
//! earlier transactions wrote is a prefix of it that the restart rule reads correctly
//! (newer expiry times, registrations already gone).

use crate::clock::wall_ms;
use crate::etcd::Etcd;
use crate::layout::{self, Layout, be};
use crate::read;
use courier_protocol::LeaseId;
use courier_protocol::codec;
use courier_registry::LeaseRow;
use courier_registry::store_records::{encode_manifest, row_to_stored};
use courier_registry::{Batch, Removal, StoreError, UsageRecord};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use std::collections::HashMap;

/// A `lease/<lease>` value: expiry, duration, renewals (grace in the top bit), then the
/// name of the node that wrote it (the node holding the lease).
pub(crate) fn lease_value(row: &LeaseRow, holder: &str) -> Vec<u8> {
    let (a, b, c) = row_to_stored(*row);
    let mut v = Vec::with_capacity(24 + holder.len());
    v.extend(be(a));
    v.extend(be(b));
    v.extend(be(c));
    v.extend(holder.as_bytes());
    v
}

/// The node that wrote a `lease/<lease>` value (empty: written before rows named it).
pub(crate) fn row_holder(v: &[u8]) -> &str {
    v.get(24..)
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("")
}

/// Operations per transaction (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// The election key this node holds, and its creation revision: a transaction commits
/// only while the key is still this node's.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The key.
    pub key: Vec<u8>,
    /// Its create revision.
    pub revision: i64,
}

/// Puts and deletes, the last one of a key winning; groups that must commit together.
#[derive(Default)]
pub struct Writes {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    index: HashMap<Vec<u8>, usize>,
    /// Where each group of records ends (an index into `ops`).
    ends: Vec<usize>,
    /// Marks written last.
    marks: Vec<(Vec<u8>, Vec<u8>)>,
    /// Why registrations are deleted, by the group deleting each: every transaction
    /// holding such a group also puts its [`GoneNote`] (`meta/gone`).
    gone: Vec<(usize, LeaseId, Removal)>,
    /// The `meta/gone` key and the writer's clock for the notes.
    gone_at: Option<(Vec<u8>, u64)>,
}

/// `meta/gone`, put in the transaction that deletes registrations: why each was deleted
/// and when (the writer's clock), so that every node numbers the same removal event.
/// The value: the time (8 bytes), then per registration its lease (16) and why (1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoneNote {
    /// The writer's wall clock, ms since the Unix epoch.
    pub at_ms: u64,
    /// Each registration deleted, and why.
    pub leases: Vec<(LeaseId, Removal)>,
}

impl GoneNote {
    /// The stored value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = be(self.at_ms);
        for (lease, why) in &self.leases {
            v.extend_from_slice(&lease.0);
            v.push(why.code());
        }
        v
    }

    /// A stored value read back (`None` if it is not one).
    pub fn decode(v: &[u8]) -> Option<Self> {
        let (at, rest) = v.split_first_chunk::<8>()?;
        if rest.len() % 17 != 0 {
            return None;
        }
        let leases = rest
            .chunks_exact(17)
            .map(|c| {
                let (id, why) = c.split_first_chunk::<16>()?;
                Some((LeaseId(*id), Removal::from_code(why[0])?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            at_ms: u64::from_be_bytes(*at),
            leases,
        })
    }
}

impl Writes {
    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match self.index.get(&key) {
            Some(&i) => self.ops[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.ops.len());
                self.ops.push((key, value));
            }
        }
    }

    /// Puts `value` at `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    /// Ends a group: a transaction boundary may fall here.
    pub fn end(&mut self) {
        self.ends.push(self.ops.len());
    }

    /// Notes why the current group deletes `lease`'s registration.
    pub fn gone(&mut self, lease: LeaseId, why: Removal) {
        self.gone.push((self.ends.len(), lease, why));
    }

    /// Where the notes of deletions go (`meta/gone`) and the writer's clock for them.
    pub fn note_gone_at(&mut self, key: Vec<u8>, at_ms: u64) {
        self.gone_at = Some((key, at_ms));
    }

    /// Puts a mark, committed after everything else.
    pub fn mark(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.marks.push((key, value));
    }

    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.marks.is_empty()
    }

    /// The transactions' operations, each at most [`MAX_TXN_OPS`], cut at group ends;
    /// each transaction that deletes registrations also puts the note of why.
    fn into_chunks(mut self) -> Vec<Vec<TxnOp>> {
        self.end();
        let op = |(k, v): (Vec<u8>, Option<Vec<u8>>)| match v {
            Some(v) => TxnOp::put(k, v, None),
            None => TxnOp::delete(k, None),
        };
        // Room for the note in every transaction.
        let room = MAX_TXN_OPS - 1;
        let mut chunks: Vec<Vec<TxnOp>> = vec![Vec::new()];
        // The groups each transaction holds, from which group index.
        let mut firsts = vec![0usize];
        let mut ops = self.ops.into_iter();
        let mut at = 0usize;
        for (g, end) in self.ends.into_iter().enumerate() {
            let n = end.saturating_sub(at);
            at = end.max(at);
            let group: Vec<TxnOp> = ops.by_ref().take(n).map(op).collect();
            let current = chunks.last().map_or(0, Vec::len);
            if current > 0 && current + group.len() > room {
                chunks.push(Vec::new());
                firsts.push(g);
            }
            // A group larger than a transaction is split anyway (never the case for the
            // records written here: at most a handful of keys each).
            for piece in group.chunks(room).map(<[TxnOp]>::to_vec) {
                if let Some(last) = chunks.last_mut()
                    && last.len() + piece.len() <= room
                {
                    last.extend(piece);
                } else {
                    chunks.push(piece);
                    firsts.push(g);
                }
            }
        }
        if let Some((key, at_ms)) = self.gone_at.take() {
            for (i, chunk) in chunks.iter_mut().enumerate() {
                let (from, to) = (firsts[i], firsts.get(i + 1).copied().unwrap_or(usize::MAX));
                let leases: Vec<_> = self
                    .gone
                    .iter()
                    .filter(|(g, ..)| (from..to).contains(g))
                    .map(|(_, lease, why)| (*lease, *why))
                    .collect();
                if !leases.is_empty() {
                    let note = GoneNote { at_ms, leases };
                    chunk.push(TxnOp::put(key.clone(), note.encode(), None));
                }
            }
        }
        let marks: Vec<TxnOp> = self
            .marks
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, None))
            .collect();
        match chunks.last_mut() {
            Some(last) if last.len() + marks.len() <= MAX_TXN_OPS => last.extend(marks),
            _ => chunks.push(marks),
        }
        chunks.retain(|c| !c.is_empty());
        chunks
    }

    /// Commits, under `fence` when there is one.
    pub fn commit(self, etcd: &Etcd, fence: Option<&Fence>) -> Result<(), StoreError> {
        for chunk in self.into_chunks() {
            let compares: Vec<Compare> = fence
                .map(|f| {
                    vec![Compare::create_revision(
                        f.key.clone(),
                        CompareOp::Equal,
                        f.revision,
                    )]
                })
                .unwrap_or_default();
            let txn = Txn::new().when(compares).and_then(chunk);
            let resp = etcd.run("commit", move |mut c| async move { c.txn(txn).await })?;
            if !resp.succeeded() {
                return Err(StoreError::Unavailable(
                    "this node is no longer the cluster's writer (its election key is gone: \
                     its etcd session ended, and another node may lead now); nothing written"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// What `batch` writes, read against etcd where it adds to what is there (names kept by
/// their first owner, usage counts, names and grants passed on by a rotation). Lease rows
/// name `holder`, the node writing them.
pub fn plan(etcd: &Etcd, l: &Layout, batch: &Batch, holder: &str) -> Result<Writes, StoreError> {
    let mut w = Writes::default();
    // A registration and its lease row go in one group (one transaction).
    let mut registrations: HashMap<_, _> =
        batch.registrations.iter().map(|(l, m)| (*l, m)).collect();
    for (lease, row) in &batch.leases {
        if let Some(m) = registrations.remove(lease) {
            w.put(
                l.key(&format!("reg/{}", layout::lease(lease))),
                encode_manifest(m),
            );
        }
        w.put(
            l.key(&format!("lease/{}", layout::lease(lease))),
            lease_value(row, holder),
        );
        w.end();
    }
    for (lease, m) in registrations {
        w.put(
            l.key(&format!("reg/{}", layout::lease(&lease))),
            encode_manifest(m),
        );
        w.end();
    }
    w.note_gone_at(
        l.key("meta/gone"),
        batch.last_alive_ms.unwrap_or_else(wall_ms),
    );
    for (lease, why) in &batch.delete {
        w.delete(l.key(&format!("reg/{}", layout::lease(lease))));
        w.delete(l.key(&format!("lease/{}", layout::lease(lease))));
        w.gone(*lease, *why);
        w.end();
    }
    for (name, key) in &batch.names {
        let k = l.key(&format!("name/{name}"));
        if read::one(etcd, k.clone())?.is_none() {
            w.put(k, key.0.to_vec());
        }
    }
    for (name, key) in &batch.grants {
        w.put(
            l.key(&format!("grant/{}/{name}", layout::vendor(key))),
            Vec::new(),
        );
    }
    for (key, s) in &batch.rotations {
        w.put(
            l.key(&format!("rot/{}", layout::vendor(key))),
            codec::encode(s),
        );
    }
    for (key, s) in &batch.revocations {
        let v = s.as_ref().map(codec::encode).unwrap_or_default();
        w.put(l.key(&format!("revoc/{}", layout::vendor(key))), v);
    }
    for (from, to) in &batch.transfers {
        for (name, owner) in read::all(etcd, l, "name/")? {
            if owner == from.0 {
                w.put(l.key(&format!("name/{name}")), to.0.to_vec());
            }
        }
        let granted = format!("grant/{}/", layout::vendor(from));
        for (name, _) in read::all(etcd, l, &granted)? {
            w.delete(l.key(&format!("{granted}{name}")));
            w.put(
                l.key(&format!("grant/{}/{name}", layout::vendor(to))),
                Vec::new(),
            );
        }
    }
    for c in &batch.clients {
        w.put(
            l.key(&format!("client/{}", layout::vendor(&c.key))),
            codec::encode(c),
        );
    }
    for (name, key, reason) in &batch.bans {
        w.put(
            l.key(&format!("ban/{}/{name}", layout::vendor(key))),
            reason.as_bytes().to_vec(),
        );
    }
    for (name, key) in &batch.unbans {
        w.delete(l.key(&format!("ban/{}/{name}", layout::vendor(key))));
    }
    for (name, reason) in &batch.drains {
        w.put(l.key(&format!("drain/{name}")), reason.as_bytes().to_vec());
    }
    for name in &batch.undrains {
        w.delete(l.key(&format!("drain/{name}")));
    }
    for (key, name, at) in &batch.children {
        let mut v = be(*at);
        v.extend_from_slice(name.as_bytes());
        w.put(l.key(&format!("child/{}", layout::vendor(key))), v);
    }
    for key in &batch.unchildren {
        w.delete(l.key(&format!("child/{}", layout::vendor(key))));
    }
    for (lease, reason, until) in &batch.lease_revocations {
        let mut v = be(*until);
        v.extend_from_slice(reason.as_bytes());
        w.put(l.key(&format!("lrev/{}", layout::lease(lease))), v);
    }
    for lease in &batch.forget_lease_revocations {
        w.delete(l.key(&format!("lrev/{}", layout::lease(lease))));
    }
    for (key, s) in &batch.operator_statements {
        let k = format!("opst/{}/{}", layout::vendor(key), hex::encode(s.signature));
        w.put(l.key(&k), codec::encode(s));
    }
    add_usage(etcd, l, &mut w, &batch.usage)?;
    for entry in &batch.audit {
        w.put(
            l.key(&format!("audit/{}", layout::num(entry.seq))),
            codec::encode(entry),
        );
    }
    for s in &batch.root_statements {
        let p = s
            .peek()
            .map_err(|e| StoreError::Corrupt(format!("root statement: {e}")))?;
        let k = format!("root/{}/{}", hex::encode(p.root.0), layout::num(p.version));
        w.put(l.key(&k), codec::encode(s));
    }
    for d in &batch.delegations {
        let root = d
            .peek()
            .map_err(|e| StoreError::Corrupt(format!("delegation: {e}")))?
            .root;
        let k = format!("deleg/{}/{}", hex::encode(root.0), hex::encode(d.signature));
        w.put(l.key(&k), codec::encode(d));
    }
    for signed in &batch.freshness {
        let statement = signed
            .peek()
            .map_err(|e| StoreError::Corrupt(format!("freshness statement: {e}")))?;
        let bytes = codec::encode(signed);
        for service in statement.services.keys() {
            let k = format!("fresh/{}/{service}", layout::vendor(&statement.vendor));
            w.put(l.key(&k), bytes.clone());
        }
    }
    if let Some(s) = batch.seq_reserved {
        w.mark(l.key("meta/seq_reserved"), be(s));
    }
    if let Some(t) = batch.last_alive_ms {
        w.mark(l.key("meta/last_alive_ms"), be(t));
    }
    Ok(w)
}

/// Adds usage counts to what etcd holds (this node is the only writer: read, then put).
fn add_usage(
    etcd: &Etcd,
    l: &Layout,
    w: &mut Writes,
    usage: &[UsageRecord],
) -> Result<(), StoreError> {
    let mut sums: HashMap<String, [u64; 4]> = HashMap::new();
    for u in usage {
        let client = u
            .client
            .map_or_else(|| "0".repeat(64), |c| layout::vendor(&c));
        let rest = format!("{}/{client}/{}", layout::num(u.hour_ms), u.service);
        let sum = match sums.get(&rest) {
            Some(s) => *s,
            None => read::one(etcd, l.key(&format!("usage/{rest}")))?
                .and_then(|v| layout::be_n::<4>(&v))
                .unwrap_or_default(),
        };
        let added = [
            sum[0].saturating_add(u.handed_out),
            sum[1].saturating_add(u.bytes),
            sum[2].saturating_add(u.calls),
            sum[3].saturating_add(u.failed),
        ];
        sums.insert(rest, added);
    }
    for (rest, n) in sums {
        let v: Vec<u8> = n.iter().flat_map(|x| x.to_be_bytes()).collect();
        w.put(l.key(&format!("usage/{rest}")), v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_note_reads_back_and_refuses_what_is_not_one() {
        let note = GoneNote {
            at_ms: 1_764_000_000_123,
            leases: vec![
                (LeaseId([1; 16]), Removal::Cancelled),
                (LeaseId([2; 16]), Removal::Revoked),
            ],
        };
        assert_eq!(GoneNote::decode(&note.encode()), Some(note.clone()));
        let bytes = note.encode();
        assert_eq!(
            GoneNote::decode(&bytes[..bytes.len() - 1]),
            None,
            "cut short"
        );
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 9;
        assert_eq!(GoneNote::decode(&bad), None, "an unknown reason");
        assert_eq!(GoneNote::decode(&[0; 5]), None);
    }
}
