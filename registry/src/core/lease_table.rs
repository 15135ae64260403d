//! The lease table: pure and sans-IO. It never reads a clock and does no IO; the caller
//! passes `now` (a monotonic [`Millis`]) into every call and acts on what comes back.
//!
//! A lease is live while `now < deadline`. Once its deadline has passed it is dead for every
//! operation at once (renew and cancel answer [`LeaseChange::Unknown`]), even before
//! [`LeaseTable::expire`] collects it and reports it expired.
//!
//! Deadlines are kept in an ordered set of `(deadline, id)`, so grant, renew, cancel and the
//! expiry of one lease are O(log n), and [`LeaseTable::next_deadline`] is O(log n). A storm
//! of leases due at once can be collected in slices ([`LeaseTable::expire_at_most`]): each
//! slice takes the next due leases off the front of that set, never rescanning the rest.
//!
//! Restart: [`LeaseTable::restore`] brings back a lease with the time it had left
//! ([`Restore::Remaining`]), or, when it ran out while the registry was down
//! ([`Restore::Lapsed`]), with one grace period of [`LeasePolicy::grace_ms`] to renew before it
//! expires; a lease that was in its grace period already keeps only what is left of it
//! ([`Restore::InGrace`]), so a restart never extends a grace. Neither comes back with more
//! time than its lease or its grace could have had left. A renewal ends the grace period.

use courier_protocol::LeaseId;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// A point on a monotonic clock, in milliseconds from an origin the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// How long leases last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasePolicy {
    /// Shortest granted duration; shorter requests are raised to it.
    pub min_ttl_ms: u64,
    /// Longest granted duration; longer requests are cut to it.
    pub max_ttl_ms: u64,
    /// After a restart, how long a lease that ran out while the registry was down has to
    /// renew before it expires.
    pub grace_ms: u64,
}

impl LeasePolicy {
    /// The granted duration for a requested one: clamped to `[min_ttl_ms, max_ttl_ms]`, and
    /// never above [`MAX_GRANTED_TTL_MS`].
    pub fn clamp(&self, requested_ms: u64) -> u64 {
        requested_ms
            .clamp(self.min_ttl_ms, self.max_ttl_ms.max(self.min_ttl_ms))
            .min(MAX_GRANTED_TTL_MS)
    }
}

/// An operation on the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOp {
    /// Creates a lease with a fresh id chosen by the caller.
    Grant {
        /// The new lease.
        id: LeaseId,
        /// Requested duration.
        ttl_ms: u64,
    },
    /// Extends a live lease to `now + clamp(ttl_ms)`.
    Renew {
        /// The lease.
        id: LeaseId,
        /// Requested duration.
        ttl_ms: u64,
    },
    /// Ends a live lease now.
    Cancel {
        /// The lease.
        id: LeaseId,
    },
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    /// The lease exists until `deadline`.
    Granted {
        /// The lease.
        id: LeaseId,
        /// The granted duration.
        ttl_ms: u64,
        /// When it runs out.
        deadline: Millis,
    },
    /// The lease now runs until `deadline`.
    Renewed {
        /// The lease.
        id: LeaseId,
        /// The granted duration.
        ttl_ms: u64,
        /// When it runs out.
        deadline: Millis,
    },
    /// The lease is gone.
    Cancelled {
        /// The lease.
        id: LeaseId,
    },
    /// No live lease with this id (never granted, cancelled, or past its deadline).
    Unknown {
        /// The lease asked for.
        id: LeaseId,
    },
    /// A grant reused an id that is still in the table; nothing changed.
    Duplicate {
        /// The id.
        id: LeaseId,
    },
}

/// How a lease comes back after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// It had this many milliseconds left: it keeps exactly them.
    Remaining(u64),
    /// It ran out while the registry was down: it gets one grace period.
    Lapsed,
    /// It was in its grace period, with this many milliseconds of it left: it keeps them
    /// (at most one grace period), still in grace.
    InGrace(u64),
}

/// Longest duration a lease can be granted: durations are kept in 32 bits of milliseconds
/// (about 49 days), which keeps a lease's state at 16 bytes.
pub const MAX_GRANTED_TTL_MS: u64 = u32::MAX as u64;

/// The grace flag, in the top bit of [`LeaseEntry`]'s renewal count.
const GRACE_BIT: u32 = 1 << 31;

/// One lease, as the table keeps it: 16 bytes (the table holds one per live lease, so every
/// byte here is 100 KB at 100,000 leases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseEntry {
    /// When it runs out.
    pub deadline: Millis,
    ttl_ms: u32,
    /// Renewals (low 31 bits, saturating) and the grace flag ([`GRACE_BIT`]).
    renewals_grace: u32,
}

