//! Leased event registrations at scale: 10,000 registrations, each with a listener over
//! loopback QUIC (40 client connections of 250 listeners, one key each; a connection's
//! listeners share its listening stream), on one registry. Prints:
//! - the resident memory they add to this process (the registry's book, queues and streams,
//!   and the clients' side of the same streams: an upper bound on the registry's share),
//!   and the registry's share alone, measured the same way in-process without the network;
//! - how long a transition takes to reach every listener (p50, p99, max over every listener
//!   of 20 transitions, from just before the change is committed to the moment the
//!   listener's task has the notification decoded).
//!
//! The targets: under 20 MiB for 10,000 registrations; every listener reached
//! within 100 ms p99.
#![allow(clippy::unwrap_used)]

mod support;

use courier_protocol::{Interest, VendorKey};
use courier_transport::RegistryClient;
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::mpsc;

const REGISTRATIONS: u32 = 10_000;
const PER_CONNECTION: u32 = 250;
const TRANSITIONS: u32 = 20;
const INTERFACE: &str = "bench:pkg0/api";

fn interest() -> Interest {
    Interest {
        interface: Some(INTERFACE.into()),
        ttl_ms: 3_600_000,
        ..Default::default()
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The registry's own share: registrations and listening streams' queues through the
/// driver, no network.
fn in_process() {
    let dir = tempfile::tempdir().unwrap();
    let registry = courier_registry::Registry::open(config(dir.path())).unwrap();
    let before = rss_bytes();
    let mut feeds = Vec::new();
    let mut matchers = Vec::with_capacity(REGISTRATIONS as usize);
    for i in 0..REGISTRATIONS {
        if i % PER_CONNECTION == 0 {
            feeds.push(registry.open_listening());
        }
        let stream = feeds.last().unwrap().stream;
        let owner = VendorKey::of(&key(1_000 + i / PER_CONNECTION));
        let grant = registry.register_interest(owner, &interest()).unwrap();
        matchers.push(registry.listen(owner, grant.id, stream).unwrap());
    }
    let added = rss_bytes().saturating_sub(before);
    println!(
        "in-process: {} registrations listened to on {} streams add {:.1} MiB resident ({:.0} bytes each)",
        registry.interest_count(),
        feeds.len(),
        mib(added),
        added as f64 / f64::from(REGISTRATIONS)
    );
}

fn main() {
    in_process();

    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let registry = courier_registry::Registry::open(config(dir.path())).unwrap();
    let h = rt.block_on(serve(registry));
    let vendors: Vec<_> = (0..100).map(key).collect();

    // One registration on the interface first, so the connections and the runtime are
    // warm before the baseline is read.
    h.registry()
        .load_bulk(
            h.registry().now(),
            vec![(synthetic(0, 1_000, &vendors), 3_000_000)],
        )
        .unwrap();
    let connections = REGISTRATIONS / PER_CONNECTION;
    let clients: Vec<RegistryClient> = rt.block_on(async {
        let mut out = Vec::new();
        for c in 0..connections {
            let client = RegistryClient::connect(h.local_addr(), h.pin(), "bench")
                .await
                .unwrap();
            client.authenticate(&key(1_000 + c)).await.unwrap();
            out.push(client);
        }
        out
    });
    let before = rss_bytes();

    // Every listener's task sends (its index, when it got a notification) here.
    let (tx, mut rx) = mpsc::unbounded_channel::<Instant>();
    let started = Instant::now();
    rt.block_on(async {
        for (c, client) in clients.iter().enumerate() {
            for _ in 0..PER_CONNECTION {
                let grant = client.register_interest(interest()).await.unwrap();
                let mut listener = client.listen(grant.id, grant.next_seq).await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Ok(Some(batch)) = listener.next().await {
                        let now = Instant::now();
                        assert!(batch.missed.is_none(), "listener on connection {c} missed");
                        for _ in &batch.notifications {
                            let _ = tx.send(now);
                        }
                    }
                });
            }
        }
    });
    // The listeners' streams are open once the registry has them all.
    while h.registry().interest_count() < REGISTRATIONS as usize {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let added = rss_bytes().saturating_sub(before);
    println!(
        "over QUIC: {REGISTRATIONS} registrations and listeners on {connections} connections set up in {:?}; \
         they add {:.1} MiB resident to this process (registry and clients)",
        started.elapsed(),
        mib(added)
    );

    let mut latencies = Vec::with_capacity((REGISTRATIONS * TRANSITIONS) as usize);
    for t in 0..TRANSITIONS {
        // A new registration on the watched interface: one `appeared` for every listener.
        let manifest = synthetic((t + 1) * 1_000, 1_000, &vendors);
        let t0 = Instant::now();
        h.registry()
            .load_bulk(h.registry().now(), vec![(manifest, 3_000_000)])
            .unwrap();
        for _ in 0..REGISTRATIONS {
            let at = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), rx.recv()).await })
                .expect("a listener was not reached within 10 s")
                .unwrap();
            latencies.push(at.saturating_duration_since(t0).as_nanos() as u64);
        }
    }
    let (p50, p99, max) = percentiles(latencies);
    println!(
        "a transition reaches each of {REGISTRATIONS} listeners: p50 {p50:?}, p99 {p99:?}, max {max:?} \
         ({TRANSITIONS} transitions; target p99 < 100 ms)"
    );
    drop(clients);
    rt.block_on(h.shutdown());
}
