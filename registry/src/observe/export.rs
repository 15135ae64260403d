//! The `/metrics` text: the [`Observer`]'s counters and the registry's gauges (read now,
//! under its state lock for a moment), encoded by the Prometheus client library in the
//! Prometheus text format 0.0.4, or OpenMetrics when the scraper asks for it.

use super::{Metrics, Observer, Refusal};
use crate::driver::Registry;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use std::sync::Arc;

/// The text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format 0.0.4 (what `promtool check metrics` reads).
    Prometheus,
    /// OpenMetrics 1.0 text, for scrapers whose `Accept` asks for it.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The metrics of one registry, ready to encode at each scrape.
#[derive(Debug)]
pub(crate) struct Exporter {
    families: prometheus_client::registry::Registry,
}

impl Exporter {
    /// The metrics of `observer` and `registry`, every name prefixed `courier_`.
    pub fn new(observer: Arc<Observer>, registry: Arc<Registry>) -> Self {
        let mut families = prometheus_client::registry::Registry::with_prefix("courier");
        families.register_collector(Box::new(Families { observer, registry }));
        Self { families }
    }

    /// The text of every metric now.
    pub fn render(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.families)?
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.families)?
            }
        }
        Ok(out)
    }
}

/// The collector the client library calls at each scrape.
#[derive(Debug)]
struct Families {
    observer: Arc<Observer>,
    registry: Arc<Registry>,
}

