//! Renewals over loopback QUIC with 1 and 64 concurrent vendors (each its own key, its own
//! authenticated connection and its own lease; one renewal in flight per vendor). Client
//! and server share this process and the machine's cores. Prints renewals/s and latency
//! percentiles, then a criterion timing of one vendor's sequential renewals.
#![allow(clippy::unwrap_used)]

mod support;

use courier_transport::RegistryClient;
use criterion::Criterion;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const VENDORS: usize = 64;
const RUN: Duration = Duration::from_secs(4);

/// Every vendor renews in a loop for `RUN`; returns (renewals/s, latencies in ns).
async fn run(vs: &[(RegistryClient, courier_protocol::LeaseId)]) -> (f64, Vec<u64>) {
    renew_for(vs, RUN).await
}

fn report(label: &str, rate: f64, lat: Vec<u64>) {
    let n = lat.len();
    let (p50, p99, max) = percentiles(lat);
    println!(
        "renewals {label}: {rate:.0} renewals/s ({n} in {RUN:?}), p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
}

fn main() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let registry = courier_registry::Registry::open(config(dir.path())).unwrap();
    let h = rt.block_on(serve(registry));
    let shared = rt.block_on(vendors(&h, VENDORS, true, 10_000));
    let own = rt.block_on(vendors(&h, VENDORS, false, 20_000));

    // Warm up, then measure.
    rt.block_on(run(&shared[..1]));
    let (rate, lat) = rt.block_on(run(&shared[..1]));
    report("1 vendor", rate, lat);
    let (rate, lat) = rt.block_on(run(&shared));
    report("64 vendors (one client UDP socket)", rate, lat);
    let before: Vec<_> = own.iter().map(|(c, _)| c.connection().stats()).collect();
    let (rate, lat) = rt.block_on(run(&own));
    let n = lat.len().max(1) as f64;
    report("64 vendors (a UDP socket each)", rate, lat);
    // What one renewal costs on the wire (from the vendors' side of each connection).
    let (mut tx, mut rx, mut bytes) = (0, 0, 0);
    for ((c, _), b) in own.iter().zip(before) {
        let s = c.connection().stats();
        tx += s.udp_tx.datagrams - b.udp_tx.datagrams;
        rx += s.udp_rx.datagrams - b.udp_rx.datagrams;
        bytes += s.udp_tx.bytes - b.udp_tx.bytes;
    }
    println!(
        "per renewal: {:.2} datagrams sent ({:.0} bytes), {:.2} received",
        tx as f64 / n,
        bytes as f64 / n,
        rx as f64 / n
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let (v, lease) = shared[0].clone();
    let v = Arc::new(v);
    c.bench_function("renew_1_vendor_quic", |b| {
        b.iter_custom(|iters| {
            let v = v.clone();
            rt.block_on(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    v.renew(lease, 600_000).await.unwrap();
                }
                t.elapsed()
            })
        })
    });
    c.final_summary();
    rt.block_on(h.shutdown());
}
