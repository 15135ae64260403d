//! [`RegistryState`]: the lease table, the catalog, the key book and the event ring as one
//! state machine. Every method takes `now` (monotonic milliseconds from the registry's
//! start) and whatever ids it needs from the caller, and says what happened.
//!
//! Two kinds of operation:
//! - **In memory** ([`RegistryState::renew`], [`RegistryState::expire`], the reads): they
//!   change or read memory only. A renewal marks its lease dirty; an expiry queues the lease
//!   for deletion. The next flush writes both behind.
//! - **Committed first** (register, cancel, key statements, grants, flushes, event-number
//!   reservations): a `plan_*` method checks the change against the state and returns a
//!   [`Planned`] change holding the [`Batch`] to commit; the caller commits the batch
//!   durably, then hands the plan back to [`RegistryState::apply`] (or to
//!   [`RegistryState::abandon`] if the commit failed). Between the two, other changes may
//!   have happened in memory (renewals, expiries); applying takes that into account.
//!
//! Every event gets a number below the durably reserved mark ([`EventRing::headroom`]);
//! committed changes reserve more in their own batch when the mark gets near, and the
//! in-memory ones refuse with [`NoHeadroom`] rather than number an event that a restart
//! could number again.

mod admin;
mod change;
mod clients;
mod follow;
mod freshness;
mod given;
mod held;
mod mirror;
mod pending_names;
mod restart;
mod rollouts;
mod roots;
mod views;

pub use change::{Change, FlushStats, Planned};
pub use given::StoreEvent;
pub use mirror::{MirrorApplied, MirrorDelta, MirrorPut, MirroredLease};
pub use restart::{Restart, RestartCounts, Restorer};
pub use views::{LeasePageRows, PageRow, candidates};

use crate::core::catalog::{Catalog, Registration};
use crate::core::children::ChildBook;
use crate::core::clients::ClientBook;
use crate::core::controls::Controls;
use crate::core::events::EventRing;
use crate::core::freshness::FreshnessBook;
use crate::core::keys::KeyBook;
use crate::core::lease_table::{LeaseChange, LeaseMap, LeaseOp, LeasePolicy, LeaseTable, Millis};
use crate::core::matcher::{self, Match, PreparedQuery};
use crate::core::mirror::MirrorBook;
use crate::core::rollouts::RolloutBook;
use crate::core::roots::RootBook;
use crate::core::usage::UsageBook;
use crate::errors::LeaseError;
use crate::store::{Batch, MirrorAnchor, Removal};
use courier_protocol::{EventBatch, EventKind, LeaseGrant, LeaseId, SignedKeyStatement, VendorKey};
use std::sync::Arc;

/// The settings of the state machine (see [`crate::RegistryConfig`] for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateConfig {
    /// How long leases last, and the grace after a restart.
    pub policy: LeasePolicy,
    /// Recent events kept in the ring.
    pub event_ring: usize,
    /// Event numbers reserved durably at a time (at least 1,024).
    pub seq_block: u64,
    /// A child registry: how long past its last known end a mirrored lease is still
    /// served (a child cut off from its parent).
    pub mirror_grace_ms: u64,
}

/// Mirrored registrations that ran out here, remembered so that a renewal at the parent
/// brings them back (a bound, not a rule: past it, the next copy does).
const LAPSED_REMEMBERED: usize = 65_536;

/// Event numbers ran out: a committed reservation must come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no event numbers left below the reserved mark")]
pub struct NoHeadroom;

