//! Where a cluster keeps what in etcd: every key under `/courier/<cluster>/`, one prefix
//! per kind of record, numbers in 20 decimal digits so that etcd's byte order is their
//! order, keys and lease ids in hex.
//!
//! | prefix | value |
//! | --- | --- |
//! | `meta/registry_id`, `meta/seq_reserved`, `meta/last_alive_ms`, `meta/history_seq` | id text; u64 big-endian |
//! | `meta/gone` | put by each transaction that deletes registrations: the writer's clock (u64 BE), then per registration its lease (16 bytes) and why (1 byte) |
//! | `reg/<lease>` | signature, then the canonical manifest (as redb keeps it) |
//! | `lease/<lease>` | expires_at_ms, ttl_ms, renewals (grace flag in the top bit), 3 × u64 BE, then the name of the node holding the lease (that wrote it) |
//! | `name/<name>` | the owner's key (32 bytes) |
//! | `grant/<key>/<name>` | empty |
//! | `rot/<key>`, `revoc/<key>` | postcard `SignedKeyStatement` (empty: the operator's revocation) |
//! | `client/<key>` | postcard `ClientInfo` |
//! | `ban/<key>/<name>`, `drain/<name>` | the reason |
//! | `child/<key>` | a child registry the operator allowed: when (u64 BE), then its name |
//! | `lrev/<lease>` | until (u64 BE), then the reason |
//! | `opst/<key>/<signature>` | postcard `SignedOperatorStatement` |
//! | `audit/<seq>` | postcard `AuditEntry` |
//! | `usage/<hour>/<client key or 64 zeros>/<service>` | handed out, bytes, calls, failed, 4 × u64 BE |
//! | `root/<root>/<version>`, `deleg/<root>/<signature>` | postcard statements |
//! | `fresh/<vendor>/<service>` | postcard `SignedFreshness` |
//! | `hist/<seq>` | the client's name, hex; `histc/<client hex>/<seq>`: postcard `HistoryEntry` |
//! | `nodes/<node>` | the node's advertisement, under its session lease |
//! | `progress/<node>` | a standby's applied revision and the time it said so, 2 × u64 BE, under its session lease |
//! | `leader/` | etcd's election of the one node that writes |

use courier_protocol::{LeaseId, VendorKey};

/// The keys of one cluster.
#[derive(Debug, Clone)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// The keys of cluster `name` (letters, digits, `-`, `_`, `.`).
    pub fn new(name: &str) -> Self {
        Self {
            root: format!("/courier/{name}/"),
        }
    }

    /// `root` + `rest`, as bytes.
    pub fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.root).into_bytes()
    }

    /// The part of `key` after the root and `prefix`, if it has them.
    pub fn strip<'a>(&self, key: &'a [u8], prefix: &str) -> Option<&'a str> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(self.root.as_str())?
            .strip_prefix(prefix)
    }

    /// The election's name (its candidates' keys start with it).
    pub fn election(&self) -> Vec<u8> {
        self.key("leader/")
    }
}

/// A lease id in hex.
pub fn lease(l: &LeaseId) -> String {
    hex::encode(l.0)
}

/// A key in hex.
pub fn vendor(k: &VendorKey) -> String {
    hex::encode(k.0)
}

/// A number in 20 digits (sorts as it counts).
pub fn num(n: u64) -> String {
    format!("{n:020}")
}

/// Parses a hex lease id.
pub fn parse_lease(s: &str) -> Option<LeaseId> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(s, &mut id).ok()?;
    Some(LeaseId(id))
}

/// Parses a hex key.
pub fn parse_vendor(s: &str) -> Option<VendorKey> {
    let mut k = [0u8; 32];
    hex::decode_to_slice(s, &mut k).ok()?;
    Some(VendorKey(k))
}

/// A u64 as etcd keeps it.
pub fn be(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Reads `N` big-endian u64s.
pub fn be_n<const N: usize>(v: &[u8]) -> Option<[u64; N]> {
    if v.len() < N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (i, o) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[i * 8..i * 8 + 8]);
        *o = u64::from_be_bytes(b);
    }
    Some(out)
}