impl LeaseEntry {
    /// A lease state; `ttl_ms` is cut to [`MAX_GRANTED_TTL_MS`], `renewals` saturates at
    /// 2^31 - 1.
    pub fn new(deadline: Millis, ttl_ms: u64, renewals: u32, in_grace: bool) -> Self {
        Self {
            deadline,
            ttl_ms: u32::try_from(ttl_ms).unwrap_or(u32::MAX),
            renewals_grace: renewals.min(GRACE_BIT - 1) | if in_grace { GRACE_BIT } else { 0 },
        }
    }

    /// The last granted duration.
    pub fn ttl_ms(&self) -> u64 {
        u64::from(self.ttl_ms)
    }

    /// Renewals so far (saturating).
    pub fn renewals(&self) -> u32 {
        self.renewals_grace & !GRACE_BIT
    }

    /// Whether it lives on the post-restart grace period.
    pub fn in_grace(&self) -> bool {
        self.renewals_grace & GRACE_BIT != 0
    }
}

/// A hasher for lease ids: they are 128 random bits chosen by the registry, so their first
/// eight bytes are already a uniform hash. Peers can ask about any id, but only the
/// registry's own random ids are ever inserted, so they cannot aim at one bucket.
#[derive(Default, Clone, Copy)]
pub struct LeaseIdHasher(u64);

impl Hasher for LeaseIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

/// A `HashMap` keyed by lease id with [`LeaseIdHasher`].
pub type LeaseMap<V> = HashMap<LeaseId, V, BuildHasherDefault<LeaseIdHasher>>;

/// The lease table.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    policy: LeasePolicy,
    leases: LeaseMap<LeaseEntry>,
    by_deadline: BTreeSet<(Millis, LeaseId)>,
}

