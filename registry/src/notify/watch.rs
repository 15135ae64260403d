//! The watcher: one task that decides what to alert on. It follows the registry's
//! transitions ([`Registry::transitions`]: expiries and revocations are looked at), the
//! services of failed outcomes the server hands over (a spike is `failure_spike` of them
//! within `failure_window`), and, once a second, the admission refusal counters. What it
//! alerts on goes to every webhook's queue, which never waits.

use super::alert::Alert;
use super::deliver::AlertQueue;
use super::{AlertKind, NotifyConfig};
use crate::core::events::EventRecord;
use crate::driver::{Registry, wall_clock_ms};
use crate::observe::{Observer, Refusal};
use courier_protocol::{Event, EventKind};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

/// Services whose recent failures are remembered at once; failures of others are not
/// counted until some are forgotten.
const MAX_SERVICES: usize = 10_000;

/// What the watcher reads and where its alerts go.
pub(super) struct Watcher {
    config: Arc<NotifyConfig>,
    registry: Arc<Registry>,
    observer: Arc<Observer>,
    queues: Vec<Arc<AlertQueue>>,
    spikes: Spikes,
    refusals: RefusalRate,
}

impl Watcher {
    /// A watcher alerting every queue in `queues`.
    pub fn new(
        config: Arc<NotifyConfig>,
        registry: Arc<Registry>,
        observer: Arc<Observer>,
        queues: Vec<Arc<AlertQueue>>,
    ) -> Self {
        let spikes = Spikes::new(config.failure_spike.max(1), config.failure_window);
        let refusals = RefusalRate::new(&observer);
        Self {
            config,
            registry,
            observer,
            queues,
            spikes,
            refusals,
        }
    }

    /// Watches until `shutdown`.
    pub async fn run(
        mut self,
        mut failures: mpsc::Receiver<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Transitions from now on; `next` is the first sequence number not yet looked at
        // (renewals, not in the feed, leave holes in the numbers).
        let mut feed = self.registry.transitions();
        let mut halts = self.registry.rollout_halts();
        let mut next = self.registry.next_seq();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = feed.recv() => match r {
                    Ok(rec) if rec.seq < next => {}
                    Ok(rec) => {
                        next = rec.seq + 1;
                        self.on_record(&rec);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        next = self.catch_up(next);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(service) = failures.recv() => self.on_failure(service),
                Ok(halted) = halts.recv() => self.on_halt(&halted),
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    /// A live event: only expiries and revocations are looked at.
    fn on_record(&mut self, rec: &EventRecord) {
        if matches!(rec.kind, EventKind::Expired | EventKind::Revoked) {
            self.on_event(rec.to_wire());
        }
    }

    /// Reads what the ring kept from `next` on (the live feed fell behind); returns the
    /// number to go on from.
    fn catch_up(&mut self, mut next: u64) -> u64 {
        while next < self.registry.next_seq() {
            let (batch, n) = self.registry.events_since(next, None);
            if let Some((from_seq, to_seq)) = batch.missed {
                tracing::warn!(from_seq, to_seq, "webhook watcher missed events");
                self.alert(Alert::Missed {
                    from_seq,
                    to_seq,
                    at_ms: wall_clock_ms(),
                });
            }
            for e in batch.events {
                if matches!(e.kind, EventKind::Expired | EventKind::Revoked) {
                    self.on_event(e);
                }
            }
            if n <= next {
                break;
            }
            next = n;
        }
        next
    }

    /// A rollout that halted (each is sent once, after its halt was committed).
    fn on_halt(&mut self, r: &courier_protocol::RolloutRecord) {
        let courier_protocol::RolloutState::Halted { reason } = &r.state else {
            return;
        };
        if self.config.wants(AlertKind::RolloutHalted) {
            self.alert(Alert::RolloutHalted {
                rollout: r.id,
                service: r.spec.name.clone(),
                version: r.spec.version.clone(),
                reason: reason.clone(),
                waves_opened: r.opened_at_ms.len(),
                at_ms: wall_clock_ms(),
            });
        }
    }

    /// An expiry or a revocation.
    fn on_event(&mut self, e: Event) {
        let revoked = e.kind == EventKind::Revoked;
        if revoked && self.config.wants(AlertKind::Revocation) {
            self.alert(Alert::Revocation {
                service: e.name,
                lease: e.lease.to_string(),
                interfaces: e.interfaces,
                seq: e.seq,
                at_ms: e.at_ms,
            });
        } else if self.config.wants(AlertKind::LeaseLost) && self.config.watches(&e.name) {
            self.alert(Alert::LeaseLost {
                service: e.name,
                lease: e.lease.to_string(),
                reason: e.kind.to_string(),
                interfaces: e.interfaces,
                seq: e.seq,
                at_ms: e.at_ms,
            });
        }
    }

    /// A failed outcome of `service`.
    fn on_failure(&mut self, service: String) {
        if !self.config.wants(AlertKind::FailureSpike) || !self.config.watches(&service) {
            return;
        }
        if let Some(failures) = self.spikes.failed(&service, Instant::now()) {
            self.alert(Alert::FailureSpike {
                service,
                failures,
                window_s: self.config.failure_window.as_secs(),
                at_ms: wall_clock_ms(),
            });
        }
    }

    /// Once a second: the refusal rate, and forgetting old failures.
    fn on_tick(&mut self) {
        self.spikes.forget(Instant::now());
        let rate = self.refusals.second(&self.observer);
        if !self.config.wants(AlertKind::Refusals) {
            return;
        }
        if let Some((per_second, causes)) = self.refusals.crossed(rate, self.config.refusal_rate) {
            self.alert(Alert::AdmissionRefusals {
                per_second,
                threshold: self.config.refusal_rate,
                causes,
                at_ms: wall_clock_ms(),
            });
        }
    }

    fn alert(&self, alert: Alert) {
        for q in &self.queues {
            q.push(alert.clone());
        }
    }
}

/// Recent failures per service.
struct Spikes {
    threshold: u32,
    window: Duration,
    services: HashMap<String, Failures>,
}

/// One service's failures within the window, and until when it stays quiet after an
/// alert.
#[derive(Default)]
struct Failures {
    at: VecDeque<Instant>,
    quiet_until: Option<Instant>,
}

impl Spikes {
    fn new(threshold: u32, window: Duration) -> Self {
        Self {
            threshold,
            window,
            services: HashMap::new(),
        }
    }

    /// Counts a failure at `now`; the count when it makes a spike (once per window).
    fn failed(&mut self, service: &str, now: Instant) -> Option<u32> {
        if !self.services.contains_key(service) && self.services.len() >= MAX_SERVICES {
            return None;
        }
        let f = self.services.entry(service.to_string()).or_default();
        while f
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            f.at.pop_front();
        }
        f.at.push_back(now);
        if f.quiet_until.is_some_and(|q| now < q) {
            return None;
        }
        let n = u32::try_from(f.at.len()).unwrap_or(u32::MAX);
        if n < self.threshold {
            return None;
        }
        f.at.clear();
        f.quiet_until = Some(now + self.window);
        Some(n)
    }

    /// Forgets services with no failure and no quiet time left.
    fn forget(&mut self, now: Instant) {
        let window = self.window;
        self.services.retain(|_, f| {
            while f
                .at
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                f.at.pop_front();
            }
            !f.at.is_empty() || f.quiet_until.is_some_and(|q| now < q)
        });
    }
}

/// Refusals per second, and whether the rate is above its threshold already (an alert
/// goes when it crosses, not every second it stays above).
struct RefusalRate {
    last: [u64; Refusal::ALL.len()],
    above: bool,
}

impl RefusalRate {
    fn new(observer: &Observer) -> Self {
        Self {
            last: Refusal::ALL.map(|r| observer.metrics.refusals(r)),
            above: false,
        }
    }

