//! What the server counts for operators: [`Observer`] holds the counters the hot paths
//! increment (renewals, lookups with their latency, fetches, registrations, outcomes,
//! admission refusals by cause, webhook deliveries) and hands failed outcomes to the
//! notifier. The gauges (leases, registrations, interfaces) are read from the registry when
//! `/metrics` is scraped (`export`), never kept here.
//!
//! Cost on the hot paths: one relaxed atomic add per counter, each counter on a cache line
//! of its own, no lock and no allocation. A lookup also reads the monotonic clock twice for
//! its latency histogram (fixed buckets, one add for the bucket and one for the sum).
//! Nothing here is touched when the server runs without an HTTP listener or webhooks
//! (`Shared::observer` is `None`).

mod export;
mod histogram;

pub(crate) use export::{Exporter, Format};
pub(crate) use histogram::Histogram;

use courier_protocol::{AdminAction, KeyAction, Request, Response, WireError};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;

/// A counter on a cache line of its own (the renewal and lookup counters are incremented
/// from every core at once): one relaxed atomic add per increment.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge kept by the server itself (live streams), raised and lowered in pairs.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    /// Raises the gauge until the guard is dropped.
    pub fn hold(&self) -> GaugeGuard<'_> {
        self.inc();
        GaugeGuard(self)
    }

    /// Raises it by one (the caller lowers it again with [`Gauge::dec`]).
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Lowers it by one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One unit of a [`Gauge`], given back when dropped.
#[derive(Debug)]
pub(crate) struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why the server refused work at admission (see ARCHITECTURE.md, "Wire protocol").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The registry's connection cap.
    ConnectionCap,
    /// The cap on connections of one peer address.
    PeerCap,
    /// A connection's request rate.
    ConnectionRate,
    /// The registry's request rate.
    RegistryRate,
    /// The cap on one-shot requests in flight.
    InFlight,
    /// No room for a large answer.
    LargeAnswer,
}

impl Refusal {
    /// Every cause, in the order of [`Metrics::refusals`].
    pub const ALL: [Refusal; 6] = [
        Refusal::ConnectionCap,
        Refusal::PeerCap,
        Refusal::ConnectionRate,
        Refusal::RegistryRate,
        Refusal::InFlight,
        Refusal::LargeAnswer,
    ];

    /// The label value of the cause.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionCap => "connection_cap",
            Refusal::PeerCap => "peer_cap",
            Refusal::ConnectionRate => "connection_rate",
            Refusal::RegistryRate => "registry_rate",
            Refusal::InFlight => "in_flight",
            Refusal::LargeAnswer => "large_answer",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Renewals granted (one-shot and on keep-alive streams).
    pub renewals: Counter,
    /// Registrations accepted.
    pub registrations: Counter,
    /// Leases cancelled by their vendors.
    pub cancellations: Counter,
    /// Leases that ran out.
    pub expiries: Counter,
    /// Revocations made by operators (a lease or a whole key).
    pub revocations_by_operator: Counter,
    /// Revocations vendors made of their own keys.
    pub revocations_by_vendor: Counter,
    /// Lookups answered, with their latency.
    pub lookups: Histogram,
    /// Lookups refused (a malformed query, a store error).
    pub lookup_errors: Counter,
    /// Candidates handed out in lookup answers.
    pub candidates: Counter,
    /// Components fetched.
    pub fetches: Counter,
    /// Bytes of components fetched.
    pub fetched_bytes: Counter,
    /// Outcomes reported that succeeded.
    pub outcomes_ok: Counter,
    /// Outcomes reported that failed.
    pub outcomes_failed: Counter,
    /// Live event subscriptions over QUIC.
    pub subscribers: Gauge,
    /// Live event streams of dashboards.
    pub dashboard_streams: Gauge,
    /// Admission refusals, by [`Refusal`].
    refusals: [Counter; Refusal::ALL.len()],
    /// HTTP requests refused for a wrong or missing token.
    pub http_unauthorized: Counter,
    /// Webhook posts delivered.
    pub webhook_delivered: Counter,
    /// Webhook posts that failed and were tried again.
    pub webhook_retried: Counter,
    /// Alerts dropped because a webhook's queue was full (the oldest go).
    pub webhook_dropped_full: Counter,
    /// Alerts dropped after the last retry failed.
    pub webhook_dropped_failed: Counter,
}

impl Metrics {
    /// Counts an admission refusal.
    #[inline]
    pub fn refused(&self, cause: Refusal) {
        self.refusals[cause.index()].inc();
    }

    /// Refusals of `cause` so far.
    pub fn refusals(&self, cause: Refusal) -> u64 {
        self.refusals[cause.index()].get()
    }
}

