//! Answers built from memory and the manifests the store reads for them: a page of the
//! lease table, and ranked candidates. The state decides what to read (only the page's or
//! the candidates' manifests); the caller reads them and the state puts the answer together.

use super::RegistryState;
use crate::core::catalog::Registration;
use crate::core::interests::InterestMatcher;
use crate::core::lease_table::Millis;
use crate::core::matcher::Match;
use courier_protocol::limits::MAX_LEASE_PAGE;
use courier_protocol::{
    Candidate, CatalogEntry, CatalogPage, LeaseCursor, LeaseFilter, LeaseId, LeaseInfo, LeasePage,
    Mirrored, NotificationBatch, SignedFreshness, SignedManifest,
};
use std::collections::BinaryHeap;
use std::sync::Arc;

/// A live lease as a page of the lease table lists it. Ordered by its fields in turn: the
/// (name, lease) key comes first and is unique, so the rest never decides.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageRow {
    /// The service name.
    pub name: Arc<str>,
    /// The lease.
    pub lease: LeaseId,
    /// Milliseconds left.
    pub remaining_ms: u64,
    /// Last granted duration.
    pub ttl_ms: u64,
    /// Renewals so far.
    pub renewals: u32,
    /// Whether it lives on its post-restart grace.
    pub in_grace: bool,
    /// When it was last granted or renewed, wall-clock ms.
    pub last_renewal_ms: u64,
    /// Distinct clients handed its service's proxy.
    pub clients_served: u64,
    /// In a cluster, the node holding it if not the writer (or not known).
    pub holder: Option<Arc<str>>,
    /// A child registry: mirrored from the parent.
    pub mirrored: Option<Mirrored>,
}

impl PageRow {
    fn key(&self) -> (&str, &LeaseId) {
        (&self.name, &self.lease)
    }
}

/// The rows of one page of the lease table, before their manifests are read.
#[derive(Debug, Clone, Default)]
pub struct LeasePageRows {
    /// The rows, sorted by (name, lease).
    pub rows: Vec<PageRow>,
    /// Where the next page starts, if one follows.
    pub next: Option<LeaseCursor>,
}

impl LeasePageRows {
    /// The leases whose manifests the page needs, in order.
    pub fn leases(&self) -> Vec<LeaseId> {
        self.rows.iter().map(|r| r.lease).collect()
    }

    /// The page, given the manifests of [`LeasePageRows::leases`] in order (`None` for a
    /// registration gone since: it is not listed).
    pub fn into_page(self, manifests: Vec<Option<SignedManifest>>) -> LeasePage {
        let next = self.next.clone();
        let leases = self.with(manifests).map(|(info, _)| info).collect();
        LeasePage {
            leases,
            next,
            store_unwritable_ms: None,
            cluster: None,
        }
    }

    /// A page of the catalog, given the manifests of [`LeasePageRows::leases`] in order,
    /// the event number `seq` read with the rows, and at most `max_bytes` of manifests
    /// (always one entry at least): a page cut short goes on after its last entry.
    pub fn into_catalog(
        self,
        manifests: Vec<Option<SignedManifest>>,
        seq: u64,
        max_bytes: usize,
    ) -> CatalogPage {
        let mut next = self.next.clone();
        let mut entries: Vec<CatalogEntry> = Vec::new();
        let mut bytes = 0usize;
        for (lease, manifest) in self.with(manifests) {
            let size = manifest.bytes.len() + manifest.signature.len();
            if !entries.is_empty() && bytes + size > max_bytes {
                next = entries.last().map(|e| LeaseCursor {
                    name: e.lease.name.clone(),
                    lease: e.lease.lease,
                });
                break;
            }
            bytes += size;
            entries.push(CatalogEntry {
                manifest,
                lease,
                freshness: None,
            });
        }
        CatalogPage { entries, next, seq }
    }

    /// Each row with its manifest, as the lease table lists it.
    fn with(
        self,
        manifests: Vec<Option<SignedManifest>>,
    ) -> impl Iterator<Item = (LeaseInfo, SignedManifest)> {
        self.rows
            .into_iter()
            .zip(manifests)
            .filter_map(|(r, signed)| {
                let signed = signed?;
                let m = signed.peek().ok()?;
                let info = LeaseInfo {
                    lease: r.lease,
                    name: m.name,
                    version: m.version,
                    vendor: m.vendor_key,
                    interfaces: m.exports.into_iter().map(|e| e.interface).collect(),
                    component: m.component_hash,
                    endpoints: m.endpoints,
                    remaining_ms: r.remaining_ms,
                    ttl_ms: r.ttl_ms,
                    renewals: u64::from(r.renewals),
                    in_grace: r.in_grace,
                    last_renewal_ms: r.last_renewal_ms,
                    clients_served: r.clients_served,
                    holder: r.holder.map(|h| h.to_string()),
                    mirrored: r.mirrored,
                };
                Some((info, signed))
            })
    }
}

/// Ranked candidates, given the manifests of the matches in order (a registration gone
/// since is left out) and the freshness statement of each.
pub fn candidates(
    matches: Vec<Match>,
    manifests: Vec<Option<SignedManifest>>,
    freshness: Vec<Option<SignedFreshness>>,
) -> Vec<Candidate> {
    matches
        .into_iter()
        .zip(manifests)
        .zip(freshness)
        .filter_map(|((m, manifest), freshness)| {
            manifest.map(|manifest| Candidate {
                lease: m.lease,
                manifest,
                interface: m.interface,
                remaining_ms: m.remaining_ms,
                freshness,
            })
        })
        .collect()
}

