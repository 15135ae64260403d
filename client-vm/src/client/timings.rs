//! Time spent in each phase of a call ([`PhaseTimings`]), and the small guard that records
//! a phase without timing code in the middle of the logic it measures.

use crate::sandbox::RunTimings;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// Time spent in each phase of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimings {
    /// Registry query.
    pub lookup: Duration,
    /// Component download (zero on a cache hit).
    pub fetch: Duration,
    /// Signature, trust, times, hash and capability checks.
    pub verify: Duration,
    /// Compilation, or the cache lookup on a hit, or loading from the compiled-code
    /// directory.
    pub compile: Duration,
    /// Whether the compiled component came from the in-memory cache.
    pub cache_hit: bool,
    /// Whether it was loaded from the client's compiled-code directory (no fetch, no
    /// compilation).
    pub from_disk: bool,
    /// Fresh store and instantiation.
    pub instantiate: Duration,
    /// The call, provider round trips included.
    pub invoke: Duration,
    /// Dropping store and instance.
    pub drop: Duration,
    /// Reporting the outcome (zero unless reported inline).
    pub report: Duration,
    /// The whole call.
    pub total: Duration,
}

impl PhaseTimings {
    /// Takes the run's own phases (instantiate, invoke, drop).
    pub(super) fn add_run(&mut self, t: &RunTimings) {
        self.instantiate = t.instantiate;
        self.invoke = t.invoke;
        self.drop = t.drop;
    }
}

impl fmt::Display for PhaseTimings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |d: Duration| d.as_micros();
        write!(
            f,
            "lookup {}µs, fetch {}µs, verify {}µs, compile {}µs{}, instantiate {}µs, invoke {}µs, drop {}µs, total {}µs",
            us(self.lookup),
            us(self.fetch),
            us(self.verify),
            us(self.compile),
            if self.cache_hit {
                " (cached)"
            } else if self.from_disk {
                " (from disk)"
            } else {
                ""
            },
            us(self.instantiate),
            us(self.invoke),
            us(self.drop),
            us(self.total),
        )
    }
}

/// Adds the time from its start to its drop to one phase of a [`PhaseTimings`], however
/// the phase ends (an early return with `?` counts too).
#[must_use = "the phase is timed until the guard is dropped"]
pub(super) struct PhaseTimer<'a> {
    phase: &'a mut Duration,
    started: Instant,
}

impl<'a> PhaseTimer<'a> {
    /// Starts timing `phase`.
    pub(super) fn start(phase: &'a mut Duration) -> Self {
        Self {
            phase,
            started: Instant::now(),
        }
    }
}

impl Drop for PhaseTimer<'_> {
    fn drop(&mut self) {
        *self.phase += self.started.elapsed();
    }
}

/// Awaits `work`, adding the time it took to `phase`.
pub(super) async fn timed<F: Future>(phase: &mut Duration, work: F) -> F::Output {
    let _timer = PhaseTimer::start(phase);
    work.await
}
