//! The registry's reads that reach the store: candidates and lease pages (memory decides,
//! then only the manifests they list are read), component bytes, and service history.
//! They block on disk IO: call them from a blocking thread, except [`Registry::find`],
//! whose read is bounded and cheap enough to stay where a lookup runs.

use super::Registry;
use crate::core::lease_table::Millis;
use crate::core::matcher::PreparedQuery;
use crate::core::state::candidates;
use crate::core::usage::{UsageCounts, group, hour_of};
use crate::errors::{FindError, ReadError};
use courier_protocol::limits::{
    MAX_CATALOG_BYTES, MAX_CATALOG_PAGE, MAX_HISTORY, MAX_HISTORY_BYTES, MAX_LEASE_PAGE,
};
use courier_protocol::{
    Candidate, CatalogEntry, CatalogPage, ContentHash, HistoryEntry, LeaseCursor, LeaseFilter,
    LeaseId, LeaseInfo, LeasePage, ServiceQuery, UsageBy, UsageQuery, UsageRow, VendorKey,
};

pub use crate::core::usage::UNKNOWN_SERVICE;

impl Registry {
    /// Ranked candidates for `query` at `now` (metadata only; the payload is fetched by
    /// hash). Matches in memory, then reads the manifests of at most
    /// [`crate::RegistryConfig::max_candidates`] candidates from the store, which its page
    /// cache and the OS's serve; each with the latest freshness statement of its service: a lookup at 100,000 registrations spends about 40 µs here
    /// in all, less than a hand-off to the blocking pool would add, so the server answers
    /// lookups where they arrive.
    pub fn find(&self, now: Millis, query: &ServiceQuery) -> Result<Vec<Candidate>, FindError> {
        self.find_as(now, query, None)
    }

    /// [`Registry::find`] for the client authenticated as `client` (`None`: anonymous):
    /// a staged version is among the candidates only where a rollout's open wave takes
    /// the client.
    pub fn find_as(
        &self,
        now: Millis,
        query: &ServiceQuery,
        client: Option<&VendorKey>,
    ) -> Result<Vec<Candidate>, FindError> {
        let prepared = PreparedQuery::new(query, self.config.max_candidates)?;
        let (matches, freshness) = {
            let state = self.state();
            let mut matches = state.find_as(now, &prepared, client);
            // A mirrored lease's time is its parent's, not the grace added here.
            state.mirrored_remaining(now, &mut matches);
            let freshness: Vec<_> = matches
                .iter()
                .map(|m| state.freshness_of(&m.lease))
                .collect();
            (matches, freshness)
        };
        if matches.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<_> = matches.iter().map(|m| m.lease).collect();
        let manifests = self.store.manifests(&ids)?;
        Ok(candidates(matches, manifests, freshness))
    }

    /// One page of the live leases at `now`, sorted by service name then lease: at most
    /// `limit` rows (capped at [`MAX_LEASE_PAGE`]) after `after`. The order comes from
    /// memory and only the page's manifests are read. Blocking.
    pub fn leases_page(
        &self,
        now: Millis,
        filter: &LeaseFilter,
        after: Option<&LeaseCursor>,
        limit: u32,
    ) -> Result<LeasePage, ReadError> {
        let rows = self.state().leases_page(now, filter, after, limit);
        let manifests = self.store.manifests(&rows.leases())?;
        let mut page = rows.into_page(manifests);
        page.store_unwritable_ms = self
            .unwritable_for(now)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        page.cluster = self.cluster();
        Ok(page)
    }

    /// One page of the catalog at `now` (at most `limit` entries, and
    /// [`MAX_CATALOG_BYTES`] of manifests) after `after`, with the event number a mirror
    /// follows the feed from, read with the rows. Blocking (the store reads the manifests).
    pub fn catalog_page(
        &self,
        now: Millis,
        after: Option<&LeaseCursor>,
        limit: u32,
    ) -> Result<CatalogPage, ReadError> {
        let limit = limit.clamp(1, MAX_CATALOG_PAGE);
        let (rows, seq) = {
            let st = self.state();
            let rows = st.leases_page(now, &LeaseFilter::default(), after, limit);
            (rows, st.events().next_seq())
        };
        let manifests = self.store.manifests(&rows.leases())?;
        let mut page = rows.into_catalog(manifests, seq, MAX_CATALOG_BYTES);
        self.with_freshness(&mut page.entries);
        Ok(page)
    }