    /// The refusals of each cause since the last call.
    fn second(&mut self, observer: &Observer) -> [u64; Refusal::ALL.len()] {
        let now = Refusal::ALL.map(|r| observer.metrics.refusals(r));
        let mut delta = [0; Refusal::ALL.len()];
        for i in 0..now.len() {
            delta[i] = now[i].saturating_sub(self.last[i]);
        }
        self.last = now;
        delta
    }

    /// The total and the causes, when `rate` crosses `threshold` (0: never).
    fn crossed(
        &mut self,
        rate: [u64; Refusal::ALL.len()],
        threshold: u64,
    ) -> Option<(u64, BTreeMap<&'static str, u64>)> {
        let total: u64 = rate.iter().sum();
        let above = threshold > 0 && total >= threshold;
        let crossed = above && !self.above;
        self.above = above;
        crossed.then(|| {
            let causes = Refusal::ALL
                .iter()
                .zip(rate)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.label(), n))
                .collect();
            (total, causes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_alerts_once_per_window() {
        let mut s = Spikes::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(s.failed("a", at(0)), None);
        assert_eq!(s.failed("a", at(1)), None);
        assert_eq!(s.failed("b", at(1)), None);
        assert_eq!(s.failed("a", at(2)), Some(3));
        // Quiet for a window after the alert.
        for t in 3..10 {
            assert_eq!(s.failed("a", at(t)), None);
        }
        // Failures spread wider than the window never make a spike.
        assert_eq!(s.failed("b", at(20)), None);
        assert_eq!(s.failed("b", at(40)), None);
        s.forget(at(100));
        assert!(s.services.is_empty());
        assert_eq!(s.failed("a", at(100)), None);
    }

    #[test]
    fn the_refusal_rate_alerts_when_it_crosses_its_threshold() {
        let o = Observer::new(None);
        let mut r = RefusalRate::new(&o);
        for _ in 0..5 {
            o.refused(Refusal::InFlight);
        }
        o.refused(Refusal::PeerCap);
        let rate = r.second(&o);
        let (total, causes) = r.crossed(rate, 5).unwrap();
        assert_eq!(total, 6);
        assert_eq!(causes, BTreeMap::from([("in_flight", 5), ("peer_cap", 1)]));
        // Still above: no second alert; below, then above again: one more.
        for _ in 0..9 {
            o.refused(Refusal::RegistryRate);
        }
        let rate = r.second(&o);
        assert!(r.crossed(rate, 5).is_none());
        let rate = r.second(&o);
        assert!(r.crossed(rate, 5).is_none());
        for _ in 0..5 {
            o.refused(Refusal::RegistryRate);
        }
        let rate = r.second(&o);
        assert!(r.crossed(rate, 5).is_some());
        assert!(r.crossed([0; 6], 0).is_none());
    }
}