impl Collector for Families {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m: &Metrics = &self.observer.metrics;
        let (leases, registrations, interfaces) = self.registry.counts();
        gauge(&mut enc, "leases_active", "Live leases", leases as i64)?;
        let unwritable = self
            .registry
            .unwritable_for(self.registry.now())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        gauge(
            &mut enc,
            "store_unwritable_seconds",
            "How long the store has refused writes (0: it accepts them); meanwhile leases are served from memory",
            unwritable,
        )?;
        gauge(
            &mut enc,
            "catalog_registrations",
            "Registrations in the catalog",
            registrations as i64,
        )?;
        gauge(
            &mut enc,
            "catalog_interfaces",
            "Interfaces with at least one registration",
            interfaces as i64,
        )?;
        gauge(
            &mut enc,
            "event_next_seq",
            "The sequence number the next event gets",
            i64::try_from(self.registry.next_seq()).unwrap_or(i64::MAX),
        )?;
        mirror(&mut enc, &self.registry)?;
        counter(
            &mut enc,
            "registrations",
            "Registrations accepted",
            m.registrations.get(),
        )?;
        counter(
            &mut enc,
            "renewals",
            "Lease renewals granted",
            m.renewals.get(),
        )?;
        counter(
            &mut enc,
            "cancellations",
            "Leases cancelled by their vendors",
            m.cancellations.get(),
        )?;
        counter(
            &mut enc,
            "expiries",
            "Leases that ran out",
            m.expiries.get(),
        )?;
        labelled_counters(
            &mut enc,
            "revocations",
            "Revocations of a lease or a key, by who made them",
            "by",
            &[
                ("operator", m.revocations_by_operator.get()),
                ("vendor", m.revocations_by_vendor.get()),
            ],
        )?;
        let lookups = m.lookups.snapshot();
        enc.encode_descriptor(
            "lookup_duration",
            "Time to answer a lookup, from its request read to its answer built",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(
            lookups.sum_seconds,
            lookups.count,
            &lookups.buckets,
            None,
        )?;
        counter(
            &mut enc,
            "lookup_errors",
            "Lookups refused (malformed query, store error)",
            m.lookup_errors.get(),
        )?;
        counter(
            &mut enc,
            "proxies_handed_out",
            "Candidates (proxy manifests) returned by lookups",
            m.candidates.get(),
        )?;
        counter(&mut enc, "fetches", "Components fetched", m.fetches.get())?;
        let bytes = enc.encode_descriptor(
            "fetched",
            "Bytes of components fetched",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        ConstCounter::new(m.fetched_bytes.get()).encode(bytes)?;
        labelled_counters(
            &mut enc,
            "outcomes",
            "Outcomes reported by clients, by result",
            "result",
            &[
                ("ok", m.outcomes_ok.get()),
                ("failed", m.outcomes_failed.get()),
            ],
        )?;
        let mut subs = enc.encode_descriptor(
            "subscribers",
            "Live event feeds, by kind (QUIC subscriptions, dashboard streams)",
            None,
            MetricType::Gauge,
        )?;
        for (feed, n) in [
            ("quic", m.subscribers.get()),
            ("dashboard", m.dashboard_streams.get()),
        ] {
            ConstGauge::new(n).encode(subs.encode_family(&[("feed", feed)])?)?;
        }
        let refusals: Vec<(&str, u64)> = Refusal::ALL
            .iter()
            .map(|r| (r.label(), m.refusals(*r)))
            .collect();
        labelled_counters(
            &mut enc,
            "admission_refusals",
            "Connections and requests refused at admission, by cause",
            "cause",
            &refusals,
        )?;
        counter(
            &mut enc,
            "http_unauthorized",
            "HTTP requests refused for a wrong or missing token",
            m.http_unauthorized.get(),
        )?;
        counter(
            &mut enc,
            "webhook_deliveries",
            "Webhook posts a target accepted",
            m.webhook_delivered.get(),
        )?;
        counter(
            &mut enc,
            "webhook_retries",
            "Webhook posts that failed and were tried again",
            m.webhook_retried.get(),
        )?;
        labelled_counters(
            &mut enc,
            "webhook_dropped",
            "Alerts dropped, by reason (queue full: the oldest went; failed: every retry failed)",
            "reason",
            &[
                ("queue_full", m.webhook_dropped_full.get()),
                ("failed", m.webhook_dropped_failed.get()),
            ],
        )?;
        Ok(())
    }
}

/// One counter without labels.
fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// A child registry's copy of its parent (nothing for a registry without a parent).
fn mirror(enc: &mut DescriptorEncoder, registry: &Registry) -> Result<(), std::fmt::Error> {
    let (s, _) = registry.mirror_status();
    if s.parent.is_none() {
        return Ok(());
    }
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    gauge(
        enc,
        "mirror_connected",
        "1 while the link to the parent registry is up",
        i64::from(s.connected),
    )?;
    gauge(
        enc,
        "mirror_registrations",
        "Registrations mirrored from the parent",
        n(s.mirrored),
    )?;
    gauge(
        enc,
        "mirror_past_end",
        "Mirrored registrations past their lease's last known end, served in the mirror grace (the link is cut)",
        n(s.past_end),
    )?;
    gauge(
        enc,
        "mirror_lag",
        "Events of the parent's feed not applied yet, as last seen",
        n(s.parent_seq
            .zip(s.anchor)
            .map_or(0, |(p, a)| p.saturating_sub(a))),
    )?;
    gauge(
        enc,
        "mirror_pending_approvals",
        "Versions of the parent's waiting for an operator's approval",
        n(s.pending),
    )?;
    counter(
        enc,
        "mirror_bad_signatures",
        "Manifests or statements from the parent dropped because their signature failed",
        s.bad_signatures,
    )?;
    counter(
        enc,
        "mirror_copies",
        "Whole copies of the parent's catalog",
        s.copies,
    )?;
    counter(
        enc,
        "mirror_components_fetched",
        "Components fetched from the parent",
        s.fetched,
    )?;
    let bytes = enc.encode_descriptor(
        "mirror_received",
        "Bytes received from the parent over the link",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    ConstCounter::new(s.received_bytes).encode(bytes)?;
    Ok(())
}

/// One gauge without labels.
fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// One counter family with one label, a sample per value.
fn labelled_counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    rows: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in rows {
        ConstCounter::new(*n).encode(m.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}
