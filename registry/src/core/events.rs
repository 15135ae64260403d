//! The event ring: every change to a registration gets a strictly increasing sequence
//! number, and recent events stay in a bounded ring for subscribers that ask from a given
//! sequence number. Pure: the driver fans new events out to live subscribers itself
//! ([`EventRing::records_from`] after each change).
//!
//! Two ways to number:
//! - **Locally** ([`EventRing::push`], a single registry): consecutive numbers. They stay
//!   strictly increasing across restarts: the registry durably reserves a block of numbers
//!   ahead (the store's high-water mark) and a restarted registry starts at the reserved
//!   mark, so no number is ever used twice (unused ones are skipped).
//! - **Given** ([`EventRing::push_at`], a cluster's nodes): each event's number comes from
//!   the shared store's history (etcd's revision and the event's place in it), so every
//!   node gives one change the same number and a subscriber can move between nodes. The
//!   numbers have holes.
//!
//! Either way the ring holds every event numbered in `[floor, next_seq)`; asking for
//! anything older answers with `missed: Some((from, floor))`. Each record says where its
//! predecessor ended ([`EventRecord::after`]), so a live subscriber tells a hole in the
//! numbering from an event it did not get.

use crate::core::catalog::Registration;
use courier_protocol::{Event, EventBatch, EventKind, LeaseId};
use std::collections::VecDeque;
use std::sync::Arc;

/// One event as the registry keeps it: the registration is shared, not copied.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Sequence number.
    pub seq: u64,
    /// The number a subscriber that has had every event before this one waits for next:
    /// one past the previous event's (`seq` itself when numbered locally). A subscriber
    /// waiting for a number below this missed one.
    pub after: u64,
    /// What happened.
    pub kind: EventKind,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The registration concerned.
    pub reg: Arc<Registration>,
}

