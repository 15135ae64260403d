//! The event ring: every change to a registration gets a strictly increasing sequence
//! number, and recent events stay in a bounded ring for subscribers that ask from a given
//! sequence number. Pure: the driver fans new events out to live subscribers itself
//! ([`EventRing::records_from`] after each change).
//!
//! Sequence numbers stay strictly increasing across restarts: the registry durably reserves
//! a block of numbers ahead (the store's high-water mark) and a restarted registry starts
//! at the reserved mark, so no number is ever used twice (unused ones are skipped). The ring
//! holds a contiguous run of sequence numbers `[kept_from, next_seq)`; asking for anything
//! older answers with `missed: Some((from, kept_from))`.

use crate::core::catalog::Registration;
use courier_protocol::{Event, EventBatch, EventKind, LeaseId};
use std::collections::VecDeque;
use std::sync::Arc;

/// One event as the registry keeps it: the registration is shared, not copied.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Sequence number.
    pub seq: u64,
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

/// One event in the ring: 16 bytes (the ring holds 32,768 by default, and every event of a
/// busy registry passes through it). Its number is its place: the ring holds consecutive
/// numbers from `kept_from`.
#[derive(Debug)]
struct Kept {
    reg: Arc<Registration>,
    /// Wall-clock milliseconds in the top 56 bits, the kind's index in [`KINDS`] below.
    at_and_kind: u64,
}

impl Kept {
    fn new(kind: EventKind, at_ms: u64, reg: Arc<Registration>) -> Self {
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
            reg,
            at_and_kind: (at_ms.min((1 << 56) - 1) << 8) | index,
        }
    }

    fn record(&self, seq: u64) -> EventRecord {
        EventRecord {
            seq,
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
    kept_from: u64,
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
            kept_from: start_seq,
        }
    }

    /// The number the next event gets.
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

    /// The oldest sequence number still kept.
    pub fn kept_from(&self) -> u64 {
        self.kept_from
    }

    /// How many events can still be numbered without a new reservation.
    pub fn headroom(&self) -> u64 {
        self.reserved.saturating_sub(self.next_seq)
    }

    /// Records an event; returns its sequence number. The caller makes sure
    /// [`EventRing::headroom`] is not zero first.
    pub fn push(&mut self, kind: EventKind, at_ms: u64, reg: Arc<Registration>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.ring.len() == self.capacity && self.ring.pop_front().is_some() {
            self.kept_from += 1;
        }
        self.ring.push_back(Kept::new(kind, at_ms, reg));
        seq
    }

    /// Events from `from_seq` on that match `filter`, at most `max`, and the sequence number
    /// to continue from. `missed` is set when events at or after `from_seq` are no longer kept.
    /// A `from_seq` beyond the next sequence number (e.g. `u64::MAX`) asks for new events only.
    pub fn since(&self, from_seq: u64, filter: Option<&str>, max: usize) -> (EventBatch, u64) {
        let from = from_seq.clamp(1, self.next_seq());
        let missed = (from < self.kept_from).then_some((from, self.kept_from));
        let start = from.max(self.kept_from);
        let mut events = Vec::new();
        let mut next = start;
        let skip = (start - self.kept_from) as usize;
        for (seq, kept) in (start..).zip(self.ring.iter().skip(skip)) {
            if events.len() == max {
                break;
            }
            next = seq + 1;
            let rec = kept.record(seq);
            if rec.matches(filter) {
                events.push(rec.to_wire());
            }
        }
        (EventBatch { events, missed }, next)
    }

    /// The events still kept from `from_seq` on, oldest first (those pushed by a change
    /// are fanned out from here to live subscribers; a subscriber that sees a gap in the
    /// numbers reads the ring again, which reports what is gone).
    pub fn records_from(&self, from_seq: u64) -> impl Iterator<Item = EventRecord> + '_ {
        let start = from_seq.max(self.kept_from);
        let skip = usize::try_from(start - self.kept_from).unwrap_or(usize::MAX);
        (start..)
            .zip(self.ring.iter().skip(skip))
            .map(|(seq, kept)| kept.record(seq))
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
    fn a_kept_event_is_16_bytes_and_keeps_its_kind_and_time() {
        assert_eq!(std::mem::size_of::<Kept>(), 16);
        let (a, _) = regs();
        for kind in KINDS {
            let rec = Kept::new(kind, 1_764_000_000_123, a.clone()).record(7);
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
}
