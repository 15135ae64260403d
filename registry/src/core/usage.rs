//! Usage metering: per hour, per client and per service, the proxies handed out (component
//! fetches), the bytes fetched, and the calls reported with their failures; and, per
//! service, which clients were ever handed its proxy. Pure and in memory: counts gather
//! here and are written behind by the flush, added to what the store has.

use courier_protocol::{UsageRow, VendorKey};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One hour in milliseconds: the metering's resolution.
pub const HOUR_MS: u64 = 3_600_000;

/// The hour (its first millisecond) that wall-clock time `at_ms` falls in.
pub fn hour_of(at_ms: u64) -> u64 {
    at_ms - at_ms % HOUR_MS
}

/// Where counts go: an hour, a client (`None`: not authenticated as one), a service.
pub type UsageKey = (u64, Option<VendorKey>, Arc<str>);

/// The service a fetch is metered under when the client did not say which candidate it was
/// for (or named one whose component is another).
pub const UNKNOWN_SERVICE: &str = "(unknown)";

/// Counts of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    /// Proxies handed out (fetches).
    pub handed_out: u64,
    /// Bytes fetched.
    pub bytes: u64,
    /// Calls reported.
    pub calls: u64,
    /// Of them, failed.
    pub failed: u64,
}

impl UsageCounts {
    /// Adds `other` (saturating).
    pub fn add(&mut self, other: &UsageCounts) {
        self.handed_out = self.handed_out.saturating_add(other.handed_out);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.calls = self.calls.saturating_add(other.calls);
        self.failed = self.failed.saturating_add(other.failed);
    }
}

/// The usage not yet written, and who was served.
#[derive(Debug, Default)]
pub struct UsageBook {
    pending: HashMap<UsageKey, UsageCounts>,
    served: HashMap<Arc<str>, HashSet<VendorKey>>,
    /// Per service, what a child registry has not reported to its parent yet (kept only
    /// by a registry that has a parent).
    unreported: HashMap<Arc<str>, UsageCounts>,
    /// Whether the reports of this registry's children go up further (it has a parent).
    forwards: bool,
}

impl UsageBook {
    /// A proxy of `service` (`bytes` long) handed out to `client` at `at_ms`.
    pub fn fetched(&mut self, at_ms: u64, client: Option<VendorKey>, service: &str, bytes: u64) {
        let counts = self.entry(at_ms, client, service);
        counts.handed_out += 1;
        counts.bytes = counts.bytes.saturating_add(bytes);
        if self.forwards {
            let up = self.unreported.entry(Arc::from(service)).or_default();
            up.handed_out += 1;
            up.bytes = up.bytes.saturating_add(bytes);
        }
        if let Some(c) = client {
            self.served.entry(Arc::from(service)).or_default().insert(c);
        }
    }

    /// A call of `service` reported by `client` at `at_ms`.
    pub fn called(&mut self, at_ms: u64, client: VendorKey, service: &str, ok: bool) {
        let counts = self.entry(at_ms, Some(client), service);
        counts.calls += 1;
        counts.failed += u64::from(!ok);
        if self.forwards {
            let up = self.unreported.entry(Arc::from(service)).or_default();
            up.calls += 1;
            up.failed += u64::from(!ok);
        }
    }

    /// What a child registry's report says its clients did, added under the child's key
    /// (at the parent).
    pub fn reported(&mut self, at_ms: u64, child: VendorKey, service: &str, c: &UsageCounts) {
        self.entry(at_ms, Some(child), service).add(c);
        if self.forwards {
            self.unreported
                .entry(Arc::from(service))
                .or_default()
                .add(c);
        }
    }

    /// From now on, children's activity is reported up too (this registry has a parent).
    pub fn forward(&mut self) {
        self.forwards = true;
    }

    /// Takes what has not been reported to a parent yet, per service.
    /// At most `max` services: the rest wait for the next report.
    pub fn take_unreported(&mut self, max: usize) -> Vec<(Arc<str>, UsageCounts)> {
        self.unreported.remove(UNKNOWN_SERVICE);
        let keys: Vec<Arc<str>> = self.unreported.keys().take(max).cloned().collect();
        keys.into_iter()
            .filter_map(|k| self.unreported.remove_entry(&k))
            .collect()
    }

