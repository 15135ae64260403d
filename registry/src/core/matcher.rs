//! The matcher: answers a [`ServiceQuery`] from the catalog's interface index, never by a
//! scan of the whole catalog.
//!
//! A registration matches when it exports the queried interface (`namespace:package/
//! interface`) at a version meeting the query's semver requirement, that export has every
//! function asked for, every attribute constraint holds, and its lease is live at `now`
//! (checked here against the lease table, so an expired or cancelled registration stops
//! matching at once, before the expiry task collects it).
//!
//! Rank, best first: the highest interface version, then the highest proxy version, then the
//! most lease time left, then the lease id (so equal candidates come in a stable order).

use crate::core::catalog::{Bucket, Catalog, ExportEntry, Registration, Slot, unpack32};
use crate::core::lease_table::Millis;
use courier_protocol::{AttributeConstraint, InterfaceName, LeaseId, ServiceQuery};
use std::sync::Arc;

/// Candidates returned when a query asks for none in particular (limit 0).
pub const DEFAULT_LIMIT: usize = 16;

/// Most attribute constraints or required functions in one query.
pub const MAX_CONSTRAINTS: usize = 64;

/// A query checked and parsed, ready to run under the catalog lock.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    key: String,
    req: Option<semver::VersionReq>,
    functions: Vec<String>,
    attributes: Vec<AttributeConstraint>,
    limit: usize,
}

/// One matching registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Its lease.
    pub lease: LeaseId,
    /// The matched interface with its version.
    pub interface: String,
    /// Milliseconds left on the lease.
    pub remaining_ms: u64,
}

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The interface is not `namespace:package/interface[@version]`.
    #[error("bad interface name: {0}")]
    Interface(String),
    /// The version requirement does not parse.
    #[error("bad version requirement {0:?}: {1}")]
    VersionReq(String, String),
    /// Too many functions or attribute constraints.
    #[error("too many constraints (at most {MAX_CONSTRAINTS})")]
    TooManyConstraints,
}

impl PreparedQuery {
    /// Checks and parses `query`; at most `max_limit` candidates will be returned. An
    /// interface given with `@version` and no requirement asks for a version compatible
    /// with it (`^version`: the component model's rule for imports, and what the CLI's
    /// `interface@version` means).
    pub fn new(query: &ServiceQuery, max_limit: usize) -> Result<Self, QueryError> {
        let name: InterfaceName =
            query
                .interface
                .parse()
                .map_err(|e: courier_protocol::InterfaceNameError| {
                    QueryError::Interface(e.to_string())
                })?;
        let req = match (&query.version_req, &name.version) {
            (Some(r), _) => Some(
                semver::VersionReq::parse(r)
                    .map_err(|e| QueryError::VersionReq(r.clone(), e.to_string()))?,
            ),
            (None, Some(v)) => Some(semver::VersionReq {
                comparators: vec![semver::Comparator {
                    op: semver::Op::Caret,
                    major: v.major,
                    minor: Some(v.minor),
                    patch: Some(v.patch),
                    pre: v.pre.clone(),
                }],
            }),
            (None, None) => None,
        };
        if query.functions.len() > MAX_CONSTRAINTS || query.attributes.len() > MAX_CONSTRAINTS {
            return Err(QueryError::TooManyConstraints);
        }
        let limit = match query.limit as usize {
            0 => DEFAULT_LIMIT,
            n => n,
        }
        .min(max_limit.max(1));
        Ok(Self {
            key: name.unversioned(),
            req,
            functions: query.functions.clone(),
            attributes: query.attributes.clone(),
            limit,
        })
    }

    /// The unversioned interface asked for.
    pub fn interface(&self) -> &str {
        &self.key
    }

    /// Most candidates this query returns.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn export_matches(&self, e: &ExportEntry) -> bool {
        if let Some(req) = &self.req
            && !req.matches(&e.version)
        {
            return false;
        }
        self.functions_exported(e)
    }

    fn functions_exported(&self, e: &ExportEntry) -> bool {
        self.functions.iter().all(|f| {
            e.functions
                .binary_search_by(|x| (**x).cmp(f.as_str()))
                .is_ok()
        })
    }

    fn attributes_hold(&self, reg: &Registration) -> bool {
        self.attributes.iter().all(|c| match c {
            AttributeConstraint::Equals(k, v) => reg.attribute(k) == Some(v.as_str()),
            AttributeConstraint::Present(k) => reg.attribute(k).is_some(),
            AttributeConstraint::Absent(k) => reg.attribute(k).is_none(),
        })
    }
}

struct Hit<'a> {
    iface: u64,
    proxy: u64,
    remaining: u64,
    export: &'a ExportEntry,
    reg: &'a Registration,
}

