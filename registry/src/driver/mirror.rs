//! A child registry's copy of its parent, at the driver: applying what the link to the
//! parent read ([`Registry::mirror_apply`], committed like any write), renewals the feed
//! announced ([`Registry::mirror_renew`], in memory), the link's counters, and components
//! fetched from the parent just in time: the first client that asks this registry for the
//! component of a mirrored registration has it fetched from the parent (checked against
//! its hash, kept, content-addressed); the next one is served from here. Only components a
//! mirrored registration names are ever asked of the parent.

use super::Registry;
use crate::core::lease_table::Millis;
use crate::core::state::{MirrorApplied, MirrorDelta};
use crate::errors::ReadError;
use crate::store::{MirrorAnchor, StoreError};
use courier_protocol::{
    Approval, ChildReport, ContentHash, LeaseId, MirrorRule, MirrorStatus, RootBatch, RootSince,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Where a registry gets component bytes it does not hold: its parent (a child registry),
/// or another node (a cluster). Called from a blocking thread; returns the bytes, which
/// the caller checks against the hash, or `None`.
pub trait ComponentSource: Send + Sync {
    /// The component `hash`, `size` bytes long.
    fn fetch(&self, hash: &ContentHash, size: u64) -> Option<Vec<u8>>;
}

/// Where a child registry gets the vendor roots' statements it does not hold: its parent.
/// Called from a blocking thread; the answer is verified by whoever keeps it.
pub trait RootSource: Send + Sync {
    /// The parent's statements of `roots` newer than each version, and their delegations.
    fn root_statements(&self, roots: &[RootSince]) -> Option<RootBatch>;
}

/// The state of a child's link to its parent, as the link task updates it.
#[derive(Default)]
pub(super) struct MirrorLink {
    parent: Mutex<Option<String>>,
    connected: AtomicBool,
    parent_seq: AtomicU64,
    bad_signatures: AtomicU64,
    copies: AtomicU64,
    fetched: AtomicU64,
    received: AtomicU64,
    /// Rules or approvals changed: the link copies the parent's catalog again.
    recopy: Notify,
    source: Mutex<Option<Arc<dyn ComponentSource>>>,
    roots: Mutex<Option<Arc<dyn RootSource>>>,
    /// Roots the parent held nothing of when asked, and when: not asked again for a while.
    roots_missing: Mutex<HashMap<courier_protocol::RootId, std::time::Instant>>,
    /// Asks of the parent for root statements in flight.
    roots_asking: std::sync::atomic::AtomicUsize,
    /// One fetch from the parent per component at a time; the others wait for it.
    fetching: Mutex<HashMap<ContentHash, Arc<Mutex<()>>>>,
    /// Fetches that failed lately: the clients that waited for one do not each try again.
    failed: Mutex<HashMap<ContentHash, std::time::Instant>>,
}

/// How long a root the parent held nothing of is not asked about again.
const ROOT_MISSING_FOR: std::time::Duration = std::time::Duration::from_secs(300);
/// Most roots remembered as missing at the parent (a bound: past it, the memory starts
/// again).
const ROOTS_MISSING_KEPT: usize = 10_000;
/// Most asks of the parent for root statements in flight; past them, a client is answered
/// from what this registry holds.
const ROOT_ASKS_IN_FLIGHT: usize = 2;

/// How long a failed fetch from the parent is not tried again.
const FAILED_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// What a link to the parent reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Welcomed by the parent and following its feed (or not any more).
    Connected(bool),
    /// The parent's feed position as seen.
    ParentSeq(u64),
    /// A manifest from the parent whose signature failed.
    BadSignature,
    /// A whole copy of the parent's catalog was made.
    Copied,
    /// More bytes received from the parent.
    Received(u64),
}

impl Registry {
    /// Makes this registry a child of the parent at `addr` whose components come from
    /// `source`, and the vendor roots' statements it lacks from `roots`.
    pub fn set_parent(
        &self,
        addr: String,
        source: Arc<dyn ComponentSource>,
        roots: Arc<dyn RootSource>,
    ) {
        *lock(&self.mirror.parent) = Some(addr);
        *lock(&self.mirror.source) = Some(source);
        *lock(&self.mirror.roots) = Some(roots);
        self.state().forward_reports();
    }

    /// Whether this registry has a parent (it asks it for what it lacks).
    pub fn has_parent(&self) -> bool {
        lock(&self.mirror.parent).is_some()
    }

