//! Fuzz target `lease_table`: arbitrary operation sequences (grant, renew, cancel, restore,
//! expire, time passing, including near the end of the clock) against a plain model of the
//! lease table's rules, under an arbitrary policy.
//!
//! The model follows the idea of the registry's proptest (`lease_table.rs`): a map of id to
//! deadline with the documented rules, written out naively. It also covers what that test
//! leaves out: `restore` and its grace period, renewal counts, the ordering of `expire` and
//! of its slices (`expire_at_most`),
//! policies whose maximum is below their minimum, and saturation at `u64::MAX`.
//!
//! Oracle: after every step the outcome, `len`, `next_deadline`, and each lease's state and
//! remaining time are the model's.

use arbitrary::{Arbitrary, Unstructured};
use courier_protocol::LeaseId;
use courier_registry::{
    LeaseChange, LeaseEntry, LeaseOp, LeasePolicy, LeaseTable, MAX_GRANTED_TTL_MS, Millis, Restore,
};
use std::collections::BTreeMap;

/// One step of a sequence. Ids are small so that steps meet the same leases.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Step {
    /// Time passes a little.
    Advance(u16),
    /// Time passes a lot (saturating at the end of the clock).
    Leap(u64),
    /// Grant a lease.
    Grant(u8, u64),
    /// Renew a lease.
    Renew(u8, u64),
    /// Cancel a lease.
    Cancel(u8),
    /// Bring a lease back after a restart: `Some(ms)` remaining, or lapsed.
    Restore(u8, Option<u64>, u64, u32),
    /// Collect expired leases: all of them, or at most this many (a slice, as the
    /// registry's expiry takes them).
    Expire(Option<u8>),
}

/// A whole case: the policy, where the clock starts, and the steps.
#[derive(Debug, Clone, Arbitrary)]
pub struct Case {
    /// Shortest granted duration.
    pub min_ttl_ms: u32,
    /// Longest granted duration (may be below the minimum).
    pub max_ttl_ms: u32,
    /// Grace after a restart.
    pub grace_ms: u32,
    /// The clock's starting point.
    pub start: u64,
    /// What happens.
    pub steps: Vec<Step>,
}

/// The lease id for a small number. The first eight bytes (what the table's hasher mostly
/// sees) repeat every four ids, so buckets collide.
pub fn lease_id(n: u8) -> LeaseId {
    let n = n % 32;
    let mut bytes = [n; 16];
    bytes[..8].fill(n % 4);
    LeaseId(bytes)
}

/// The model: every rule of the table, spelled out.
#[derive(Debug, Default)]
struct Model {
    min: u64,
    max: u64,
    grace: u64,
    leases: BTreeMap<LeaseId, LeaseEntry>,
}

impl Model {
    fn granted(&self, requested: u64) -> u64 {
        let top = if self.max < self.min {
            self.min
        } else {
            self.max
        };
        let granted = if requested < self.min {
            self.min
        } else if requested > top {
            top
        } else {
            requested
        };
        // Durations are kept in 32 bits of milliseconds.
        granted.min(courier_registry::MAX_GRANTED_TTL_MS)
    }

    fn live(&self, id: &LeaseId, now: u64) -> bool {
        self.leases.get(id).is_some_and(|s| s.deadline.0 > now)
    }
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    if let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(data)) {
        check(&case);
    }
}