impl RegistryState {
    /// What `matcher` is told of the events the ring keeps from `from_seq` on (at most
    /// `max`), and the number to go on from; `missed` says what the ring no longer has.
    pub fn notifications_since(
        &self,
        matcher: &InterestMatcher,
        from_seq: u64,
        max: usize,
    ) -> (NotificationBatch, u64) {
        let ring = &self.events;
        let from = from_seq.clamp(1, ring.next_seq());
        let missed = (from < ring.kept_from()).then_some((from, ring.kept_from()));
        let mut next = ring.next_seq();
        let mut notifications = Vec::new();
        for rec in ring.records_from(from) {
            if notifications.len() >= max {
                next = rec.seq;
                break;
            }
            notifications.extend(matcher.notify(&rec));
        }
        (
            NotificationBatch {
                notifications,
                missed,
            },
            next,
        )
    }

    /// One page of the live leases at `now`, sorted by service name then lease: at most
    /// `limit` rows (capped at [`MAX_LEASE_PAGE`]) after `after`. One pass over the lease
    /// table, keeping the smallest rows in a bounded heap, whatever the table's size.
    pub fn leases_page(
        &self,
        now: Millis,
        filter: &LeaseFilter,
        after: Option<&LeaseCursor>,
        limit: u32,
    ) -> LeasePageRows {
        let limit = limit.clamp(1, MAX_LEASE_PAGE) as usize;
        // The `limit` smallest rows after the cursor, in a max-heap; one row more tells
        // whether another page follows.
        let mut heap = BinaryHeap::<PageRow>::with_capacity(limit + 2);
        for (id, s) in self.table.iter() {
            if s.deadline <= now {
                continue;
            }
            let Some(reg) = self.catalog.get(id) else {
                continue;
            };
            // Staged registrations are shown only by `courier rollout status`: a lease
            // page is open to anyone, and would tell of versions not rolled out yet.
            if !passes(filter, reg) || self.catalog.is_staged(id) {
                continue;
            }
            let key = (&*reg.name, id);
            if after.is_some_and(|a| key <= (a.name.as_str(), &a.lease))
                || (heap.len() > limit && heap.peek().is_some_and(|top| key >= top.key()))
            {
                continue;
            }
            heap.push(self.page_row(now, *id, s, reg));
            if heap.len() > limit + 1 {
                heap.pop();
            }
        }
        let mut rows = heap.into_sorted_vec();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more.then(|| rows.last()).flatten().map(|r| LeaseCursor {
            name: r.name.to_string(),
            lease: r.lease,
        });
        LeasePageRows { rows, next }
    }

    /// The live staged registrations at `now`, as a page of the lease table would list
    /// them (lease pages leave them out), sorted by name then lease.
    pub fn staged_rows(&self, now: Millis) -> LeasePageRows {
        let mut rows: Vec<PageRow> = self
            .catalog
            .staged_leases()
            .filter_map(|id| {
                let s = self.table.get(id).filter(|s| s.deadline > now)?;
                Some(self.page_row(now, *id, s, self.catalog.get(id)?))
            })
            .collect();
        rows.sort_by(|a, b| (&*a.name, a.lease).cmp(&(&*b.name, b.lease)));
        rows.truncate(MAX_LEASE_PAGE as usize);
        LeasePageRows { rows, next: None }
    }

    /// The one live registration `lease`, as a page of the lease table would list it (no
    /// rows: not live at `now`).
    pub fn lease_row(&self, now: Millis, lease: &LeaseId) -> LeasePageRows {
        let rows = self
            .table
            .get(lease)
            .filter(|s| s.deadline > now)
            .zip(self.catalog.get(lease))
            .map(|(s, reg)| self.page_row(now, *lease, s, reg))
            .into_iter()
            .collect();
        LeasePageRows { rows, next: None }
    }

    fn page_row(
        &self,
        now: Millis,
        id: LeaseId,
        s: &crate::core::lease_table::LeaseEntry,
        reg: &Registration,
    ) -> PageRow {
        // A mirrored lease: the parent's end and duration, not the grace added here.
        let (end, ttl_ms, mirrored) = match self.mirrored.get(&id) {
            Some(m) => (
                m.end,
                s.ttl_ms().saturating_sub(self.config.mirror_grace_ms),
                Some(if m.end > now {
                    Mirrored::Live
                } else {
                    Mirrored::PastEnd
                }),
            ),
            None => (s.deadline, s.ttl_ms(), None),
        };
        PageRow {
            name: reg.name.clone(),
            lease: id,
            remaining_ms: end.since(now),
            ttl_ms,
            renewals: s.renewals(),
            in_grace: s.in_grace(),
            last_renewal_ms: self.wall_ms(Millis(end.0.saturating_sub(ttl_ms))),
            clients_served: self.usage.clients_served(&reg.name),
            holder: self.holder(&id).cloned(),
            mirrored,
        }
    }
}

/// Whether a registration passes a lease-table filter.
fn passes(filter: &LeaseFilter, reg: &Registration) -> bool {
    filter
        .interface
        .as_deref()
        .is_none_or(|i| reg.exports().any(|e| e.is(i)))
        && filter.vendor.is_none_or(|v| *reg.vendor == v)
        && filter
            .name_prefix
            .as_deref()
            .is_none_or(|p| reg.name.starts_with(p))
}