/// The registry's state machine.
#[derive(Debug)]
pub struct RegistryState {
    config: StateConfig,
    /// Wall-clock milliseconds (since the Unix epoch) at monotonic time 0.
    wall_base_ms: u64,
    table: LeaseTable,
    catalog: Catalog,
    keys: KeyBook,
    events: EventRing,
    /// A cluster's node: events are numbered by the store's history, not here (see
    /// `given.rs`).
    events_given: bool,
    /// A cluster's node: registrations that left the catalog lately (see `given.rs`).
    recently_gone: given::RecentlyGone,
    /// Leases renewed since the last flush.
    dirty: LeaseMap<()>,
    /// In a cluster: the node holding each lease renewed at another node than the writer
    /// (see `held.rs`).
    held_by: LeaseMap<Arc<str>>,
    /// A cluster standby's own name (its renewals are its to hold).
    here: Option<Arc<str>>,
    /// The names `held_by` shares (a cluster's nodes: a few).
    holders: Vec<Arc<str>>,
    /// A cluster standby: the writer's wall clock less this state's, in ms, as last seen
    /// (the rows it writes are on the writer's clock).
    writer_offset_ms: i64,
    /// A cluster standby: renewals taken so far, each a ticket its flush answers.
    held_taken: u64,
    /// Leases expired since the last flush, to delete from the store.
    deleted: Vec<(LeaseId, Removal)>,
    /// When the last flush was committed.
    last_flush: Millis,
    /// The clients the registry knows.
    clients: ClientBook,
    /// The child registries operators allowed, and this registry's place among them.
    children: ChildBook,
    /// What operators set: revoked leases, bans, drains.
    controls: Controls,
    /// Vendor roots' statements and delegations.
    roots: RootBook,
    /// The last audit entry number used.
    audit_seq: u64,
    /// Usage not yet written behind, and who was served.
    usage: UsageBook,
    /// The latest freshness statement per (vendor key, service name).
    freshness: FreshnessBook,
    /// A child registry: its rules and approvals.
    mirror_book: MirrorBook,
    /// A child registry: the registrations mirrored from its parent.
    mirrored: LeaseMap<MirroredLease>,
    /// A child registry: where it is in its parent's feed.
    mirror_anchor: Option<MirrorAnchor>,
    /// A child registry: mirrored registrations that ran out here, lately (bounded).
    lapsed: LeaseMap<()>,
    /// Staged rollouts.
    rollouts: RolloutBook,
}

