//! The time a node takes over at, without trusting its clock against the last writer's.
//!
//! The lease rows in etcd hold expiry times on the last writer's wall clock, and
//! `meta/last_alive_ms` is that clock's reading at its last flush. A new writer whose own
//! clock is seconds ahead would see every lease seconds shorter (or already gone); one
//! behind, longer. So the restart rule runs at the last writer's `last_alive_ms` plus the
//! time that can really have passed since, counted on this node's clock but never more
//! than the last writer's session could have outlived its last flush (its session TTL
//! and one flush interval) and never less than nothing. Leases then keep the time left
//! that the last writer wrote, give or take that window, whatever the two clocks say.

use std::time::Duration;

/// This machine's wall clock, in ms since the Unix epoch.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock time (ms since the Unix epoch) to open the registry at after a
/// takeover: `now_ms` (this node's clock) clamped to `[last_alive_ms, last_alive_ms +
/// session_ttl + flush_interval]`. A cluster never written to yet (`last_alive_ms` 0)
/// opens at `now_ms`.
pub fn takeover_wall_ms(
    last_alive_ms: u64,
    now_ms: u64,
    session_ttl: Duration,
    flush_interval: Duration,
) -> u64 {
    if last_alive_ms == 0 {
        return now_ms;
    }
    let window = u64::try_from((session_ttl + flush_interval).as_millis()).unwrap_or(u64::MAX);
    now_ms.clamp(last_alive_ms, last_alive_ms.saturating_add(window))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);
    const FLUSH: Duration = Duration::from_millis(500);

    #[test]
    fn a_clock_that_agrees_is_used() {
        assert_eq!(
            takeover_wall_ms(1_000_000, 1_003_000, TTL, FLUSH),
            1_003_000
        );
    }

    #[test]
    fn a_clock_ahead_counts_no_more_than_the_session_could_have_lasted() {
        // 60 s ahead of the last writer: leases lose at most 5.5 s, not 60.
        assert_eq!(
            takeover_wall_ms(1_000_000, 1_060_000, TTL, FLUSH),
            1_005_500
        );
    }

    #[test]
    fn a_clock_behind_counts_nothing() {
        // 60 s behind: leases keep what the last flush wrote, not 60 s more.
        assert_eq!(takeover_wall_ms(1_000_000, 940_000, TTL, FLUSH), 1_000_000);
    }

    #[test]
    fn a_new_cluster_opens_at_this_clock() {
        assert_eq!(takeover_wall_ms(0, 42, TTL, FLUSH), 42);
    }
}