/// Plays a case on the table and the model and compares them after every step.
pub fn check(case: &Case) {
    let policy = LeasePolicy {
        min_ttl_ms: case.min_ttl_ms.into(),
        max_ttl_ms: case.max_ttl_ms.into(),
        grace_ms: case.grace_ms.into(),
    };
    let mut table = LeaseTable::new(policy);
    let mut model = Model {
        min: policy.min_ttl_ms,
        max: policy.max_ttl_ms,
        grace: policy.grace_ms,
        leases: BTreeMap::new(),
    };
    let mut now = case.start;
    for (i, step) in case.steps.iter().enumerate() {
        let at = Millis(now);
        match *step {
            Step::Advance(d) => now = now.saturating_add(d.into()),
            Step::Leap(d) => now = now.saturating_add(d),
            Step::Grant(n, ttl) => {
                let id = lease_id(n);
                let got = table.handle(at, LeaseOp::Grant { id, ttl_ms: ttl });
                let want = if model.leases.contains_key(&id) {
                    LeaseChange::Duplicate { id }
                } else {
                    let ttl_ms = model.granted(ttl);
                    let deadline = Millis(now.saturating_add(ttl_ms));
                    model
                        .leases
                        .insert(id, LeaseEntry::new(deadline, ttl_ms, 0, false));
                    LeaseChange::Granted {
                        id,
                        ttl_ms,
                        deadline,
                    }
                };
                assert_eq!(got, want, "step {i}: {step:?}");
            }
            Step::Renew(n, ttl) => {
                let id = lease_id(n);
                let got = table.handle(at, LeaseOp::Renew { id, ttl_ms: ttl });
                let want = if model.live(&id, now) {
                    let ttl_ms = model.granted(ttl);
                    let deadline = Millis(now.saturating_add(ttl_ms));
                    if let Some(s) = model.leases.get_mut(&id) {
                        *s = LeaseEntry::new(
                            deadline,
                            ttl_ms,
                            s.renewals().saturating_add(1),
                            false,
                        );
                    }
                    LeaseChange::Renewed {
                        id,
                        ttl_ms,
                        deadline,
                    }
                } else {
                    LeaseChange::Unknown { id }
                };
                assert_eq!(got, want, "step {i}: {step:?}");
            }
            Step::Cancel(n) => {
                let id = lease_id(n);
                let got = table.handle(at, LeaseOp::Cancel { id });
                let want = if model.live(&id, now) {
                    model.leases.remove(&id);
                    LeaseChange::Cancelled { id }
                } else {
                    LeaseChange::Unknown { id }
                };
                assert_eq!(got, want, "step {i}: {step:?}");
            }
            Step::Restore(n, remaining, ttl_ms, renewals) => {
                let id = lease_id(n);
                let how = match remaining {
                    Some(ms) => Restore::Remaining(ms),
                    None => Restore::Lapsed,
                };
                let got = table.restore(at, id, how, ttl_ms, renewals);
                let want = if model.leases.contains_key(&id) {
                    None
                } else {
                    let state = match remaining {
                        // Never more than the lease's last granted duration.
                        Some(ms) if ms != 0 => LeaseEntry::new(
                            Millis(now.saturating_add(ms.min(ttl_ms.clamp(1, MAX_GRANTED_TTL_MS)))),
                            ttl_ms,
                            renewals,
                            false,
                        ),
                        _ => LeaseEntry::new(
                            Millis(now.saturating_add(model.grace)),
                            ttl_ms,
                            renewals,
                            true,
                        ),
                    };
                    model.leases.insert(id, state);
                    Some(state)
                };
                assert_eq!(got, want, "step {i}: {step:?}");
            }
            Step::Expire(slice) => {
                let max = slice.map_or(usize::MAX, usize::from);
                let got = match slice {
                    None => table.expire(at),
                    Some(_) => table.expire_at_most(at, max),
                };
                let mut due: Vec<(Millis, LeaseId)> = model
                    .leases
                    .iter()
                    .filter(|(_, s)| s.deadline.0 <= now)
                    .map(|(id, s)| (s.deadline, *id))
                    .collect();
                due.sort();
                due.truncate(max);
                for (_, id) in &due {
                    model.leases.remove(id);
                }
                let want: Vec<LeaseId> = due.into_iter().map(|(_, id)| id).collect();
                assert_eq!(got, want, "step {i}: expire at {now}, at most {slice:?}");
            }
        }
        assert_eq!(table.len(), model.leases.len(), "step {i}: len");
        assert_eq!(table.is_empty(), model.leases.is_empty(), "step {i}");
        assert_eq!(
            table.next_deadline(),
            model.leases.values().map(|s| s.deadline).min(),
            "step {i}: next_deadline"
        );
        for (id, state) in &model.leases {
            assert_eq!(table.get(id), Some(state), "step {i}: state of {id}");
            let left = (state.deadline.0 > now).then(|| state.deadline.0 - now);
            assert_eq!(
                table.remaining(id, Millis(now)),
                left,
                "step {i}: remaining of {id}"
            );
        }
        assert_eq!(table.iter().count(), model.leases.len(), "step {i}: iter");
    }
}