impl RegistryState {
    /// An empty state whose monotonic time 0 is wall-clock `wall_base_ms`, numbering events
    /// from `start_seq` with nothing reserved beyond it yet.
    pub fn new(config: StateConfig, wall_base_ms: u64, start_seq: u64) -> Self {
        Self {
            config,
            wall_base_ms,
            table: LeaseTable::new(config.policy),
            catalog: Catalog::new(),
            keys: KeyBook::new(),
            events: EventRing::new(start_seq, start_seq, config.event_ring),
            events_given: false,
            recently_gone: Default::default(),
            dirty: LeaseMap::default(),
            held_by: LeaseMap::default(),
            here: None,
            holders: Vec::new(),
            writer_offset_ms: 0,
            held_taken: 0,
            deleted: Vec::new(),
            last_flush: Millis(0),
            clients: ClientBook::default(),
            controls: Controls::default(),
            children: ChildBook::default(),
            roots: RootBook::new(),
            audit_seq: 0,
            usage: UsageBook::default(),
            freshness: FreshnessBook::new(),
            mirror_book: MirrorBook::default(),
            mirrored: LeaseMap::default(),
            mirror_anchor: None,
            lapsed: LeaseMap::default(),
            rollouts: RolloutBook::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// The wall-clock time (ms since the Unix epoch) of monotonic time `now`.
    pub fn wall_ms(&self, now: Millis) -> u64 {
        self.wall_base_ms.saturating_add(now.0)
    }

    /// Renews a lease for `key`, in memory: the new expiry is written by the next flush.
    pub fn renew(
        &mut self,
        now: Millis,
        key: &VendorKey,
        lease: LeaseId,
        ttl_ms: u64,
    ) -> Result<LeaseGrant, LeaseError> {
        if let Some(reason) = self.controls.revoked(&lease) {
            return Err(LeaseError::Revoked {
                lease,
                reason: reason.to_string(),
            });
        }
        let reg = self.live_registration_of(now, key, lease)?.clone();
        if self.mirrored.contains_key(&lease) {
            return Err(LeaseError::Mirrored(lease));
        }
        self.check_root_grant(now, key, &reg.name)
            .map_err(|_| LeaseError::NotOwner(lease))?;
        if let Some(reason) = self.controls.draining(&reg.name) {
            return Err(LeaseError::Draining {
                lease,
                name: reg.name.to_string(),
                reason: reason.to_string(),
            });
        }
        if self.events.headroom() == 0 {
            return Err(LeaseError::NoHeadroom);
        }
        match self.table.handle(now, LeaseOp::Renew { id: lease, ttl_ms }) {
            LeaseChange::Renewed {
                ttl_ms, deadline, ..
            } => {
                self.catalog.set_deadline(&lease, deadline);
                self.dirty.insert(lease, ());
                self.held_here(lease);
                self.note(EventKind::Renewed, now, reg);
                Ok(LeaseGrant {
                    lease,
                    ttl_ms,
                    replaced: None,
                })
            }
            _ => Err(LeaseError::Unknown(lease)),
        }
    }

    /// Collects every lease whose deadline is at or before `now`: each leaves the catalog
    /// with an `Expired` event and is deleted from the store by the next flush. Returns the
    /// expired leases, earliest deadline first.
    pub fn expire(&mut self, now: Millis) -> Result<Vec<LeaseId>, NoHeadroom> {
        self.expire_at_most(now, usize::MAX)
    }

    /// [`RegistryState::expire`] for at most `max` leases, the earliest due: one slice of
    /// an expiry storm. The rest stay due (dead to every operation already) for the next
    /// slice; [`RegistryState::is_due`] says whether any are left.
    pub fn expire_at_most(&mut self, now: Millis, max: usize) -> Result<Vec<LeaseId>, NoHeadroom> {
        if !self.is_due(now) {
            return Ok(Vec::new());
        }
        if self.events.headroom() < self.table.len() as u64 {
            return Err(NoHeadroom);
        }
        let ids = self.table.expire_at_most(now, max);
        for id in &ids {
            self.retire(now, *id, Removal::Expired);
            self.deleted.push((*id, Removal::Expired));
        }
        Ok(ids)
    }

    /// Notes a proxy of `service` (`bytes` long) handed out to `client` now.
    pub fn note_fetch(
        &mut self,
        now: Millis,
        client: Option<VendorKey>,
        service: &str,
        bytes: u64,
    ) {
        let at = self.wall_ms(now);
        self.usage.fetched(at, client, service, bytes);
    }

    /// Notes a call of `service` that `client` reported now.
    pub fn note_call(&mut self, now: Millis, client: VendorKey, service: &str, ok: bool) {
        let at = self.wall_ms(now);
        self.usage.called(at, client, service, ok);
    }

    /// The usage not yet written, from hour `since_hour` on.
    pub fn pending_usage(
        &self,
        since_hour: u64,
    ) -> Vec<(Option<VendorKey>, String, crate::core::usage::UsageCounts)> {
        self.usage
            .pending_since(since_hour)
            .map(|((_, c, s), n)| (*c, s.to_string(), *n))
            .collect()
    }

    /// The earliest lease deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.table.next_deadline()
    }

    /// Whether a lease is due at `now` (its deadline passed, not collected yet).
    pub fn is_due(&self, now: Millis) -> bool {
        self.table.next_deadline().is_some_and(|d| d <= now)
    }

    /// The registrations matching `query` at `now`, ranked.
    pub fn find(&self, now: Millis, query: &PreparedQuery) -> Vec<Match> {
        matcher::find(&self.catalog, now, query)
    }

    /// Events from `from_seq` matching `interface` (at most `max`), and the number to go on
    /// from.
    pub fn events_since(
        &self,
        from_seq: u64,
        interface: Option<&str>,
        max: usize,
    ) -> (EventBatch, u64) {
        self.events.since(from_seq, interface, max)
    }

    /// The event ring (for the driver's fan-out of new events).
    pub fn events(&self) -> &EventRing {
        &self.events
    }

    /// The key statements about `keys` and the keys they rotated to.
    pub fn key_statements(&self, keys: &[VendorKey]) -> Vec<SignedKeyStatement> {
        self.keys.statements_for(keys)
    }

    /// The key acting for `key` now (the end of its rotation chain), and whether `key` is
    /// revoked.
    pub fn key_status(&self, key: &VendorKey) -> (VendorKey, bool) {
        (self.keys.current(key), self.keys.is_revoked(key))
    }

    /// The owner of a service name.
    pub fn owner(&self, name: &str) -> Option<VendorKey> {
        self.catalog.owner(name)
    }

    /// Counts: (live leases, registrations, indexed interfaces).
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.table.len(),
            self.catalog.len(),
            self.catalog.interfaces(),
        )
    }
    /// `key`'s live registration of `name`, if it has one.
    pub fn live_lease_named(&self, now: Millis, key: &VendorKey, name: &str) -> Option<LeaseId> {
        self.live_lease_named_as(now, key, name, false)
    }

    /// [`RegistryState::live_lease_named`], or the key's staged registration of the name.
    pub fn live_lease_named_as(
        &self,
        now: Millis,
        key: &VendorKey,
        name: &str,
        staged: bool,
    ) -> Option<LeaseId> {
        let lease = if staged {
            self.staged_to_replace(name, key)?
        } else {
            self.catalog.admit(name, key).ok()?.replaces?
        };
        self.live_registration_of(now, key, lease)
            .ok()
            .map(|r| r.lease)
    }

    /// The live registration of `lease`, if `key` may renew or cancel it.
    fn live_registration_of(
        &self,
        now: Millis,
        key: &VendorKey,
        lease: LeaseId,
    ) -> Result<&Arc<Registration>, LeaseError> {
        let reg = self
            .catalog
            .get(&lease)
            .filter(|_| self.table.remaining(&lease, now).is_some())
            .ok_or(LeaseError::Unknown(lease))?;
        if !self.keys.may_act_for(&reg.vendor, key) {
            return Err(LeaseError::NotOwner(lease));
        }
        Ok(reg)
    }

    /// Takes a registration out of the table, the dirty set and the catalog, with its event.
    /// The one way out, whatever the reason; nothing happens for a lease already gone.
    fn retire(&mut self, now: Millis, lease: LeaseId, why: Removal) -> Option<Arc<Registration>> {
        self.table.remove(&lease);
        self.dirty.remove(&lease);
        self.held_by.remove(&lease);
        if self.mirrored.remove(&lease).is_some() && why == Removal::Expired {
            if self.lapsed.len() >= LAPSED_REMEMBERED {
                self.lapsed.clear();
            }
            self.lapsed.insert(lease, ());
        }
        let staged = self.catalog.is_staged(&lease);
        let reg = self.catalog.remove(&lease)?;
        if !staged {
            self.note(why.event(), now, reg.clone());
        }
        self.remember_gone(reg.clone());
        Some(reg)
    }

    /// The new reserved mark to commit if fewer than `need` event numbers (plus a margin:
    /// one per live lease, since a mass expiry numbers one event each) are left.
    fn reservation_needed(&self, need: u64) -> Option<u64> {
        let block = self.config.seq_block.max(1024);
        let margin = (self.table.len() as u64).saturating_add(need);
        (self.events.headroom() < margin.max(block / 2))
            .then(|| self.events.next_seq() + block.max(margin.saturating_mul(2)))
    }

    /// A batch that reserves event numbers if `need` more (plus the margin) are not left.
    fn batch_reserving(&self, need: u64) -> Batch {
        Batch {
            seq_reserved: self.reservation_needed(need),
            ..Default::default()
        }
    }
}

/// Whether `name` can be a service name (the manifest's rule, for names an operator types).
pub(super) fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= courier_protocol::limits::manifest::NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

#[cfg(test)]
mod start_names_tests;
#[cfg(test)]
mod tests;