impl LeaseTable {
    /// An empty table.
    pub fn new(policy: LeasePolicy) -> Self {
        Self {
            policy,
            leases: LeaseMap::default(),
            by_deadline: BTreeSet::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &LeasePolicy {
        &self.policy
    }

    /// Applies one operation at `now`.
    pub fn handle(&mut self, now: Millis, op: LeaseOp) -> LeaseChange {
        match op {
            LeaseOp::Grant { id, ttl_ms } => {
                if self.leases.contains_key(&id) {
                    return LeaseChange::Duplicate { id };
                }
                let ttl_ms = self.policy.clamp(ttl_ms);
                let deadline = now.plus(ttl_ms);
                self.insert(id, LeaseEntry::new(deadline, ttl_ms, 0, false));
                LeaseChange::Granted {
                    id,
                    ttl_ms,
                    deadline,
                }
            }
            LeaseOp::Renew { id, ttl_ms } => {
                let ttl_ms = self.policy.clamp(ttl_ms);
                let deadline = now.plus(ttl_ms);
                let Some(state) = self.leases.get_mut(&id) else {
                    return LeaseChange::Unknown { id };
                };
                if state.deadline <= now {
                    return LeaseChange::Unknown { id };
                }
                let old = state.deadline;
                *state =
                    LeaseEntry::new(deadline, ttl_ms, state.renewals().saturating_add(1), false);
                if old != deadline {
                    self.by_deadline.remove(&(old, id));
                    self.by_deadline.insert((deadline, id));
                }
                LeaseChange::Renewed {
                    id,
                    ttl_ms,
                    deadline,
                }
            }
            LeaseOp::Cancel { id } => match self.leases.get(&id) {
                Some(state) if state.deadline > now => {
                    let deadline = state.deadline;
                    self.leases.remove(&id);
                    self.by_deadline.remove(&(deadline, id));
                    LeaseChange::Cancelled { id }
                }
                _ => LeaseChange::Unknown { id },
            },
        }
    }

    /// Brings back a lease after a restart (see the module docs). `ttl_ms` and `renewals`
    /// are what the lease had. Returns its new state, or `None` if the id is already there.
    pub fn restore(
        &mut self,
        now: Millis,
        id: LeaseId,
        how: Restore,
        ttl_ms: u64,
        renewals: u32,
    ) -> Option<LeaseEntry> {
        if self.leases.contains_key(&id) {
            return None;
        }
        // Never more than the lease or its grace could have had left (a wall clock that
        // stepped back while the registry was down must not extend either).
        let state = match how {
            Restore::Remaining(ms) if ms > 0 => {
                let ms = ms.min(ttl_ms.clamp(1, MAX_GRANTED_TTL_MS));
                LeaseEntry::new(now.plus(ms), ttl_ms, renewals, false)
            }
            Restore::Remaining(_) | Restore::Lapsed => {
                LeaseEntry::new(now.plus(self.policy.grace_ms), ttl_ms, renewals, true)
            }
            Restore::InGrace(ms) => {
                let ms = ms.min(self.policy.grace_ms);
                LeaseEntry::new(now.plus(ms), ttl_ms, renewals, true)
            }
        };
        self.insert(id, state);
        Some(state)
    }

    /// The earliest deadline in the table, if any.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    /// Removes every lease whose deadline is at or before `now` and returns their ids,
    /// earliest deadline first.
    pub fn expire(&mut self, now: Millis) -> Vec<LeaseId> {
        self.expire_at_most(now, usize::MAX)
    }

    /// [`LeaseTable::expire`], but at most `max` leases: the earliest due ones, earliest
    /// deadline first. The rest stay for a later call, which finds them at the front of the
    /// deadline index (O(log n) each, whatever is left).
    pub fn expire_at_most(&mut self, now: Millis, max: usize) -> Vec<LeaseId> {
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.by_deadline.first() {
            if deadline > now || out.len() >= max {
                break;
            }
            self.by_deadline.pop_first();
            self.leases.remove(&id);
            out.push(id);
        }
        out
    }

    /// Removes a lease whatever its deadline (it is being replaced, revoked, or was cancelled
    /// after a durable commit); returns what it was.
    pub fn remove(&mut self, id: &LeaseId) -> Option<LeaseEntry> {
        let entry = self.leases.remove(id)?;
        self.by_deadline.remove(&(entry.deadline, *id));
        Some(entry)
    }

    /// The lease's state, live or not yet collected.
    pub fn get(&self, id: &LeaseId) -> Option<&LeaseEntry> {
        self.leases.get(id)
    }

    /// Milliseconds the lease has left at `now`; `None` when it is unknown or dead.
    pub fn remaining(&self, id: &LeaseId, now: Millis) -> Option<u64> {
        self.leases
            .get(id)
            .filter(|s| s.deadline > now)
            .map(|s| s.deadline.since(now))
    }

    /// Number of leases held (live or not yet collected).
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Every lease with its state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&LeaseId, &LeaseEntry)> {
        self.leases.iter()
    }

    fn insert(&mut self, id: LeaseId, state: LeaseEntry) {
        self.by_deadline.insert((state.deadline, id));
        self.leases.insert(id, state);
    }
}

#[cfg(test)]
mod slicing;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::map_entry)]
    use super::*;
    use proptest::prelude::*;

    const POLICY: LeasePolicy = LeasePolicy {
        min_ttl_ms: 1_000,
        max_ttl_ms: 60_000,
        grace_ms: 11_000,
    };

    fn id(n: u8) -> LeaseId {
        LeaseId([n; 16])
    }

    #[test]
    fn grant_clamps_and_expires_on_time() {
        let mut t = LeaseTable::new(POLICY);
        let now = Millis(100);
        assert_eq!(
            t.handle(
                now,
                LeaseOp::Grant {
                    id: id(1),
                    ttl_ms: 10
                }
            ),
            LeaseChange::Granted {
                id: id(1),
                ttl_ms: 1_000,
                deadline: Millis(1_100)
            }
        );
        assert_eq!(
            t.handle(
                now,
                LeaseOp::Grant {
                    id: id(2),
                    ttl_ms: 999_999
                }
            ),
            LeaseChange::Granted {
                id: id(2),
                ttl_ms: 60_000,
                deadline: Millis(60_100)
            }
        );
        assert_eq!(
            t.handle(
                now,
                LeaseOp::Grant {
                    id: id(3),
                    ttl_ms: 5_000
                }
            ),
            LeaseChange::Granted {
                id: id(3),
                ttl_ms: 5_000,
                deadline: Millis(5_100)
            }
        );
        assert_eq!(
            t.handle(
                now,
                LeaseOp::Grant {
                    id: id(3),
                    ttl_ms: 5_000
                }
            ),
            LeaseChange::Duplicate { id: id(3) }
        );
        assert_eq!(t.next_deadline(), Some(Millis(1_100)));
        assert!(t.expire(Millis(1_099)).is_empty());
        assert_eq!(t.remaining(&id(1), Millis(1_099)), Some(1));
        // At the deadline the lease is dead for every purpose, collected or not.
        assert_eq!(t.remaining(&id(1), Millis(1_100)), None);
        assert_eq!(
            t.handle(
                Millis(1_100),
                LeaseOp::Renew {
                    id: id(1),
                    ttl_ms: 1_000
                }
            ),
            LeaseChange::Unknown { id: id(1) }
        );
        assert_eq!(t.expire(Millis(6_000)), vec![id(1), id(3)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_deadline(), Some(Millis(60_100)));
    }

    #[test]
    fn renew_moves_the_deadline_and_counts() {
        let mut t = LeaseTable::new(POLICY);
        t.handle(
            Millis(0),
            LeaseOp::Grant {
                id: id(1),
                ttl_ms: 2_000,
            },
        );
        assert_eq!(
            t.handle(
                Millis(1_500),
                LeaseOp::Renew {
                    id: id(1),
                    ttl_ms: 2_000
                }
            ),
            LeaseChange::Renewed {
                id: id(1),
                ttl_ms: 2_000,
                deadline: Millis(3_500)
            }
        );
        assert!(t.expire(Millis(2_000)).is_empty());
        // A shorter renewal may bring the deadline forward.
        assert_eq!(
            t.handle(
                Millis(2_000),
                LeaseOp::Renew {
                    id: id(1),
                    ttl_ms: 1
                }
            ),
            LeaseChange::Renewed {
                id: id(1),
                ttl_ms: 1_000,
                deadline: Millis(3_000)
            }
        );
        assert_eq!(t.next_deadline(), Some(Millis(3_000)));
        assert_eq!(t.get(&id(1)).unwrap().renewals(), 2);
        assert_eq!(
            t.handle(
                Millis(0),
                LeaseOp::Renew {
                    id: id(9),
                    ttl_ms: 1
                }
            ),
            LeaseChange::Unknown { id: id(9) }
        );
        assert_eq!(t.expire(Millis(3_000)), vec![id(1)]);
    }

    #[test]
    fn cancel_removes_at_once() {
        let mut t = LeaseTable::new(POLICY);
        t.handle(
            Millis(0),
            LeaseOp::Grant {
                id: id(1),
                ttl_ms: 5_000,
            },
        );
        assert_eq!(
            t.handle(Millis(10), LeaseOp::Cancel { id: id(1) }),
            LeaseChange::Cancelled { id: id(1) }
        );
        assert_eq!(
            t.handle(Millis(10), LeaseOp::Cancel { id: id(1) }),
            LeaseChange::Unknown { id: id(1) }
        );
        assert_eq!(t.next_deadline(), None);
        assert!(t.expire(Millis(10_000)).is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn state_is_16_bytes_and_saturates() {
        assert_eq!(std::mem::size_of::<LeaseEntry>(), 16);
        let s = LeaseEntry::new(Millis(1), u64::MAX, u32::MAX, true);
        assert_eq!(s.ttl_ms(), MAX_GRANTED_TTL_MS);
        assert_eq!(s.renewals(), (1 << 31) - 1);
        assert!(s.in_grace());
        let s = LeaseEntry::new(Millis(1), 5, 3, false);
        assert_eq!((s.ttl_ms(), s.renewals(), s.in_grace()), (5, 3, false));
    }

    #[test]
    fn restore_keeps_remaining_time_and_gives_lapsed_one_grace() {
        let mut t = LeaseTable::new(POLICY);
        let now = Millis(50);
        let kept = t
            .restore(now, id(1), Restore::Remaining(4_000), 30_000, 7)
            .unwrap();
        assert_eq!(kept, LeaseEntry::new(Millis(4_050), 30_000, 7, false));
        let lapsed = t.restore(now, id(2), Restore::Lapsed, 30_000, 0).unwrap();
        assert_eq!(lapsed, LeaseEntry::new(Millis(11_050), 30_000, 0, true));
        assert!(t.restore(now, id(2), Restore::Lapsed, 1, 0).is_none());
        // A lease in grace keeps what is left of its grace, still in grace.
        let graced = t
            .restore(now, id(4), Restore::InGrace(2_000), 30_000, 1)
            .unwrap();
        assert_eq!(graced, LeaseEntry::new(Millis(2_050), 30_000, 1, true));
        // Never more than the lease's duration or the grace (a clock that stepped back).
        let capped = t
            .restore(now, id(5), Restore::Remaining(90_000), 30_000, 0)
            .unwrap();
        assert_eq!(capped.deadline, Millis(30_050));
        let capped = t
            .restore(now, id(6), Restore::InGrace(90_000), 30_000, 0)
            .unwrap();
        assert_eq!(capped.deadline, Millis(11_050));
        // Zero remaining counts as lapsed.
        assert!(
            t.restore(now, id(3), Restore::Remaining(0), 1_000, 0)
                .unwrap()
                .in_grace()
        );
        // A renewal during grace ends it.
        let out = t.handle(
            Millis(5_000),
            LeaseOp::Renew {
                id: id(2),
                ttl_ms: 20_000,
            },
        );
        assert_eq!(
            out,
            LeaseChange::Renewed {
                id: id(2),
                ttl_ms: 20_000,
                deadline: Millis(25_000)
            }
        );
        assert!(!t.get(&id(2)).unwrap().in_grace());
        // The one that did not renew expires when its grace ends, not before.
        assert_eq!(t.expire(Millis(11_049)), vec![id(4), id(1)]);
        assert_eq!(t.expire(Millis(11_050)), vec![id(3), id(6)]);
        assert_eq!(t.len(), 2);
    }

    #[derive(Debug, Clone)]
    enum ModelOp {
        Advance(u64),
        Grant(u8, u64),
        Renew(u8, u64),
        Cancel(u8),
        Expire,
    }

    fn model_op() -> impl Strategy<Value = ModelOp> {
        prop_oneof![
            (0u64..3_000).prop_map(ModelOp::Advance),
            (0u8..12, 0u64..100_000).prop_map(|(i, t)| ModelOp::Grant(i, t)),
            (0u8..12, 0u64..100_000).prop_map(|(i, t)| ModelOp::Renew(i, t)),
            (0u8..12).prop_map(ModelOp::Cancel),
            Just(ModelOp::Expire),
        ]
    }

    proptest! {
        /// The table against a plain map with the same rules.
        #[test]
        fn matches_a_simple_model(ops in proptest::collection::vec(model_op(), 1..200)) {
            let mut t = LeaseTable::new(POLICY);
            let mut model: HashMap<LeaseId, (u64, u64)> = HashMap::new();
            let mut now = 0u64;
            let clamp = |x: u64| x.clamp(POLICY.min_ttl_ms, POLICY.max_ttl_ms);
            for op in ops {
                match op {
                    ModelOp::Advance(d) => now += d,
                    ModelOp::Grant(i, ttl) => {
                        let got = t.handle(Millis(now), LeaseOp::Grant { id: id(i), ttl_ms: ttl });
                        let want = if model.contains_key(&id(i)) {
                            LeaseChange::Duplicate { id: id(i) }
                        } else {
                            model.insert(id(i), (now + clamp(ttl), clamp(ttl)));
                            LeaseChange::Granted { id: id(i), ttl_ms: clamp(ttl), deadline: Millis(now + clamp(ttl)) }
                        };
                        prop_assert_eq!(got, want);
                    }
                    ModelOp::Renew(i, ttl) => {
                        let got = t.handle(Millis(now), LeaseOp::Renew { id: id(i), ttl_ms: ttl });
                        let want = match model.get_mut(&id(i)) {
                            Some(e) if e.0 > now => {
                                *e = (now + clamp(ttl), clamp(ttl));
                                LeaseChange::Renewed { id: id(i), ttl_ms: clamp(ttl), deadline: Millis(now + clamp(ttl)) }
                            }
                            _ => LeaseChange::Unknown { id: id(i) },
                        };
                        prop_assert_eq!(got, want);
                    }
                    ModelOp::Cancel(i) => {
                        let got = t.handle(Millis(now), LeaseOp::Cancel { id: id(i) });
                        let want = match model.get(&id(i)) {
                            Some(e) if e.0 > now => {
                                model.remove(&id(i));
                                LeaseChange::Cancelled { id: id(i) }
                            }
                            _ => LeaseChange::Unknown { id: id(i) },
                        };
                        prop_assert_eq!(got, want);
                    }
                    ModelOp::Expire => {
                        let mut got = t.expire(Millis(now));
                        let mut want: Vec<LeaseId> =
                            model.iter().filter(|(_, e)| e.0 <= now).map(|(k, _)| *k).collect();
                        model.retain(|_, e| e.0 > now);
                        got.sort();
                        want.sort();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert_eq!(t.next_deadline(), model.values().map(|e| Millis(e.0)).min());
                for (k, e) in &model {
                    let want = (e.0 > now).then(|| e.0 - now);
                    prop_assert_eq!(t.remaining(k, Millis(now)), want);
                }
            }
        }
    }
}
