//! An expiry storm: 100,000 leases due in the same millisecond, while a client looks up
//! over loopback QUIC (one connection, sequential `find`s from a task on the runtime's
//! workers, as in `lookup.rs`). 1,000 more registrations over the same 1,000 interfaces
//! stay live, so lookups still find candidates once the storm is over.
//!
//! Everything is registered in-process (`load_bulk`), the due ones with the deadline
//! chosen up front. Prints the time from the deadline until the last due lease is gone,
//! and lookup latency p50/p99/max: with no storm before it (101,000 leases) and after it
//! (1,000 leases), the anchors; from the deadline until all are gone; and from the deadline
//! until a second after (which takes in the write-behind flush of the deletions).
#![allow(clippy::unwrap_used)]

mod support;

use courier_protocol::SigningKey;
use courier_registry::Registry;
use courier_transport::RegistryClient;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;

/// Leases due in the same millisecond.
const DUE: u32 = 100_000;
/// Registrations that stay live through the storm.
const LIVE: u32 = 1_000;
const INTERFACES: u32 = 1_000;
/// How long the lookups with no storm are measured, at least, before the deadline.
const ANCHOR: Duration = Duration::from_secs(4);
/// How long after the last due lease is gone lookups still count to the storm.
const AFTER: Duration = Duration::from_secs(1);

/// Loads registrations `first..first + n`, all due at `due` (each chunk's lease lasts from
/// the time it is loaded until `due`).
fn load_due(registry: &Registry, first: u32, n: u32, due: courier_registry::Millis) {
    let keys: Vec<SigningKey> = (0..100).map(key).collect();
    let mut i = first;
    while i < first + n {
        let end = (i + 5_000).min(first + n);
        let signed: Vec<_> = (i..end).map(|j| synthetic(j, INTERFACES, &keys)).collect();
        let now = registry.now();
        let ttl = due.since(now);
        assert!(ttl >= 5_000, "loading took longer than planned");
        let items = signed.into_iter().map(|m| (m, ttl)).collect();
        registry.load_bulk(now, items).unwrap();
        i = end;
    }
}

/// Latencies (ns) of the lookups that ended in `[from, to)`, as p50/p99/max and a count.
fn window(lat: &[(Instant, Instant)], from: Instant, to: Instant) -> String {
    let v: Vec<u64> = lat
        .iter()
        .filter(|(_, end)| *end >= from && *end < to)
        .map(|(start, end)| (*end - *start).as_nanos() as u64)
        .collect();
    let n = v.len();
    if n == 0 {
        return "no lookups".into();
    }
    let (p50, p99, max) = percentiles(v);
    format!("p50 {p50:?}, p99 {p99:?}, max {max:?} ({n} lookups)")
}

fn main() {
    // The expiry's own summary (slices, longest hold of the state lock), where it has one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "courier_registry::driver::expiry=info".into()),
        )
        .try_init();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(config(dir.path())).unwrap();
    let h = rt.block_on(serve(registry));
    let reg = h.registry().clone();

    // The live ones first: their pace plans the deadline of the due ones.
    let t = Instant::now();
    bulk_load_in(&reg, LIVE, INTERFACES, LIVE);
    let planned = t.elapsed() * (2 * DUE / LIVE) + ANCHOR + Duration::from_secs(2);
    let due = reg.now().plus(planned.as_millis() as u64);
    let t = Instant::now();
    load_due(&reg, LIVE, DUE, due);
    println!(
        "loaded {DUE} leases due at the same millisecond (and {LIVE} live) over {INTERFACES} interfaces in {:?}",
        t.elapsed()
    );
    let due_at = reg.instant(due).into_std();
    assert!(
        Instant::now() + ANCHOR / 2 < due_at,
        "loading took longer than planned: no time left for the anchor"
    );
    assert_eq!(reg.counts().0, (DUE + LIVE) as usize);

    // One client looking up in a loop from now until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, pin) = (h.local_addr(), h.pin());
    let qs = queries(20_000, INTERFACES);
    let looking = {
        let stop = stop.clone();
        rt.spawn(async move {
            let client = RegistryClient::connect(addr, pin, "bench").await.unwrap();
            for q in qs.iter().take(500) {
                client.find(q.clone()).await.unwrap();
            }
            let mut lat = Vec::with_capacity(1 << 20);
            for q in qs.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                let found = client.find(q.clone()).await.unwrap();
                lat.push((t, Instant::now()));
                std::hint::black_box(found);
            }
            client.close();
            lat
        })
    };

    // Watch the storm from this thread: the first moment only the live leases are left.
    std::thread::sleep(due_at.saturating_duration_since(Instant::now()));
    let gone_at = loop {
        if reg.counts().0 <= LIVE as usize {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    std::thread::sleep(AFTER + ANCHOR);
    stop.store(true, Ordering::Relaxed);
    let lat = rt.block_on(looking).unwrap();
    assert_eq!(reg.counts().0, LIVE as usize);

    let start = lat.first().map(|l| l.0).unwrap();
    let after = gone_at + AFTER;
    println!(
        "storm: {DUE} leases due at once, all gone {:?} after their deadline",
        gone_at - due_at
    );
    println!(
        "lookup over QUIC, no storm, {} leases (anchor before): {}",
        DUE + LIVE,
        window(&lat, start, due_at)
    );
    println!(
        "lookup over QUIC, from the deadline until all are gone: {}",
        window(&lat, due_at, gone_at)
    );
    println!(
        "lookup over QUIC, from the deadline until 1 s after (write-behind included): {}",
        window(&lat, due_at, after)
    );
    println!(
        "lookup over QUIC, no storm, {LIVE} leases (anchor after): {}",
        window(&lat, after, Instant::now())
    );
    drop(reg);
    rt.block_on(h.shutdown());
}