/// A version as one integer that orders like it (21 bits per part), if it has no
/// prerelease and its parts fit.
fn pack(v: &semver::Version) -> Option<u64> {
    const MAX: u64 = (1 << 21) - 1;
    (v.pre.is_empty() && v.major <= MAX && v.minor <= MAX && v.patch <= MAX)
        .then_some((v.major << 42) | (v.minor << 21) | v.patch)
}

/// A few remembered answers of a check, keyed by the identity of what was checked
/// (interned sets, packed versions): most buckets hold only a handful of distinct ones.
struct Memo {
    seen: [(u64, bool); 16],
    len: usize,
}

impl Memo {
    fn new() -> Self {
        Self {
            seen: [(0, false); 16],
            len: 0,
        }
    }

    fn check(&mut self, key: u64, f: impl FnOnce() -> bool) -> bool {
        if let Some((_, v)) = self.seen[..self.len].iter().find(|(k, _)| *k == key) {
            return *v;
        }
        let v = f();
        if self.len < self.seen.len() {
            self.seen[self.len] = (key, v);
            self.len += 1;
        }
        v
    }
}

/// Runs `query` at `now`: ranked matches, best first, at most the query's limit. Reads
/// only the interface's bucket; a registration whose deadline has passed does not match,
/// whether or not the expiry task has collected it yet. Staged registrations do not match.
pub fn find(catalog: &Catalog, now: Millis, query: &PreparedQuery) -> Vec<Match> {
    find_gated(catalog, now, query, |_| false)
}

/// [`find`] for a client that sees the staged registrations `sees` says it does (a
/// rollout's open waves); `sees` is asked only about staged ones.
pub fn find_gated(
    catalog: &Catalog,
    now: Millis,
    query: &PreparedQuery,
    sees: impl Fn(&LeaseId) -> bool,
) -> Vec<Match> {
    let Some((key, bucket)) = catalog.by_interface(&query.key) else {
        return Vec::new();
    };
    if bucket.unpacked > 0 {
        return find_unpacked(key, bucket, now, query, sees);
    }
    // Filter on the compact slots alone; a registration is read only for the first slot of
    // each distinct function set, attribute set or interface version.
    let (mut versions, mut functions, mut attributes) = (Memo::new(), Memo::new(), Memo::new());
    let mut hits: Vec<(usize, &Slot)> = Vec::new();
    for (pos, s) in bucket.slots.iter().enumerate() {
        if s.deadline <= now || (s.gated() && !sees(&s.reg.lease)) {
            continue;
        }
        if let Some(req) = &query.req
            && !versions.check(s.versions >> 32, || {
                req.matches(&unpack32((s.versions >> 32) as u32))
            })
        {
            continue;
        }
        if !query.functions.is_empty()
            && !functions.check(u64::from(s.functions), || {
                s.export(key, pos)
                    .is_some_and(|e| query.functions_exported(e))
            })
        {
            continue;
        }
        if !query.attributes.is_empty()
            && !attributes.check(u64::from(s.attribute_set()), || {
                query.attributes_hold(&s.reg)
            })
        {
            continue;
        }
        hits.push((pos, s));
    }
    // Best first: versions, then deadline (most time left), then lease id.
    let rank = |(_, a): &(usize, &Slot), (_, b): &(usize, &Slot)| {
        b.versions
            .cmp(&a.versions)
            .then(b.deadline.cmp(&a.deadline))
            .then_with(|| a.reg.lease.cmp(&b.reg.lease))
    };
    if hits.len() > query.limit {
        hits.select_nth_unstable_by(query.limit - 1, rank);
        hits.truncate(query.limit);
    }
    hits.sort_unstable_by(rank);
    hits.into_iter()
        .filter_map(|(pos, s)| {
            Some(Match {
                lease: s.reg.lease,
                interface: s.export(key, pos)?.versioned(),
                remaining_ms: s.deadline.since(now),
            })
        })
        .collect()
}