    /// Each entry with the freshness statement a candidate of it is served with; staged
    /// registrations left out (a mirror would show them to all its clients).
    fn with_freshness(&self, entries: &mut Vec<CatalogEntry>) {
        let st = self.state();
        entries.retain(|e| !st.is_staged(&e.lease.lease));
        for e in entries {
            e.freshness = st.freshness_of(&e.lease.lease);
        }
    }

    /// The registration of `lease` as [`Registry::catalog_page`] lists it, if it is live at
    /// `now`. Blocking (the store reads its manifest).
    pub fn registration(
        &self,
        now: Millis,
        lease: &LeaseId,
    ) -> Result<Option<CatalogEntry>, ReadError> {
        let (row, seq) = {
            let st = self.state();
            (st.lease_row(now, lease), st.events().next_seq())
        };
        let manifests = self.store.manifests(&row.leases())?;
        let mut entries = row.into_catalog(manifests, seq, MAX_CATALOG_BYTES).entries;
        self.with_freshness(&mut entries);
        Ok(entries.pop())
    }

    /// The live leases at `now`, sorted by service name then lease (every page of
    /// [`Registry::leases_page`]). Blocking.
    pub fn leases(&self, now: Millis) -> Result<Vec<LeaseInfo>, ReadError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page =
                self.leases_page(now, &LeaseFilter::default(), after.as_ref(), MAX_LEASE_PAGE)?;
            out.extend(page.leases);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// The size of a stored component, without reading it. Blocking (a stat).
    pub fn component_size(&self, hash: &ContentHash) -> Result<u64, ReadError> {
        self.component_here_or_fetched(hash)
    }

    /// A stored component's bytes, checked against their hash. Fetched for the candidate
    /// `lease` by `client`, it is metered as a proxy of that service handed out to that
    /// client (when the lease's component is this one). Blocking.
    pub fn fetch(
        &self,
        hash: &ContentHash,
        lease: Option<LeaseId>,
        client: Option<VendorKey>,
    ) -> Result<Vec<u8>, ReadError> {
        let bytes = self
            .store
            .read_component(hash)?
            .ok_or(ReadError::NotFound(*hash))?;
        let service = match lease {
            Some(lease) => self
                .store
                .manifests(&[lease])?
                .pop()
                .flatten()
                .and_then(|m| m.peek().ok())
                .filter(|m| m.component_hash == *hash)
                .map(|m| m.name),
            None => None,
        };
        let service = service.unwrap_or_else(|| UNKNOWN_SERVICE.to_string());
        let now = self.now();
        self.state()
            .note_fetch(now, client, &service, bytes.len() as u64);
        Ok(bytes)
    }

    /// Usage summed per client, service or both since a time: what the store has, plus
    /// what is not written yet. Blocking.
    pub fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, ReadError> {
        let since = hour_of(query.since_ms);
        let stored = self.store.usage_since(since)?;
        let pending = self.state().pending_usage(since);
        let counts = |u: &crate::store::UsageRecord| UsageCounts {
            handed_out: u.handed_out,
            bytes: u.bytes,
            calls: u.calls,
            failed: u.failed,
        };
        let records = stored
            .iter()
            .map(|u| (u.client, u.service.as_str(), counts(u)))
            .chain(pending.iter().map(|(c, s, n)| (*c, s.as_str(), *n)));
        let (by_client, by_service) = match query.by {
            UsageBy::Client => (true, false),
            UsageBy::Service => (false, true),
            UsageBy::ClientService => (true, true),
        };
        Ok(group(records, by_client, by_service))
    }

    /// A client's history, newest first, at most `limit` (capped at [`MAX_HISTORY`]) and
    /// at most [`MAX_HISTORY_BYTES`] of it. Blocking.
    pub fn history(&self, client: &str, limit: u32) -> Result<Vec<HistoryEntry>, ReadError> {
        let limit = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(MAX_HISTORY);
        Ok(self.store.history(client, limit, MAX_HISTORY_BYTES)?)
    }
}