    /// Puts back what a parent did not acknowledge.
    pub fn restore_unreported(&mut self, counts: Vec<(Arc<str>, UsageCounts)>) {
        for (service, c) in counts {
            self.unreported.entry(service).or_default().add(&c);
        }
    }

    fn entry(&mut self, at_ms: u64, client: Option<VendorKey>, service: &str) -> &mut UsageCounts {
        self.pending
            .entry((hour_of(at_ms), client, Arc::from(service)))
            .or_default()
    }

    /// Remembers that `client` was served `service` (from the store, at a start).
    pub fn served(&mut self, service: &str, client: VendorKey) {
        self.served
            .entry(Arc::from(service))
            .or_default()
            .insert(client);
    }

    /// How many distinct clients were handed a proxy of `service`.
    pub fn clients_served(&self, service: &str) -> u64 {
        self.served.get(service).map_or(0, |s| s.len() as u64)
    }

    /// Takes the counts gathered since the last flush.
    pub fn take_pending(&mut self) -> Vec<(UsageKey, UsageCounts)> {
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    /// Puts counts back (their write failed).
    pub fn restore(&mut self, counts: Vec<(UsageKey, UsageCounts)>) {
        for (key, c) in counts {
            self.pending.entry(key).or_default().add(&c);
        }
    }

    /// The counts not yet written, from hour `since_hour` on.
    pub fn pending_since(
        &self,
        since_hour: u64,
    ) -> impl Iterator<Item = (&UsageKey, &UsageCounts)> {
        self.pending
            .iter()
            .filter(move |((h, _, _), _)| *h >= since_hour)
    }
}

/// Sums usage records into rows grouped by client, service, or both, sorted by client then
/// service.
pub fn group<'a>(
    records: impl IntoIterator<Item = (Option<VendorKey>, &'a str, UsageCounts)>,
    by_client: bool,
    by_service: bool,
) -> Vec<UsageRow> {
    let mut sums: std::collections::BTreeMap<(Option<VendorKey>, Option<String>), UsageCounts> =
        Default::default();
    for (client, service, counts) in records {
        let key = (
            client.filter(|_| by_client),
            by_service.then(|| service.to_string()),
        );
        sums.entry(key).or_default().add(&counts);
    }
    sums.into_iter()
        .map(|((client, service), c)| UsageRow {
            client,
            service,
            handed_out: c.handed_out,
            bytes: c.bytes,
            calls: c.calls,
            failed: c.failed,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gather_per_hour_client_and_service_and_group() {
        let (a, b) = (VendorKey([1; 32]), VendorKey([2; 32]));
        let mut book = UsageBook::default();
        book.fetched(10, Some(a), "acme/echo", 100);
        book.fetched(20, Some(b), "acme/echo", 100);
        book.fetched(HOUR_MS + 5, Some(a), "acme/echo", 100);
        book.fetched(30, None, "acme/kv", 7);
        book.called(40, a, "acme/echo", true);
        book.called(50, a, "acme/echo", false);
        assert_eq!(book.clients_served("acme/echo"), 2);
        assert_eq!(
            book.clients_served("acme/kv"),
            0,
            "anonymous fetches serve nobody known"
        );
        let pending = book.take_pending();
        assert_eq!(pending.len(), 4);
        let rows = group(
            pending.iter().map(|((_, c, s), n)| (*c, &**s, *n)),
            true,
            false,
        );
        let of = |k: Option<VendorKey>| {
            rows.iter()
                .find(|r| r.client == k)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            (
                of(Some(a)).handed_out,
                of(Some(a)).calls,
                of(Some(a)).failed
            ),
            (2, 2, 1)
        );
        assert_eq!(of(Some(b)).bytes, 100);
        assert_eq!(of(None).bytes, 7);
        let rows = group(
            pending.iter().map(|((_, c, s), n)| (*c, &**s, *n)),
            false,
            true,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].service.as_deref(), Some("acme/echo"));
        assert_eq!(rows[0].handed_out, 3);
        assert!(book.take_pending().is_empty());
    }
}