/// [`find`] for a bucket where some version does not pack: full semver order.
fn find_unpacked(
    key: &Arc<str>,
    bucket: &Bucket,
    now: Millis,
    query: &PreparedQuery,
    sees: impl Fn(&LeaseId) -> bool,
) -> Vec<Match> {
    let mut hits: Vec<Hit<'_>> = Vec::new();
    let mut packed = true;
    for (pos, s) in bucket.slots.iter().enumerate() {
        let deadline = s.deadline;
        if deadline <= now || (s.gated() && !sees(&s.reg.lease)) {
            continue;
        }
        let reg = &*s.reg;
        let Some(export) = s.export(key, pos) else {
            continue;
        };
        if !query.export_matches(export) || !query.attributes_hold(reg) {
            continue;
        }
        let (iv, pv) = (pack(&export.version), pack(&reg.version));
        packed &= iv.is_some() && pv.is_some();
        hits.push(Hit {
            iface: iv.unwrap_or(0),
            proxy: pv.unwrap_or(0),
            remaining: deadline.since(now),
            export,
            reg,
        });
    }
    // Best first. Plain versions compare as packed integers; a prerelease or a huge number
    // anywhere falls back to full semver order.
    let rank = |a: &Hit<'_>, b: &Hit<'_>| {
        let versions = if packed {
            b.iface.cmp(&a.iface).then(b.proxy.cmp(&a.proxy))
        } else {
            b.export
                .version
                .cmp(&a.export.version)
                .then_with(|| b.reg.version.cmp(&a.reg.version))
        };
        versions
            .then(b.remaining.cmp(&a.remaining))
            .then_with(|| a.reg.lease.cmp(&b.reg.lease))
    };
    if hits.len() > query.limit {
        hits.select_nth_unstable_by(query.limit - 1, rank);
        hits.truncate(query.limit);
    }
    hits.sort_unstable_by(rank);
    hits.into_iter()
        .map(|h| Match {
            lease: h.reg.lease,
            interface: h.export.versioned(),
            remaining_ms: h.remaining,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::catalog::tests::manifest;
    use crate::core::lease_table::{LeaseOp, LeasePolicy, LeaseTable};

    fn setup() -> (Catalog, LeaseTable) {
        // The table is the source of truth; the catalog mirrors its deadlines.
        let mut c = Catalog::new();
        let mut t = LeaseTable::new(LeasePolicy {
            min_ttl_ms: 1,
            max_ttl_ms: 100_000,
            grace_ms: 10,
        });
        let regs: &[(u8, &str, &str, &[&str], u64)] = &[
            (1, "1.0.0", "courier:echo/echo@0.1.0", &["say"], 10_000),
            (2, "2.0.0", "courier:echo/echo@0.1.0", &["say"], 5_000),
            (
                3,
                "1.0.0",
                "courier:echo/echo@0.2.0",
                &["say", "shout"],
                1_000,
            ),
            (4, "9.0.0", "courier:kv/store@0.1.0", &["get"], 10_000),
            (5, "1.0.0", "courier:echo/echo@0.1.0", &["say"], 20_000),
        ];
        for (n, v, i, fs, ttl) in regs {
            let mut m = manifest(&format!("v/s{n}"), *n, v, &[(*i, *fs)]);
            if *n == 5 {
                m.attributes.insert("region".into(), "us".into());
                m.attributes.insert("beta".into(), "yes".into());
            }
            // The table is the source of truth; the catalog mirrors its deadline.
            t.handle(
                Millis(0),
                LeaseOp::Grant {
                    id: LeaseId([*n; 16]),
                    ttl_ms: *ttl,
                },
            );
            let deadline = t.get(&LeaseId([*n; 16])).unwrap().deadline;
            c.insert(LeaseId([*n; 16]), &m, deadline).unwrap();
        }
        (c, t)
    }

    fn q(interface: &str) -> ServiceQuery {
        ServiceQuery {
            interface: interface.into(),
            ..Default::default()
        }
    }

    fn leases(ms: &[Match]) -> Vec<u8> {
        ms.iter().map(|m| m.lease.0[0]).collect()
    }

    #[test]
    fn ranks_by_interface_version_then_proxy_version_then_remaining() {
        let (c, _t) = setup();
        let p = PreparedQuery::new(&q("courier:echo/echo"), 100).unwrap();
        let got = find(&c, Millis(0), &p);
        assert_eq!(leases(&got), vec![3, 2, 5, 1]);
        assert_eq!(got[0].interface, "courier:echo/echo@0.2.0");
        assert_eq!(got[0].remaining_ms, 1_000);
    }

    #[test]
    fn version_functions_attributes_and_limit() {
        let (c, _t) = setup();
        let mut query = q("courier:echo/echo");
        query.version_req = Some("^0.1".into());
        assert_eq!(
            leases(&find(
                &c,
                Millis(0),
                &PreparedQuery::new(&query, 100).unwrap()
            )),
            vec![2, 5, 1]
        );
        // `@version` alone means a compatible version (`^`): 0.1.0 does not reach 0.2.0.
        let compatible = PreparedQuery::new(&q("courier:echo/echo@0.2.0"), 100).unwrap();
        assert_eq!(leases(&find(&c, Millis(0), &compatible)), vec![3]);
        let compatible = PreparedQuery::new(&q("courier:echo/echo@0.1.0"), 100).unwrap();
        assert_eq!(leases(&find(&c, Millis(0), &compatible)), vec![2, 5, 1]);
        let mut query = q("courier:echo/echo");
        query.functions = vec!["shout".into()];
        assert_eq!(
            leases(&find(
                &c,
                Millis(0),
                &PreparedQuery::new(&query, 100).unwrap()
            )),
            vec![3]
        );
        let mut query = q("courier:echo/echo");
        query.attributes = vec![AttributeConstraint::Equals("region".into(), "eu".into())];
        assert_eq!(
            leases(&find(
                &c,
                Millis(0),
                &PreparedQuery::new(&query, 100).unwrap()
            )),
            vec![3, 2, 1]
        );
        query.attributes = vec![AttributeConstraint::Present("beta".into())];
        assert_eq!(
            leases(&find(
                &c,
                Millis(0),
                &PreparedQuery::new(&query, 100).unwrap()
            )),
            vec![5]
        );
        query.attributes = vec![AttributeConstraint::Absent("beta".into())];
        assert_eq!(
            leases(&find(
                &c,
                Millis(0),
                &PreparedQuery::new(&query, 100).unwrap()
            )),
            vec![3, 2, 1]
        );
        let mut query = q("courier:echo/echo");
        query.limit = 2;
        assert_eq!(
            leases(&find(
                &c,
                Millis(0),
                &PreparedQuery::new(&query, 100).unwrap()
            )),
            vec![3, 2]
        );
        query.limit = 50;
        assert_eq!(PreparedQuery::new(&query, 3).unwrap().limit(), 3);
    }

    #[test]
    fn expired_leases_stop_matching_before_collection() {
        let (c, _t) = setup();
        let p = PreparedQuery::new(&q("courier:echo/echo"), 100).unwrap();
        assert_eq!(leases(&find(&c, Millis(1_000), &p)), vec![2, 5, 1]);
        assert_eq!(leases(&find(&c, Millis(10_000), &p)), vec![5]);
        assert!(find(&c, Millis(20_000), &p).is_empty());
    }

    #[test]
    fn bad_queries_are_typed_errors() {
        assert!(matches!(
            PreparedQuery::new(&q("nope"), 10),
            Err(QueryError::Interface(_))
        ));
        let mut query = q("courier:echo/echo");
        query.version_req = Some("not a req".into());
        assert!(matches!(
            PreparedQuery::new(&query, 10),
            Err(QueryError::VersionReq(..))
        ));
        let mut query = q("courier:echo/echo");
        query.functions = vec!["f".into(); MAX_CONSTRAINTS + 1];
        assert_eq!(
            PreparedQuery::new(&query, 10).unwrap_err(),
            QueryError::TooManyConstraints
        );
    }

    #[test]
    fn prerelease_versions_rank_by_full_semver() {
        let mut c = Catalog::new();
        let a = manifest("v/a", 1, "1.0.0", &[("courier:echo/echo@0.1.0", &["say"])]);
        let b = manifest(
            "v/b",
            2,
            "2.0.0-rc.1",
            &[("courier:echo/echo@0.1.0", &["say"])],
        );
        c.insert(LeaseId([1; 16]), &a, Millis(100)).unwrap();
        c.insert(LeaseId([2; 16]), &b, Millis(50)).unwrap();
        let p = PreparedQuery::new(&q("courier:echo/echo"), 100).unwrap();
        assert_eq!(leases(&find(&c, Millis(0), &p)), vec![2, 1]);
        c.remove(&LeaseId([2; 16])).unwrap();
        assert_eq!(leases(&find(&c, Millis(0), &p)), vec![1]);
    }

    #[test]
    fn many_distinct_attribute_sets_and_renewals() {
        let mut c = Catalog::new();
        for n in 1..=40u8 {
            let mut m = manifest(
                &format!("v/s{n}"),
                n,
                "1.0.0",
                &[("courier:echo/echo@0.1.0", &["say"])],
            );
            m.attributes.insert("id".into(), n.to_string());
            if n % 2 == 0 {
                m.attributes.insert("even".into(), "yes".into());
            }
            c.insert(LeaseId([n; 16]), &m, Millis(1_000)).unwrap();
        }
        let mut query = q("courier:echo/echo");
        query.attributes = vec![AttributeConstraint::Present("even".into())];
        query.limit = 100;
        let p = PreparedQuery::new(&query, 100).unwrap();
        let got = leases(&find(&c, Millis(0), &p));
        assert_eq!(got, (1..=40u8).filter(|n| n % 2 == 0).collect::<Vec<_>>());
        // A renewal moves a registration to the front; an old deadline stops matching.
        c.set_deadline(&LeaseId([40; 16]), Millis(5_000));
        c.set_deadline(&LeaseId([2; 16]), Millis(10));
        let got = leases(&find(&c, Millis(20), &p));
        assert_eq!(got[0], 40);
        assert!(!got.contains(&2));
        assert_eq!(got.len(), 19);
    }
}