/// What a request will be counted as once answered, taken before it runs.
#[derive(Debug)]
pub(crate) enum Probe {
    /// A renewal.
    Renew,
    /// A lookup, and when it started.
    Find(Instant),
    /// A component fetch.
    Fetch,
    /// A registration.
    Register,
    /// A cancellation.
    Cancel,
    /// An outcome report: whether it succeeded, and the service of a failed one when
    /// someone listens for failures.
    Report { ok: bool, failed: Option<String> },
    /// A revocation by an operator.
    OperatorRevoke,
    /// A vendor's revocation of its own key.
    VendorRevoke,
    /// Nothing counted.
    Other,
}

/// The counters, and where failed outcomes go (the notifier, if webhooks watch them).
#[derive(Debug, Default)]
pub(crate) struct Observer {
    /// The counters.
    pub metrics: Metrics,
    /// Services of failed outcomes, for the notifier; a full queue drops them (the notifier
    /// fell behind, and the count it would raise an alert on is already high).
    failures: Option<mpsc::Sender<String>>,
}

impl Observer {
    /// An observer whose failed outcomes go to `failures`, if given.
    pub fn new(failures: Option<mpsc::Sender<String>>) -> Self {
        Self {
            metrics: Metrics::default(),
            failures,
        }
    }

    /// What `req` will be counted as.
    #[inline]
    pub fn before(&self, req: &Request) -> Probe {
        match req {
            Request::Renew { .. } => Probe::Renew,
            Request::Find(_) => Probe::Find(Instant::now()),
            Request::Fetch { .. } => Probe::Fetch,
            Request::Register(_) => Probe::Register,
            Request::Cancel { .. } => Probe::Cancel,
            Request::Report(o) => Probe::Report {
                ok: o.ok,
                failed: (!o.ok && self.failures.is_some()).then(|| o.name.clone()),
            },
            Request::Admin(AdminAction::RevokeLease { .. } | AdminAction::RevokeKey(_)) => {
                Probe::OperatorRevoke
            }
            Request::KeyStatement(s)
                if s.peek()
                    .is_ok_and(|s| matches!(s.action, KeyAction::Revoke)) =>
            {
                Probe::VendorRevoke
            }
            _ => Probe::Other,
        }
    }

    /// Counts the answer to a request probed with [`Observer::before`].
    #[inline]
    pub fn after(&self, probe: Probe, answer: &Result<Response, WireError>) {
        let m = &self.metrics;
        let Ok(resp) = answer else {
            if let Probe::Find(_) = probe {
                m.lookup_errors.inc();
            }
            return;
        };
        match (probe, resp) {
            (Probe::Renew, _) => m.renewals.inc(),
            (Probe::Find(started), Response::Candidates(c)) => {
                m.lookups.observe(started.elapsed());
                m.candidates.add(c.len() as u64);
            }
            (Probe::Fetch, Response::Payload(bytes)) => {
                m.fetches.inc();
                m.fetched_bytes.add(bytes.len() as u64);
            }
            (Probe::Register, _) => m.registrations.inc(),
            (Probe::Cancel, _) => m.cancellations.inc(),
            (Probe::Report { ok: true, .. }, _) => m.outcomes_ok.inc(),
            (Probe::Report { ok: false, failed }, _) => {
                m.outcomes_failed.inc();
                if let (Some(tx), Some(service)) = (&self.failures, failed) {
                    let _ = tx.try_send(service);
                }
            }
            (Probe::OperatorRevoke, _) => m.revocations_by_operator.inc(),
            (Probe::VendorRevoke, _) => m.revocations_by_vendor.inc(),
            _ => {}
        }
    }

    /// Counts a renewal granted on a keep-alive stream.
    #[inline]
    pub fn renewed(&self) {
        self.metrics.renewals.inc();
    }

    /// Counts an admission refusal.
    #[inline]
    pub fn refused(&self, cause: Refusal) {
        self.metrics.refused(cause);
    }

    /// Counts leases that ran out.
    pub fn expired(&self, n: usize) {
        self.metrics.expiries.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_count() {
        let o = Observer::new(None);
        o.refused(Refusal::InFlight);
        o.refused(Refusal::InFlight);
        o.refused(Refusal::PeerCap);
        assert_eq!(o.metrics.refusals(Refusal::InFlight), 2);
        assert_eq!(o.metrics.refusals(Refusal::PeerCap), 1);
        {
            let _a = o.metrics.subscribers.hold();
            let _b = o.metrics.subscribers.hold();
            assert_eq!(o.metrics.subscribers.get(), 2);
        }
        assert_eq!(o.metrics.subscribers.get(), 0);
        assert_eq!(std::mem::align_of::<Counter>(), 64);
    }

    #[test]
    fn refusal_labels_follow_their_order() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{}", r.label());
        }
    }
}
