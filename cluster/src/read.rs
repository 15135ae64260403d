//! Reading a cluster's records back from etcd: ranges a page at a time at one revision
//! (a consistent snapshot however large), and what the registry loads at open.

use crate::etcd::Etcd;
use crate::layout::{self, Layout};
use courier_protocol::{
    AuditEntry, ClientInfo, SignedDelegation, SignedFreshness, SignedKeyStatement,
    SignedOperatorStatement, SignedRootStatement, codec,
};
use courier_registry::{StoreError, StoredMeta, UsageRecord};
use etcd_client::{GetOptions, SortOrder, SortTarget};

/// Keys read per request.
const PAGE: i64 = 1_000;

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What [`scan`] calls with each key and value.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// Calls `each` with every key and value in `[from, end)`, in key order, a page at a time,
/// all at revision `at` (0: the revision of the first page). Returns the revision read.
pub fn scan(
    etcd: &Etcd,
    from: Vec<u8>,
    end: Vec<u8>,
    at: i64,
    each: &mut Visit<'_>,
) -> Result<i64, StoreError> {
    let mut from = from;
    let mut revision = at;
    loop {
        let (key, range_end, rev) = (from.clone(), end.clone(), revision);
        let resp = etcd.run("range", move |mut c| async move {
            c.get(
                key,
                Some(
                    GetOptions::new()
                        .with_range(range_end)
                        .with_limit(PAGE)
                        .with_revision(rev),
                ),
            )
            .await
        })?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        for kv in resp.kvs() {
            each(kv.key(), kv.value())?;
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(revision),
        }
    }
}

/// Records as (the key after their prefix, value).
pub type Records = Vec<(String, Vec<u8>)>;

/// Every record under `prefix`, as (the key after the prefix, value).
pub fn all(etcd: &Etcd, layout: &Layout, prefix: &str) -> Result<Records, StoreError> {
    Ok(all_at(etcd, layout, prefix, 0)?.0)
}

/// Every record under `prefix` at revision `at` (0: now), and the revision read.
pub fn all_at(
    etcd: &Etcd,
    layout: &Layout,
    prefix: &str,
    at: i64,
) -> Result<(Records, i64), StoreError> {
    let start = layout.key(prefix);
    let end = prefix_end(&start);
    let mut out = Vec::new();
    let revision = scan(etcd, start, end, at, &mut |k, v| {
        if let Some(rest) = layout.strip(k, prefix) {
            out.push((rest.to_string(), v.to_vec()));
        }
        Ok(())
    })?;
    Ok((out, revision))
}

/// The first `n` records under `prefix`, by key order, as (the key after the prefix,
/// value).
pub fn first(
    etcd: &Etcd,
    layout: &Layout,
    prefix: &str,
    n: u64,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let start = layout.key(prefix);
    let end = prefix_end(&start);
    let resp = limited(etcd, "range", start, end, n)?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| {
            Some((
                layout.strip(kv.key(), prefix)?.to_string(),
                kv.value().to_vec(),
            ))
        })
        .collect())
}

/// At most `n` keys of `[start, end)`, in key order.
fn limited(
    etcd: &Etcd,
    what: &str,
    start: Vec<u8>,
    end: Vec<u8>,
    n: u64,
) -> Result<etcd_client::GetResponse, StoreError> {
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    etcd.run(what, move |mut c| async move {
        c.get(
            start,
            Some(GetOptions::new().with_range(end).with_limit(limit)),
        )
        .await
    })
}

/// One key's value.
pub fn one(etcd: &Etcd, key: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
    let resp = etcd.run("get", move |mut c| async move { c.get(key, None).await })?;
    Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
}

