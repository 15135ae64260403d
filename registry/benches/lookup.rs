//! Lookup latency with 1,000 and 100,000 registrations over 1,000 interfaces: `find` over
//! loopback QUIC (one client, sequential requests, candidates with their signed manifests),
//! and the matcher in-process. Prints p50/p99, then criterion timings of the matcher.
#![allow(clippy::unwrap_used)]

mod support;

use courier_protocol::ServiceQuery;
use courier_registry::PreparedQuery;
use courier_transport::RegistryClient;
use criterion::Criterion;
use std::time::{Duration, Instant};
use support::*;

const INTERFACES: u32 = 1_000;

fn main() {
    let rt = runtime();
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for n in [1_000u32, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let registry = courier_registry::Registry::open(config(dir.path())).unwrap();
        let t = Instant::now();
        bulk_load(&registry, n, INTERFACES);
        println!(
            "loaded {n} registrations over {INTERFACES} interfaces in {:?}",
            t.elapsed()
        );
        let h = rt.block_on(serve(registry));
        let reg = h.registry().clone();
        let qs = queries(20_000, INTERFACES);
        let prepared: Vec<PreparedQuery> = qs
            .iter()
            .map(|q| PreparedQuery::new(q, 100).unwrap())
            .collect();

        // In-process matcher.
        let mut lat = Vec::with_capacity(prepared.len());
        let mut hits = 0usize;
        for p in prepared.iter().chain(prepared.iter()) {
            let now = reg.now();
            let t = Instant::now();
            hits += reg.match_leases(now, p).len();
            lat.push(t.elapsed().as_nanos() as u64);
        }
        let (p50, p99, max) = percentiles(lat);
        println!(
            "match in-process, {n} registrations: p50 {p50:?}, p99 {p99:?}, max {max:?} ({:.1} candidates/query)",
            hits as f64 / (2 * prepared.len()) as f64
        );

        // In-process find (matcher + reading the candidates' signed manifests).
        let mut lat = Vec::with_capacity(qs.len());
        for q in qs.iter().take(5_000) {
            let t = Instant::now();
            let _ = reg.find(reg.now(), q).unwrap();
            lat.push(t.elapsed().as_nanos() as u64);
        }
        let (p50, p99, _) = percentiles(lat);
        println!("find in-process (with manifests), {n} registrations: p50 {p50:?}, p99 {p99:?}");

        // Over QUIC, from a task on the runtime's workers (where an application's lookups
        // run; blocking the bench thread on each one would add a cross-thread wake-up to
        // every packet).
        let (addr, pin) = (h.local_addr(), h.pin());
        let remote: Vec<ServiceQuery> = qs.iter().take(5_000).cloned().collect();
        let lat = rt
            .block_on(rt.spawn(async move {
                let client = RegistryClient::connect(addr, pin, "bench").await.unwrap();
                for q in remote.iter().take(500) {
                    client.find(q.clone()).await.unwrap();
                }
                let mut lat = Vec::with_capacity(remote.len());
                for q in &remote {
                    let t = Instant::now();
                    let found = client.find(q.clone()).await.unwrap();
                    lat.push(t.elapsed().as_nanos() as u64);
                    std::hint::black_box(found);
                }
                client.close();
                lat
            }))
            .unwrap();
        let (p50, p99, max) = percentiles(lat);
        println!("lookup over QUIC, {n} registrations: p50 {p50:?}, p99 {p99:?}, max {max:?}");

        let mut i = 0;
        c.bench_function(&format!("match_{n}"), |b| {
            b.iter(|| {
                i = (i + 1) % prepared.len();
                reg.match_leases(reg.now(), &prepared[i])
            })
        });
        drop(reg);
        rt.block_on(h.shutdown());
    }
    c.final_summary();
}
