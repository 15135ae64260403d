//! What the operators' metrics cost on the hot paths: renewals (64 vendors over loopback
//! QUIC, one renewal in flight each) and lookups (one client, sequential `find`s over
//! 1,000 registrations) against two registries in this process, one without metrics and
//! one with them on (the counters, the HTTP listener, and a scrape of `/metrics` every
//! second, more often than Prometheus usually scrapes). The two run in turns, several
//! rounds in one sitting, so that the machine's drift falls on both; prints each round,
//! then the median ratio on/off of each.
#![allow(clippy::unwrap_used)]

mod support;

use courier_protocol::{LeaseId, ServiceQuery};
use courier_registry::{HttpConfig, RegistryHandle};
use courier_transport::RegistryClient;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const ROUNDS: usize = 5;
const VENDORS: usize = 64;
const RENEW_RUN: Duration = Duration::from_secs(3);
const LOOKUPS: usize = 5_000;
const REGISTRATIONS: u32 = 1_000;
const INTERFACES: u32 = 1_000;

/// One registry under test and its clients.
struct Side {
    label: &'static str,
    handle: RegistryHandle,
    vendors: Vec<(RegistryClient, LeaseId)>,
    _dir: tempfile::TempDir,
}

/// A registry with `REGISTRATIONS` synthetic registrations and `VENDORS` vendors, with
/// metrics on or off; when on, a task scrapes it every second.
async fn side(label: &'static str, metrics: bool, first_vendor: u32) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let registry = courier_registry::Registry::open(config(dir.path())).unwrap();
    bulk_load(&registry, REGISTRATIONS, INTERFACES);
    let handle = serve_with(registry, |c| {
        if metrics {
            c.http = Some(HttpConfig::new("127.0.0.1:0".parse().unwrap()));
        }
    })
    .await;
    if let Some(addr) = handle.http_addr() {
        tokio::spawn(async move {
            let web = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Ok(resp) = web.get(format!("http://{addr}/metrics")).send().await else {
                    return;
                };
                let _ = resp.bytes().await;
            }
        });
    }
    let vendors = vendors(&handle, VENDORS, true, first_vendor).await;
    Side {
        label,
        handle,
        vendors,
        _dir: dir,
    }
}

/// Sequential lookups from a task on the runtime's workers (where an application's
/// lookups run); lookups per second.
fn lookups(rt: &tokio::runtime::Runtime, h: &RegistryHandle, qs: &Arc<Vec<ServiceQuery>>) -> f64 {
    let (addr, pin, qs) = (h.local_addr(), h.pin(), qs.clone());
    rt.block_on(rt.spawn(async move {
        let client = RegistryClient::connect(addr, pin, "bench").await.unwrap();
        for q in qs.iter().take(200) {
            client.find(q.clone()).await.unwrap();
        }
        let t = Instant::now();
        for q in qs.iter() {
            std::hint::black_box(client.find(q.clone()).await.unwrap());
        }
        let rate = qs.len() as f64 / t.elapsed().as_secs_f64();
        client.close();
        rate
    }))
    .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = runtime();
    let off = rt.block_on(side("metrics off", false, 30_000));
    let on = rt.block_on(side("metrics on ", true, 40_000));
    let qs = Arc::new(queries(LOOKUPS, INTERFACES));
    // Warm both up.
    for s in [&off, &on] {
        rt.block_on(renew_for(&s.vendors, Duration::from_millis(500)));
        lookups(&rt, &s.handle, &qs);
    }
    let (mut renew_ratio, mut lookup_ratio) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        // Alternate which goes first.
        let order = if round % 2 == 1 {
            [&off, &on]
        } else {
            [&on, &off]
        };
        let mut renewals = [0.0; 2];
        let mut finds = [0.0; 2];
        for s in order {
            let i = usize::from(std::ptr::eq(s, &on));
            let (rate, lat) = rt.block_on(renew_for(&s.vendors, RENEW_RUN));
            let (p50, p99, _) = percentiles(lat);
            let found = lookups(&rt, &s.handle, &qs);
            println!(
                "round {round} {}: {rate:>7.0} renewals/s (p50 {p50:?}, p99 {p99:?}), {found:>6.0} lookups/s",
                s.label
            );
            renewals[i] = rate;
            finds[i] = found;
        }
        renew_ratio.push(renewals[1] / renewals[0]);
        lookup_ratio.push(finds[1] / finds[0]);
    }
    println!(
        "metrics on / off, median of {ROUNDS} rounds: renewals {:.3}, lookups {:.3}",
        median(renew_ratio),
        median(lookup_ratio)
    );
    for s in [off, on] {
        let Side {
            handle, vendors, ..
        } = s;
        drop(vendors);
        rt.block_on(handle.shutdown());
    }
}