    /// The root statements newer than each version asked, and their delegations; at a
    /// child, the roots it holds nothing of are asked of the parent first and what comes
    /// back is kept (verified as if published here). Blocking (at a child).
    pub fn root_statements_through(&self, asked: &[RootSince]) -> RootBatch {
        let unknown = self.roots_to_ask(asked);
        let source = lock(&self.mirror.roots).clone();
        let m = &self.mirror;
        if let (false, Some(source)) = (unknown.is_empty(), source) {
            let in_flight = m.roots_asking.fetch_add(1, Ordering::AcqRel);
            if in_flight < ROOT_ASKS_IN_FLIGHT {
                let batch = source.root_statements(&unknown);
                let mut held = std::collections::HashSet::new();
                if let Some(batch) = batch {
                    for s in &batch.statements {
                        if let Ok(st) = s.peek() {
                            held.insert(st.root);
                        }
                    }
                    self.keep_root_statements(&unknown, batch);
                }
                let mut missing = lock(&m.roots_missing);
                if missing.len() >= ROOTS_MISSING_KEPT {
                    missing.clear();
                }
                let now = std::time::Instant::now();
                for r in unknown.iter().filter(|r| !held.contains(&r.root)) {
                    missing.insert(r.root, now);
                }
            }
            m.roots_asking.fetch_sub(1, Ordering::AcqRel);
        }
        self.state().root_statements(asked)
    }

    /// Whether answering `asked` here means asking the parent first (the server then
    /// answers on the blocking pool).
    pub fn asks_parent_for_roots(&self, asked: &[RootSince]) -> bool {
        self.has_parent() && !self.roots_to_ask(asked).is_empty()
    }

    /// The roots asked about that this registry holds nothing of and the parent was not
    /// found to lack lately.
    fn roots_to_ask(&self, asked: &[RootSince]) -> Vec<RootSince> {
        let unknown = self.state().unknown_roots(asked);
        if unknown.is_empty() {
            return unknown;
        }
        let missing = lock(&self.mirror.roots_missing);
        unknown
            .into_iter()
            .filter(|r| {
                missing
                    .get(&r.root)
                    .is_none_or(|at| at.elapsed() >= ROOT_MISSING_FOR)
            })
            .collect()
    }

    /// Keeps root statements and delegations from the parent about `roots` (others are
    /// left out): each verified and committed as if published here; one that does not
    /// follow what is held is left out.
    pub fn keep_root_statements(&self, roots: &[RootSince], mut batch: RootBatch) {
        let asked = |root: &courier_protocol::RootId| roots.iter().any(|r| r.root == *root);
        batch
            .statements
            .retain(|s| s.peek().is_ok_and(|st| asked(&st.root)));
        batch
            .delegations
            .retain(|d| d.peek().is_ok_and(|st| asked(&st.root)));
        for signed in batch.statements {
            if let Err(e) = self.root_statement(self.now(), signed) {
                tracing::debug!("a root statement from the parent is not kept: {e}");
            }
        }
        for signed in batch.delegations {
            if let Err(e) = self.delegation(signed) {
                tracing::debug!("a delegation from the parent is not kept: {e}");
            }
        }
    }

    /// Every root held, with the newest version held (what a child asks its parent about).
    pub fn held_roots(&self) -> Vec<RootSince> {
        self.state().held_roots()
    }

    /// Applies what the link read from the parent, durably. Blocking (a commit).
    pub fn mirror_apply(&self, delta: MirrorDelta) -> Result<MirrorApplied, StoreError> {
        let now = self.now();
        let writer = self.writer();
        let planned = self.state().plan_mirror(now, delta);
        if planned.batch().is_empty() {
            let applied = self.with_state(|st| st.apply(now, planned));
            return Ok(applied);
        }
        let applied = self.commit(&writer, now, planned)?;
        drop(writer);
        if applied.added + applied.removed + applied.asked > 0 {
            tracing::debug!(?applied, "applied what the parent sent");
        }
        Ok(applied)
    }

    /// Renewals the parent's feed announced, in memory. Returns how many leases are
    /// mirrored here.
    pub fn mirror_renew(&self, leases: &[LeaseId]) -> usize {
        let now = self.now();
        self.with_state(|st| leases.iter().filter(|l| st.mirror_renew(now, **l)).count())
    }

    /// Where this registry is in its parent's feed, as last committed.
    pub fn mirror_anchor(&self) -> Option<MirrorAnchor> {
        self.state().mirror_anchor().cloned()
    }

    /// The vendor keys of the mirrored registrations.
    pub fn mirrored_vendors(&self) -> Vec<courier_protocol::VendorKey> {
        self.state().mirrored_vendors()
    }

    /// The freshness statements held about these vendors' services.
    pub fn freshness_of_vendors(
        &self,
        vendors: &[courier_protocol::VendorKey],
    ) -> Vec<courier_protocol::SignedFreshness> {
        self.state().freshness_of_vendors(vendors)
    }

