//! Expiry in slices: the due leases leave at most [`EXPIRY_SLICE`] at a time, each slice
//! under its own hold of the state lock and a pause of 1 ms after it, so a storm of leases
//! due in the same millisecond never holds lookups (which take the same lock) for longer
//! than one slice.
//!
//! Expiry is in memory only (the flush deletes the rows behind), so a slice commits
//! nothing; each expired lease gets its `Expired` event in the slice that collects it, in
//! deadline order, and a lease renewed between slices is judged by its new deadline.

use super::Registry;
use crate::core::lease_table::Millis;
use crate::core::state::NoHeadroom;
use courier_protocol::LeaseId;
use std::time::{Duration, Instant};

/// Most leases one slice collects under the state lock. A lease costs about 3 µs there
/// (catalog, event, fan-out: 100,000 in one step held it for 0.34 s), so a slice holds it
/// for about 1 ms, well under the 5 ms a lookup may wait; with the 1 ms pause between
/// slices, 100,000 leases go in about 0.85 s.
pub const EXPIRY_SLICE: usize = 250;

/// Leases named one by one in the log when an expiry collects fewer; above, only a count.
const LOGGED_BY_ID: usize = 16;

/// What one expiry has collected so far, over its slices.
#[derive(Debug, Default)]
struct Storm {
    /// Leases expired.
    total: usize,
    /// Slices taken (each under its own lock).
    slices: usize,
    /// The first leases expired, to name in the log.
    named: Vec<LeaseId>,
    /// The longest a slice held the state lock (with the wait to take it).
    longest: Duration,
}

impl Storm {
    /// Logs what was collected (as a single step did: each lease, or a count) and returns
    /// how many.
    fn finish(self) -> usize {
        if self.total < LOGGED_BY_ID {
            for id in &self.named {
                tracing::info!(lease = %id, "expired");
            }
        } else {
            tracing::info!(
                count = self.total,
                slices = self.slices,
                longest_slice_us = self.longest.as_micros() as u64,
                "leases expired"
            );
        }
        self.total
    }
}

impl Registry {
    /// Collects every lease whose deadline is at or before `now`: they leave the catalog,
    /// get an `Expired` event, and are deleted from the store by the next flush. Memory
    /// only, in slices of at most [`EXPIRY_SLICE`] with the state lock let go between
    /// them. [`NoHeadroom`] asks for [`Registry::reserve_events`] first (if numbers run out
    /// after some slices, what they collected is returned and the rest stays due). Returns
    /// how many expired.
    pub fn expire(&self, now: Millis) -> Result<usize, NoHeadroom> {
        let mut storm = Storm::default();
        while self.expire_slice(&mut storm, now)? {}
        Ok(storm.finish())
    }

    /// [`Registry::expire`] from the runtime: each slice at the time it starts, with a
    /// yield to the runtime between slices, so lookups waiting for the state lock (and the
    /// tasks sharing this worker) get in; it returns once nothing is due.
    pub async fn expire_due(&self) -> Result<usize, NoHeadroom> {
        let mut storm = Storm::default();
        while self.expire_slice(&mut storm, self.now())? {
            // A pause, not a yield: the state lock is not fair, and a task that only yields
            // takes it again before a lookup parked on it wakes up, so lookups would wait
            // for many slices (77 ms in the storm benchmark). 1 ms per slice lets every
            // waiting lookup in; 100,000 leases still go within half a second.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(storm.finish())
    }

    /// One slice at `now`, added to `storm`; whether more leases are due. Out of event
    /// numbers, the first slice refuses and a later one ends the storm where it is.
    fn expire_slice(&self, storm: &mut Storm, now: Millis) -> Result<bool, NoHeadroom> {
        let started = Instant::now();
        let slice = self.with_state(|st| {
            let ids = st.expire_at_most(now, EXPIRY_SLICE)?;
            Ok((ids, st.is_due(now)))
        });
        let held = started.elapsed();
        storm.longest = storm.longest.max(held);
        let (ids, more) = match slice {
            Ok(slice) => slice,
            Err(NoHeadroom) if storm.slices > 0 => return Ok(false),
            Err(e) => return Err(e),
        };
        tracing::debug!(
            expired = ids.len(),
            held_us = held.as_micros() as u64,
            "expiry slice"
        );
        storm.slices += 1;
        storm.total += ids.len();
        let room = LOGGED_BY_ID.saturating_sub(storm.named.len());
        storm.named.extend(ids.iter().take(room));
        Ok(more)
    }
}