/// The last key (and value) under `prefix`, by key order.
pub fn last(etcd: &Etcd, layout: &Layout, prefix: &str) -> Result<Option<String>, StoreError> {
    let start = layout.key(prefix);
    let end = prefix_end(&start);
    let resp = etcd.run("get last", move |mut c| async move {
        c.get(
            start,
            Some(
                GetOptions::new()
                    .with_range(end)
                    .with_limit(1)
                    .with_keys_only()
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await
    })?;
    Ok(resp
        .kvs()
        .first()
        .and_then(|kv| layout.strip(kv.key(), prefix).map(str::to_string)))
}

/// How many keys are under `prefix`.
pub fn count(etcd: &Etcd, layout: &Layout, prefix: &str) -> Result<u64, StoreError> {
    let start = layout.key(prefix);
    let end = prefix_end(&start);
    let resp = etcd.run("count", move |mut c| async move {
        c.get(
            start,
            Some(GetOptions::new().with_range(end).with_count_only()),
        )
        .await
    })?;
    Ok(u64::try_from(resp.count()).unwrap_or(0))
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    key: &str,
    v: &[u8],
) -> Result<T, StoreError> {
    codec::decode(v).map_err(|e| StoreError::Corrupt(format!("{what} {key}: {e}")))
}

fn corrupt(what: &str, key: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {key}"))
}

/// A `meta/` number (0 if absent).
pub fn meta_u64(etcd: &Etcd, layout: &Layout, name: &str) -> Result<u64, StoreError> {
    match one(etcd, layout.key(&format!("meta/{name}")))? {
        None => Ok(0),
        Some(v) => layout::be_n::<1>(&v)
            .map(|[n]| n)
            .ok_or_else(|| corrupt("meta", name)),
    }
}

/// Everything but the registrations. A record that does not decode is an error, as in the
/// redb store: dropping a revocation or a ban silently would let back what was stopped.
pub fn load_meta(etcd: &Etcd, layout: &Layout) -> Result<StoredMeta, StoreError> {
    let registry_id = one(etcd, layout.key("meta/registry_id"))?
        .map(String::from_utf8)
        .transpose()
        .map_err(|_| corrupt("meta", "registry_id"))?
        .unwrap_or_default();
    let mut m = StoredMeta {
        registry_id,
        seq_reserved: meta_u64(etcd, layout, "seq_reserved")?,
        last_alive_ms: meta_u64(etcd, layout, "last_alive_ms")?,
        history_seq: meta_u64(etcd, layout, "history_seq")?,
        ..Default::default()
    };
    if let Some(last) = last(etcd, layout, "hist/")? {
        m.history_seq = m.history_seq.max(last.parse().unwrap_or(0));
    }
    for (name, v) in all(etcd, layout, "name/")? {
        let key = v
            .try_into()
            .map(courier_protocol::VendorKey)
            .map_err(|_| corrupt("name", &name))?;
        m.names.push((name, key));
    }
    for (k, _) in all(etcd, layout, "grant/")? {
        let (key, name) = k.split_once('/').ok_or_else(|| corrupt("grant", &k))?;
        let key = layout::parse_vendor(key).ok_or_else(|| corrupt("grant", &k))?;
        m.grants.push((name.to_string(), key));
    }
    for (k, v) in all(etcd, layout, "rot/")? {
        let key = layout::parse_vendor(&k).ok_or_else(|| corrupt("rotation", &k))?;
        m.rotations
            .push((key, decode::<SignedKeyStatement>("rotation", &k, &v)?));
    }
    for (k, v) in all(etcd, layout, "revoc/")? {
        let key = layout::parse_vendor(&k).ok_or_else(|| corrupt("revocation", &k))?;
        let statement = if v.is_empty() {
            None
        } else {
            Some(decode::<SignedKeyStatement>("revocation", &k, &v)?)
        };
        m.revocations.push((key, statement));
    }
    for (k, v) in all(etcd, layout, "client/")? {
        m.clients.push(decode::<ClientInfo>("client", &k, &v)?);
    }
    for (k, v) in all(etcd, layout, "ban/")? {
        let (key, name) = k.split_once('/').ok_or_else(|| corrupt("ban", &k))?;
        let key = layout::parse_vendor(key).ok_or_else(|| corrupt("ban", &k))?;
        let reason = String::from_utf8(v).map_err(|_| corrupt("ban", &k))?;
        m.bans.push((name.to_string(), key, reason));
    }
    for (name, v) in all(etcd, layout, "drain/")? {
        let reason = String::from_utf8(v).map_err(|_| corrupt("drain", &name))?;
        m.drains.push((name, reason));
    }
    for (k, v) in all(etcd, layout, "child/")? {
        let key = layout::parse_vendor(&k).ok_or_else(|| corrupt("child", &k))?;
        let [at] = layout::be_n::<1>(&v).ok_or_else(|| corrupt("child", &k))?;
        let name = String::from_utf8(v[8..].to_vec()).map_err(|_| corrupt("child", &k))?;
        m.children.push((key, name, at));
    }
    for (k, v) in all(etcd, layout, "lrev/")? {
        let lease = layout::parse_lease(&k).ok_or_else(|| corrupt("lease revocation", &k))?;
        let [until] = layout::be_n::<1>(&v).ok_or_else(|| corrupt("lease revocation", &k))?;
        let reason =
            String::from_utf8(v[8..].to_vec()).map_err(|_| corrupt("lease revocation", &k))?;
        m.lease_revocations.push((lease, reason, until));
    }
    for (k, v) in all(etcd, layout, "opst/")? {
        let key = k
            .split_once('/')
            .and_then(|(key, _)| layout::parse_vendor(key))
            .ok_or_else(|| corrupt("operator statement", &k))?;
        m.operator_statements.push((
            key,
            decode::<SignedOperatorStatement>("operator statement", &k, &v)?,
        ));
    }
    m.audit_seq = last(etcd, layout, "audit/")?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut served = std::collections::BTreeSet::new();
    for u in usage_since(etcd, layout, 0)? {
        if let Some(client) = u.client.filter(|_| u.handed_out > 0) {
            served.insert((u.service, client));
        }
    }
    m.served = served.into_iter().collect();
    for (k, v) in all(etcd, layout, "root/")? {
        m.root_statements
            .push(decode::<SignedRootStatement>("root statement", &k, &v)?);
    }
    for (k, v) in all(etcd, layout, "deleg/")? {
        m.delegations
            .push(decode::<SignedDelegation>("delegation", &k, &v)?);
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in all(etcd, layout, "fresh/")? {
        let s: SignedFreshness = decode("freshness statement", &k, &v)?;
        if seen.insert(s.clone()) {
            m.freshness.push(s);
        }
    }
    Ok(m)
}

/// Usage records from hour `since` on.
pub fn usage_since(
    etcd: &Etcd,
    layout: &Layout,
    since: u64,
) -> Result<Vec<UsageRecord>, StoreError> {
    let start = layout.key(&format!("usage/{}/", layout::num(since)));
    let end = prefix_end(&layout.key("usage/"));
    let mut out = Vec::new();
    scan(etcd, start, end, 0, &mut |k, v| {
        let rest = layout.strip(k, "usage/").unwrap_or_default();
        out.push(usage_record(rest, v).ok_or_else(|| corrupt("usage", rest))?);
        Ok(())
    })?;
    Ok(out)
}

/// A usage record from its key (after `usage/`) and value.
pub fn usage_record(rest: &str, v: &[u8]) -> Option<UsageRecord> {
    let mut parts = rest.splitn(3, '/');
    let hour_ms = parts.next()?.parse().ok()?;
    let client = parts.next()?;
    let service = parts.next()?.to_string();
    let client = if client.bytes().all(|b| b == b'0') {
        None
    } else {
        Some(layout::parse_vendor(client)?)
    };
    let [handed_out, bytes, calls, failed] = layout::be_n::<4>(v)?;
    Some(UsageRecord {
        hour_ms,
        client,
        service,
        handed_out,
        bytes,
        calls,
        failed,
    })
}

/// Audit entries from number `from_seq` on, at most `limit`.
pub fn audit(
    etcd: &Etcd,
    layout: &Layout,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let start = layout.key(&format!("audit/{}", layout::num(from_seq)));
    let end = prefix_end(&layout.key("audit/"));
    let resp = limited(etcd, "audit", start, end, limit as u64)?;
    resp.kvs()
        .iter()
        .take(limit)
        .map(|kv| decode("audit entry", "", kv.value()))
        .collect()
}
