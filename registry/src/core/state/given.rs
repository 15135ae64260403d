//! Events a cluster numbers through its store. Every node of a cluster, the writer as much
//! as a standby, takes its events from the store's history of committed changes rather
//! than from its own changes in memory: each gets the number the history gives it (see
//! `cluster/src/feed.rs`), the same at every node, so a subscriber moves between nodes
//! without a gap. What a node does in memory (a renewal the writer takes, an expiry it
//! decides) numbers nothing here; the event comes when the change is written.

use super::RegistryState;
use crate::core::catalog::Registration;
use crate::core::events::EventRing;
use crate::core::lease_table::LeaseMap;
use crate::core::lease_table::Millis;
use courier_protocol::{EventKind, LeaseId, SignedManifest};
use std::collections::VecDeque;
use std::sync::Arc;

/// Registrations remembered after they left the catalog.
const GONE_REMEMBERED: usize = 8192;

/// Registrations that left the catalog lately: an event about one may still come from the
/// history after it left here (a renewal written just before its removal, in the same
/// watch answer, or before the writer's own expiry reached etcd), and carries no manifest.
#[derive(Debug, Default)]
pub(super) struct RecentlyGone {
    order: VecDeque<LeaseId>,
    regs: LeaseMap<Arc<Registration>>,
}

/// One event of a cluster's history, numbered there.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// Its number (strictly increasing along the history).
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// Wall-clock time of the change (the writer's clock), ms since the Unix epoch.
    pub at_ms: u64,
    /// The registration concerned.
    pub lease: LeaseId,
    /// Its manifest, when the history carries it (a registration, a removal): the
    /// registration may be gone from the catalog by the time its event is numbered.
    pub manifest: Option<SignedManifest>,
}

impl RegistryState {
    /// Numbers events as the store's history gives them, from `from_seq` on (earlier ones
    /// count as missed): a cluster's node.
    pub fn number_events_from_store(&mut self, from_seq: u64) {
        self.events_given = true;
        self.events = EventRing::given(from_seq, self.config.event_ring);
    }

    /// Whether events are numbered by the store's history.
    pub fn events_given(&self) -> bool {
        self.events_given
    }

    /// An event of this state's own making: numbered here, unless the store numbers them.
    pub(super) fn note(&mut self, kind: EventKind, now: Millis, reg: Arc<Registration>) {
        // A staged registration is in no feed: subscribers, children and event
        // registrations would show it to everyone.
        if !self.events_given && !self.catalog.is_staged(&reg.lease) {
            self.events.push(kind, self.wall_ms(now), reg);
        }
    }

    /// Remembers a registration that left the catalog, for the events about it still to
    /// come (the most recent [`GONE_REMEMBERED`]).
    pub(super) fn remember_gone(&mut self, reg: Arc<Registration>) {
        if !self.events_given {
            return;
        }
        let gone = &mut self.recently_gone;
        gone.order.push_back(reg.lease);
        gone.regs.insert(reg.lease, reg);
        while gone.order.len() > GONE_REMEMBERED {
            if let Some(old) = gone.order.pop_front() {
                gone.regs.remove(&old);
            }
        }
    }

    /// Keeps an event the store's history numbered. Returns whether it was kept: one
    /// numbered already, or about a registration neither the catalog nor the event knows,
    /// is not.
    pub fn given_event(&mut self, event: StoreEvent) -> bool {
        if event.seq < self.events.next_seq() {
            return false;
        }
        let known = self
            .catalog
            .get(&event.lease)
            .or_else(|| self.recently_gone.regs.get(&event.lease));
        let reg = match known {
            Some(reg) => reg.clone(),
            None => {
                let Some(manifest) = event.manifest.as_ref().and_then(|m| m.peek().ok()) else {
                    return false;
                };
                match self.catalog.detached(event.lease, &manifest) {
                    Ok(reg) => reg,
                    Err(_) => return false,
                }
            }
        };
        self.events.push_at(event.seq, event.kind, event.at_ms, reg)
    }

    /// The history from here up to `seq` cannot be read (a follower that lost its watch
    /// and read the store again): subscribers asking for it hear it is missed.
    pub fn skip_events_to(&mut self, seq: u64) {
        self.events.skip_to(seq);
    }

    /// Takes the events out (a standby elected writer hands them to the writer's state),
    /// leaving an empty ring that goes on from the same number.
    pub fn take_events(&mut self) -> EventRing {
        let next = self.events.next_seq();
        std::mem::replace(
            &mut self.events,
            EventRing::given(next, self.config.event_ring),
        )
    }

    /// Numbers events as the store gives them, going on from `events` (those a standby
    /// kept before this node was elected writer), so its subscribers lose nothing. Only
    /// before any event is kept here: the caller replays the history from where `events`
    /// ends.
    pub fn adopt_events(&mut self, events: EventRing) {
        self.events_given = true;
        if self.events.is_empty() {
            self.events = events;
        }
    }

    /// Keeps, in this state read again from the store, `old`'s events and how they are
    /// numbered (a standby's subscribers go on where they were).
    pub fn carry_events(&mut self, old: &mut RegistryState) {
        self.events_given = old.events_given;
        std::mem::swap(&mut self.events, &mut old.events);
        std::mem::swap(&mut self.recently_gone, &mut old.recently_gone);
    }
}