    /// The vendor keys of the mirrored registrations `leases`, each once.
    pub fn vendors_of(&self, leases: &[LeaseId]) -> Vec<courier_protocol::VendorKey> {
        let st = self.state();
        let mut keys: Vec<_> = leases
            .iter()
            .filter(|l| st.mirrored(l).is_some())
            .filter_map(|l| st.vendor_of(l))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The mirrored registrations' leases.
    pub fn mirrored_leases(&self) -> Vec<LeaseId> {
        self.state().mirrored_leases()
    }

    /// The components mirrored registrations name.
    pub fn mirrored_components(&self) -> Vec<ContentHash> {
        self.state().mirrored_components()
    }

    /// Whether `lease` was mirrored here and ran out here lately (see
    /// `RegistryState::lapsed_mirror`).
    pub fn lapsed_mirror(&self, lease: &LeaseId) -> bool {
        self.state().lapsed_mirror(lease)
    }

    /// Whether `lease` is mirrored here.
    pub fn is_mirrored(&self, lease: &LeaseId) -> bool {
        self.state().mirrored(lease).is_some()
    }

    /// The link task's news.
    pub fn link_event(&self, event: LinkEvent) {
        let m = &self.mirror;
        match event {
            LinkEvent::Connected(up) => m.connected.store(up, Ordering::Relaxed),
            LinkEvent::ParentSeq(seq) => {
                m.parent_seq.fetch_max(seq, Ordering::Relaxed);
            }
            LinkEvent::BadSignature => {
                m.bad_signatures.fetch_add(1, Ordering::Relaxed);
            }
            LinkEvent::Copied => {
                m.copies.fetch_add(1, Ordering::Relaxed);
            }
            LinkEvent::Received(n) => {
                m.received.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Resolves when an operator changed the rules or approvals (the link copies the
    /// parent's catalog again).
    pub async fn rules_changed(&self) {
        self.mirror.recopy.notified().await;
    }

    pub(super) fn mirror_rules_changed(&self) {
        self.mirror.recopy.notify_one();
    }

    /// Where this registry's copy of its parent stands, and its rules.
    pub fn mirror_status(&self) -> (MirrorStatus, Vec<MirrorRule>) {
        let now = self.now();
        let st = self.state();
        let (mirrored, past_end) = st.mirrored_counts(now);
        let m = &self.mirror;
        let parent_seq = m.parent_seq.load(Ordering::Relaxed);
        let status = MirrorStatus {
            parent: lock(&m.parent).clone(),
            connected: m.connected.load(Ordering::Relaxed),
            anchor: st.mirror_anchor().map(|a| a.next),
            parent_seq: (parent_seq > 0).then_some(parent_seq),
            mirrored,
            past_end,
            pending: st.mirror_book().pending(),
            bad_signatures: m.bad_signatures.load(Ordering::Relaxed),
            copies: m.copies.load(Ordering::Relaxed),
            fetched: m.fetched.load(Ordering::Relaxed),
            received_bytes: m.received.load(Ordering::Relaxed),
        };
        (status, st.mirror_book().rules().cloned().collect())
    }

    /// The approvals, pending first.
    pub fn approvals(&self) -> Vec<Approval> {
        self.state().mirror_book().approvals()
    }

    /// A report for the parent: the sync state and the activity not reported yet (taken:
    /// give it back with [`Registry::report_not_taken`] if the parent did not take it).
    pub fn child_report_up(&self) -> ChildReport {
        let (status, _) = self.mirror_status();
        ChildReport {
            status,
            activity: self.state().take_unreported(),
        }
    }

    /// A report the parent did not acknowledge: its activity goes in the next one.
    pub fn report_not_taken(&self, report: ChildReport) {
        self.state().unreported_back(report.activity);
    }

    /// An allowed child's report, at the parent.
    pub fn child_report(
        &self,
        now: Millis,
        key: courier_protocol::VendorKey,
        report: ChildReport,
    ) -> Result<(), crate::core::children::ChildRefused> {
        self.state().child_report(now, key, report)
    }

    /// The size of component `hash`: held here, or fetched from the parent if a mirrored
    /// registration names it. Blocking.
    pub(super) fn component_here_or_fetched(&self, hash: &ContentHash) -> Result<u64, ReadError> {
        if let Some(n) = self.store.component_size(hash)? {
            return Ok(n);
        }
        let Some(size) = self.state().mirrored_component(hash) else {
            return Err(ReadError::NotFound(*hash));
        };
        let Some(source) = lock(&self.mirror.source).clone() else {
            return Err(ReadError::NotFound(*hash));
        };
        let gate = lock(&self.mirror.fetching)
            .entry(*hash)
            .or_default()
            .clone();
        let _one = lock(&gate);
        // Another client's fetch may have brought it meanwhile, or failed just now.
        if let Some(n) = self.store.component_size(hash)? {
            return Ok(n);
        }
        if lock(&self.mirror.failed)
            .get(hash)
            .is_some_and(|at| at.elapsed() < FAILED_FOR)
        {
            return Err(ReadError::NotFound(*hash));
        }
        let fetched = source.fetch(hash, size);
        lock(&self.mirror.fetching).remove(hash);
        if !matches!(&fetched, Some(b) if ContentHash::of(b) == *hash) {
            let mut failed = lock(&self.mirror.failed);
            failed.retain(|_, at| at.elapsed() < FAILED_FOR);
            failed.insert(*hash, std::time::Instant::now());
        }
        match fetched {
            Some(bytes) if ContentHash::of(&bytes) == *hash => {
                self.store.put_component(hash, &bytes)?;
                self.mirror.fetched.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%hash, bytes = bytes.len(), "fetched a component from the parent");
                Ok(bytes.len() as u64)
            }
            Some(_) => {
                tracing::warn!(%hash, "the parent sent bytes that do not match the hash; dropped");
                Err(ReadError::NotFound(*hash))
            }
            None => Err(ReadError::NotFound(*hash)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