impl EventRecord {
    /// Whether the event concerns `filter` (an interface, with or without version);
    /// everything matches no filter.
    pub fn matches(&self, filter: Option<&str>) -> bool {
        match filter {
            None => true,
            Some(f) => self.reg.exports().any(|e| e.is(f)),
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> Event {
        Event {
            seq: self.seq,
            kind: self.kind,
            lease: self.reg.lease,
            name: self.reg.name.to_string(),
            interfaces: self.reg.interface_names(),
            at_ms: self.at_ms,
        }
    }

    /// The lease concerned.
    pub fn lease(&self) -> LeaseId {
        self.reg.lease
    }
}

/// Every event kind, by the index it is kept under in the ring.
const KINDS: [EventKind; 6] = [
    EventKind::Registered,
    EventKind::Renewed,
    EventKind::Expired,
    EventKind::Cancelled,
    EventKind::Replaced,
    EventKind::Revoked,
];

/// One event in the ring: 24 bytes (the ring holds 32,768 by default, and every event of a
/// busy registry passes through it).
#[derive(Debug)]
struct Kept {
    seq: u64,
    reg: Arc<Registration>,
    /// Wall-clock milliseconds in the top 56 bits, the kind's index in [`KINDS`] below.
    at_and_kind: u64,
}

impl Kept {
    fn new(seq: u64, kind: EventKind, at_ms: u64, reg: Arc<Registration>) -> Self {
        // Exhaustive, so a new kind cannot be left out of `KINDS` unnoticed.
        let index: u64 = match kind {
            EventKind::Registered => 0,
            EventKind::Renewed => 1,
            EventKind::Expired => 2,
            EventKind::Cancelled => 3,
            EventKind::Replaced => 4,
            EventKind::Revoked => 5,
        };
        Self {
            seq,
            reg,
            at_and_kind: (at_ms.min((1 << 56) - 1) << 8) | index,
        }
    }

    fn record(&self, after: u64) -> EventRecord {
        EventRecord {
            seq: self.seq,
            after,
            kind: KINDS[(self.at_and_kind & 0xff) as usize % KINDS.len()],
            at_ms: self.at_and_kind >> 8,
            reg: self.reg.clone(),
        }
    }
}

/// The ring.
#[derive(Debug)]
pub struct EventRing {
    ring: VecDeque<Kept>,
    capacity: usize,
    next_seq: u64,
    reserved: u64,
    /// Every event numbered from here on is kept.
    floor: u64,
    /// Numbers are given (a cluster's): one beyond the next is a subscriber that came
    /// from a node further along, not one asking for new events only.
    given: bool,
}

impl EventRing {
    /// A ring whose next sequence number is `start_seq` (at least 1), with `reserved` the
    /// durably reserved mark, keeping `capacity` recent events. Events before `start_seq`
    /// count as missed (a restarted registry), unless `start_seq` is 1.
    pub fn new(start_seq: u64, reserved: u64, capacity: usize) -> Self {
        let start_seq = start_seq.max(1);
        Self {
            ring: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            next_seq: start_seq,
            reserved: reserved.max(start_seq),
            floor: start_seq,
            given: false,
        }
    }

    /// A ring whose events come with their numbers ([`EventRing::push_at`]), from
    /// `from_seq` on, keeping `capacity` recent events.
    pub fn given(from_seq: u64, capacity: usize) -> Self {
        Self {
            given: true,
            ..Self::new(from_seq, u64::MAX, capacity)
        }
    }

    /// The number the next event gets (locally), or the lowest it may get (given).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Numbers below this are durably reserved.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Raises the reserved mark (after the store made it durable).
    pub fn set_reserved(&mut self, reserved: u64) {
        self.reserved = self.reserved.max(reserved);
    }

    /// The oldest sequence number still kept: every event numbered from here on is.
    pub fn kept_from(&self) -> u64 {
        self.floor
    }

    /// How many events can still be numbered without a new reservation.
    pub fn headroom(&self) -> u64 {
        self.reserved.saturating_sub(self.next_seq)
    }

    /// Records an event under the next number; returns it. The caller makes sure
    /// [`EventRing::headroom`] is not zero first.
    pub fn push(&mut self, kind: EventKind, at_ms: u64, reg: Arc<Registration>) -> u64 {
        let seq = self.next_seq;
        self.keep(Kept::new(seq, kind, at_ms, reg));
        seq
    }

    /// Records an event under the number `seq` it was given; `false` (and nothing kept)
    /// when `seq` is below [`EventRing::next_seq`] (given already, or skipped).
    pub fn push_at(
        &mut self,
        seq: u64,
        kind: EventKind,
        at_ms: u64,
        reg: Arc<Registration>,
    ) -> bool {
        if seq < self.next_seq {
            return false;
        }
        self.keep(Kept::new(seq, kind, at_ms, reg));
        true
    }

    /// Gives up the numbers below `seq` (events between that this ring never had, such as
    /// those a follower could not read): a subscriber asking for them hears they are
    /// missed.
    pub fn skip_to(&mut self, seq: u64) {
        if seq > self.next_seq {
            self.next_seq = seq;
            self.ring.clear();
            self.floor = seq;
        }
    }

    fn keep(&mut self, kept: Kept) {
        self.next_seq = kept.seq + 1;
        if self.ring.len() == self.capacity
            && let Some(gone) = self.ring.pop_front()
        {
            self.floor = gone.seq + 1;
        }
        self.ring.push_back(kept);
    }

    /// The place in the ring of the first event numbered `from` or later.
    fn position(&self, from: u64) -> usize {
        self.ring.partition_point(|k| k.seq < from)
    }

    /// Where the event at `index` follows on from.
    fn after(&self, index: usize) -> u64 {
        match index.checked_sub(1).and_then(|i| self.ring.get(i)) {
            Some(prev) => prev.seq + 1,
            None => self.floor,
        }
    }

    /// Events from `from_seq` on that match `filter`, at most `max`, and the sequence number
    /// to continue from. `missed` is set when events at or after `from_seq` are no longer kept.
    /// A `from_seq` beyond the next sequence number asks for new events only (`u64::MAX`
    /// always); with given numbers, any other such `from_seq` is where a subscriber that
    /// came from a node further along goes on from: nothing before it is sent again.
    pub fn since(&self, from_seq: u64, filter: Option<&str>, max: usize) -> (EventBatch, u64) {
        if self.given && from_seq != u64::MAX && from_seq > self.next_seq {
            let batch = EventBatch {
                events: Vec::new(),
                missed: None,
            };
            return (batch, from_seq);
        }
        let from = from_seq.clamp(1, self.next_seq());
        let missed = (from < self.floor).then_some((from, self.floor));
        let mut events = Vec::new();
        let mut next = self.next_seq;
        for kept in self.ring.iter().skip(self.position(from)) {
            if events.len() == max {
                next = kept.seq;
                break;
            }
            let rec = kept.record(0);
            if rec.matches(filter) {
                events.push(rec.to_wire());
            }
        }
        (EventBatch { events, missed }, next)
    }

    /// The events still kept from `from_seq` on, oldest first (those pushed by a change
    /// are fanned out from here to live subscribers; a subscriber that sees it missed one
    /// reads the ring again, which reports what is gone).
    pub fn records_from(&self, from_seq: u64) -> impl Iterator<Item = EventRecord> + '_ {
        let start = self.position(from_seq);
        let mut after = self.after(start);
        self.ring.iter().skip(start).map(move |kept| {
            let rec = kept.record(after);
            after = kept.seq + 1;
            rec
        })
    }

    /// Number of events held in the ring.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::catalog::{Catalog, tests::manifest};

    fn regs() -> (Arc<Registration>, Arc<Registration>) {
        let mut c = Catalog::new();
        let a = c
            .insert(
                LeaseId([1; 16]),
                &manifest(
                    "a/echo",
                    1,
                    "1.0.0",
                    &[("courier:echo/echo@0.1.0", &["say"])],
                ),
                crate::core::lease_table::Millis(1),
            )
            .unwrap();
        let b = c
            .insert(
                LeaseId([2; 16]),
                &manifest("b/kv", 2, "1.0.0", &[("courier:kv/store@0.1.0", &["get"])]),
                crate::core::lease_table::Millis(1),
            )
            .unwrap();
        (a, b)
    }

    #[test]
    fn a_kept_event_is_24_bytes_and_keeps_its_kind_and_time() {
        assert_eq!(std::mem::size_of::<Kept>(), 24);
        let (a, _) = regs();
        for kind in KINDS {
            let rec = Kept::new(7, kind, 1_764_000_000_123, a.clone()).record(7);
            assert_eq!((rec.seq, rec.kind, rec.at_ms), (7, kind, 1_764_000_000_123));
        }
    }

    #[test]
    fn sequence_filter_and_missed() {
        let (a, b) = regs();
        let mut log = EventRing::new(1, 1000, 4);
        assert_eq!(log.push(EventKind::Registered, 10, a.clone()), 1);
        assert_eq!(log.push(EventKind::Registered, 11, b.clone()), 2);
        assert_eq!(log.push(EventKind::Renewed, 12, a.clone()), 3);
        let (batch, next) = log.since(0, None, 100);
        assert_eq!(
            batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(batch.missed, None);
        assert_eq!(next, 4);
        let (batch, _) = log.since(2, Some("courier:echo/echo"), 100);
        assert_eq!(
            batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(batch.events[0].name, "a/echo");
        assert_eq!(
            batch.events[0].interfaces,
            vec!["courier:echo/echo@0.1.0".to_string()]
        );
        // Overflow the ring: 1 and 2 drop out.
        log.push(EventKind::Renewed, 13, a.clone());
        log.push(EventKind::Expired, 14, b.clone());
        log.push(EventKind::Cancelled, 15, a.clone());
        let (batch, next) = log.since(1, None, 100);
        assert_eq!(batch.missed, Some((1, 3)));
        assert_eq!(
            batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        assert_eq!(next, 7);
        // Asking from the future means "new events only": nothing now, nothing missed, and
        // the point to go on from is the next event, so live events are not skipped.
        for future in [50, u64::MAX] {
            let (batch, next) = log.since(future, None, 100);
            assert!(batch.events.is_empty() && batch.missed.is_none());
            assert_eq!(next, 7);
        }
        // A cap on the batch size gives the point to go on from.
        let (batch, next) = log.since(3, None, 2);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(next, 5);
    }

    #[test]
    fn restarted_ring_reports_the_lost_past_and_gives_new_records() {
        let (a, b) = regs();
        let mut log = EventRing::new(5000, 6000, 2);
        let (batch, _) = log.since(10, None, 100);
        assert_eq!(batch.missed, Some((10, 5000)));
        assert_eq!(log.push(EventKind::Renewed, 1, a.clone()), 5000);
        let new: Vec<u64> = log.records_from(5000).map(|r| r.seq).collect();
        assert_eq!(new, vec![5000]);
        assert_eq!(log.headroom(), 999);
        // Records no longer kept are skipped: the first one given says where the ring starts.
        log.push(EventKind::Renewed, 2, b);
        log.push(EventKind::Expired, 3, a);
        let kept: Vec<(u64, EventKind)> = log.records_from(5000).map(|r| (r.seq, r.kind)).collect();
        assert_eq!(
            kept,
            vec![(5001, EventKind::Renewed), (5002, EventKind::Expired)]
        );
    }

    #[test]
    fn given_numbers_have_holes_that_are_not_missed_events() {
        let (a, b) = regs();
        let mut log = EventRing::given(100, 3);
        assert!(log.push_at(105, EventKind::Registered, 1, a.clone()));
        assert!(log.push_at(110, EventKind::Registered, 2, b.clone()));
        assert!(
            !log.push_at(110, EventKind::Renewed, 3, b.clone()),
            "numbered already"
        );
        assert!(
            !log.push_at(7, EventKind::Renewed, 3, b.clone()),
            "before the ring"
        );
        assert_eq!(log.next_seq(), 111);
        // From anywhere in a hole: the next event on, nothing missed.
        for from in [100, 101, 105] {
            let (batch, next) = log.since(from, None, 100);
            assert_eq!(batch.missed, None);
            assert_eq!(batch.events.len(), 2);
            assert_eq!(next, 111);
        }
        let (batch, next) = log.since(106, None, 100);
        assert_eq!(
            batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![110]
        );
        assert_eq!(next, 111);
        // Capped: go on from the first event not sent.
        let (batch, next) = log.since(0, None, 1);
        assert_eq!((batch.events.len(), next), (1, 110));
        // Each record says where its predecessor ended: a subscriber at 106 takes 110 as
        // the next one; one still at 103 missed 105.
        let recs: Vec<(u64, u64)> = log.records_from(0).map(|r| (r.seq, r.after)).collect();
        assert_eq!(recs, vec![(105, 100), (110, 106)]);
        // Overflow: the floor is one past what dropped out.
        log.push_at(120, EventKind::Renewed, 4, a.clone());
        log.push_at(121, EventKind::Renewed, 5, a.clone());
        assert_eq!(log.kept_from(), 106);
        assert_eq!(log.since(101, None, 100).0.missed, Some((101, 106)));
        assert_eq!(log.records_from(0).next().map(|r| r.after), Some(106));
        // A subscriber that came from a node further along goes on from where it was;
        // asking for new events only still means the next one here.
        let (batch, next) = log.since(130, None, 100);
        assert!(batch.events.is_empty() && batch.missed.is_none());
        assert_eq!(next, 130);
        assert_eq!(log.since(u64::MAX, None, 100).1, 122);
        // A stretch of history that could not be read: everything before it is missed.
        log.skip_to(500);
        assert!(log.is_empty());
        assert_eq!(log.since(122, None, 100).0.missed, Some((122, 500)));
        assert_eq!(log.next_seq(), 500);
        assert!(log.push_at(503, EventKind::Expired, 6, b));
        assert_eq!(log.records_from(0).map(|r| r.after).next(), Some(500));
    }
}
