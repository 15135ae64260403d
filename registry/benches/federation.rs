//! A hierarchy on one machine: 1 root and 10 child registries (each a real registry with
//! its store, QUIC server and link to the root, in this process), 10,000 registrations at
//! the root over 1,000 interfaces, every child mirroring everything, and 10,000 simulated
//! clients (1,000 per child, each one fetch of a proxy component, over 4 connections per
//! child). Prints:
//! - the first copy of the catalog by all 10 children;
//! - propagation: from a registration acknowledged at the root to its event at each child,
//!   against the anchor of the same event reaching a subscriber of the root itself;
//! - bytes the root sent for the 10,000 fetches through the children (all the links
//!   received, components and feed), against the same fetches made at the root (a flat
//!   deployment);
//! - lookup latency at a child against the root's, the same queries over QUIC.
//!
//! Run: `cargo bench -p courier-registry --bench federation`.
#![allow(clippy::unwrap_used)]

mod support;

use courier_protocol::{AdminAction, ContentHash, EventKind, LeaseId, MirrorRule, VendorKey};
use courier_registry::{ParentConfig, ParentLink, Registry, RegistryHandle, follow_parent};
use courier_transport::RegistryClient;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;

const CHILDREN: u32 = 10;
const REGISTRATIONS: u32 = 10_000;
const INTERFACES: u32 = 1_000;
const CLIENTS_PER_CHILD: usize = 1_000;
const CONNECTIONS_PER_CHILD: usize = 4;
const PROPAGATED: usize = 100;

fn main() {
    let rt = runtime();
    rt.block_on(run());
}

struct Child {
    handle: RegistryHandle,
    _link: ParentLink,
    _dir: tempfile::TempDir,
}

async fn run() {
    let root_dir = tempfile::tempdir().unwrap();
    let operator = key(900_000);
    let mut config = support::config(root_dir.path());
    config.operators = vec![VendorKey::of(&operator)];
    let registry = Registry::open(config).unwrap();
    bulk_load(&registry, REGISTRATIONS, INTERFACES);
    let root = serve(registry).await;
    root.registry()
        .place_in_hierarchy(VendorKey::of(&key(900_001)), Vec::new());
    let admin = RegistryClient::connect(root.local_addr(), root.pin(), "bench")
        .await
        .unwrap();
    admin.authenticate(&operator).await.unwrap();

    // The children: allowed, a rule that mirrors everything, linked.
    let t = Instant::now();
    let mut children = Vec::new();
    for i in 0..CHILDREN {
        let own = key(910_000 + i);
        admin
            .admin(AdminAction::AllowChild {
                key: VendorKey::of(&own),
                name: format!("site-{i}"),
            })
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = support::config(dir.path());
        config.operators = vec![VendorKey::of(&operator)];
        let handle = serve(Registry::open(config).unwrap()).await;
        handle
            .registry()
            .place_in_hierarchy(VendorKey::of(&own), Vec::new());
        let op = RegistryClient::connect(handle.local_addr(), handle.pin(), "bench")
            .await
            .unwrap();
        op.authenticate(&operator).await.unwrap();
        op.admin(AdminAction::AddMirrorRule(MirrorRule {
            id: 0,
            name: "*".into(),
            vendor: None,
            interface: None,
            version: None,
            approval: false,
        }))
        .await
        .unwrap();
        let link = follow_parent(
            handle.registry().clone(),
            ParentConfig {
                addr: root.local_addr(),
                pin: root.pin(),
                key: own,
                report_every: Duration::from_millis(200),
                refresh_every: courier_registry::DEFAULT_REFRESH_EVERY,
                prefetch: false,
                fetch_deadline: courier_registry::DEFAULT_FETCH_DEADLINE,
            },
        );
        children.push(Child {
            handle,
            _link: link,
            _dir: dir,
        });
    }
    wait_until(|| {
        children
            .iter()
            .all(|c| c.handle.registry().mirror_status().0.mirrored >= u64::from(REGISTRATIONS))
    })
    .await;
    println!(
        "first copy: {REGISTRATIONS} registrations mirrored by {CHILDREN} children in {:?}",
        t.elapsed()
    );

    propagation(&root, &children).await;
    bytes(&root, &children).await;
    lookups(&root, &children[0]).await;
}

/// Polls `f` every 10 ms, for up to 5 minutes.
async fn wait_until(mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(300), "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Collects the times `Registered` events arrive on `feed`, by lease, until `n` arrived.
fn arrivals(
    client: RegistryClient,
    n: usize,
) -> tokio::task::JoinHandle<HashMap<LeaseId, Instant>> {
    tokio::spawn(async move {
        let mut feed = client.subscribe(None, u64::MAX).await.unwrap();
        let mut seen = HashMap::new();
        while seen.len() < n {
            let batch = feed.next().await.unwrap().unwrap();
            let at = Instant::now();
            for e in batch.events {
                if e.kind == EventKind::Registered {
                    seen.insert(e.lease, at);
                }
            }
        }
        seen
    })
}

async fn connect(h: &RegistryHandle) -> RegistryClient {
    RegistryClient::connect(h.local_addr(), h.pin(), "bench")
        .await
        .unwrap()
}

async fn propagation(root: &RegistryHandle, children: &[Child]) {
    let mut feeds = vec![arrivals(connect(root).await, PROPAGATED)];
    for c in children {
        feeds.push(arrivals(connect(&c.handle).await, PROPAGATED));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let vendor_key = key(920_000);
    let vendor = connect(root).await;
    vendor.authenticate(&vendor_key).await.unwrap();
    // From the moment each registration is sent.
    let mut acked = HashMap::new();
    for i in 0..PROPAGATED {
        let sent = Instant::now();
        let grant = vendor
            .register(echo_registration(&vendor_key, &format!("fed/echo{i}")))
            .await
            .unwrap();
        acked.insert(grant.lease, sent);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all = Vec::new();
    for f in feeds {
        all.push(f.await.unwrap());
    }
    let delays = |seen: &HashMap<LeaseId, Instant>| -> Vec<u64> {
        acked
            .iter()
            .map(|(lease, t)| seen[lease].saturating_duration_since(*t).as_nanos() as u64)
            .collect()
    };
    let (a50, a99, _) = percentiles(delays(&all[0]));
    let mut child_delays: Vec<u64> = all[1..].iter().flat_map(&delays).collect();
    child_delays.sort_unstable();
    let p90 = Duration::from_nanos(child_delays[child_delays.len() * 9 / 10]);
    let (c50, c99, cmax) = percentiles(child_delays);
    println!(
        "propagation, from a registration sent at the root to its event at every child ({} \
         samples): p50 {c50:?}, p90 {p90:?}, p99 {c99:?}, max {cmax:?}; anchor, to the \
         event at a subscriber of the root: p50 {a50:?}, p99 {a99:?}; ratio p50 {:.1}x",
        PROPAGATED * children.len(),
        c50.as_secs_f64() / a50.as_secs_f64()
    );
}

/// `CLIENTS_PER_CHILD` fetches at `h` over `CONNECTIONS_PER_CHILD` connections, half of the
/// echo component and half of the kv one. Returns the bytes the connections received.
async fn fetch_all(addr: std::net::SocketAddr, pin: courier_protocol::SpkiPin) -> u64 {
    let comps = [courier_proxy_artifacts::ECHO, courier_proxy_artifacts::KV];
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS_PER_CHILD {
        let client = RegistryClient::connect(addr, pin, "bench").await.unwrap();
        tasks.push(tokio::spawn(async move {
            for i in (c..CLIENTS_PER_CHILD).step_by(CONNECTIONS_PER_CHILD) {
                let comp = comps[i % 2];
                let bytes = client
                    .fetch(
                        ContentHash::of(comp),
                        comp.len() as u64,
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
                assert_eq!(bytes.len(), comp.len());
            }
            let rx = client.connection().stats().udp_rx.bytes;
            client.close();
            rx
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

async fn bytes(root: &RegistryHandle, children: &[Child]) {
    // The two components, registered at the root and mirrored everywhere.
    let vendor_key = key(930_000);
    let vendor = connect(root).await;
    vendor.authenticate(&vendor_key).await.unwrap();
    vendor
        .register(echo_registration(&vendor_key, "fed/echo"))
        .await
        .unwrap();
    let mut kv = echo_registration(&vendor_key, "fed/kv");
    {
        let mut m = kv.manifest.verify().unwrap().into_inner();
        m.exports = vec![courier_protocol::Export {
            interface: "courier:kv/store@0.1.0".into(),
            functions: vec!["get".into()],
        }];
        m.component_hash = ContentHash::of(courier_proxy_artifacts::KV);
        m.component_size = courier_proxy_artifacts::KV.len() as u64;
        kv.manifest = courier_protocol::SignedManifest::sign(&m, &vendor_key);
        kv.component = courier_proxy_artifacts::KV.to_vec();
    }
    vendor.register(kv).await.unwrap();
    let kv_hash = ContentHash::of(courier_proxy_artifacts::KV);
    let echo_hash = ContentHash::of(courier_proxy_artifacts::ECHO);
    wait_until(|| {
        children.iter().all(|c| {
            let comps = c.handle.registry().mirrored_components();
            comps.contains(&kv_hash) && comps.contains(&echo_hash)
        })
    })
    .await;
    let received = |cs: &[Child]| -> u64 {
        cs.iter()
            .map(|c| c.handle.registry().mirror_status().0.received_bytes)
            .sum()
    };
    // Counted at each report (every 200 ms): wait for one before and after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = received(children);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in children {
        let (addr, pin) = (c.handle.local_addr(), c.handle.pin());
        tasks.push(tokio::spawn(fetch_all(addr, pin)));
    }
    let mut to_clients = 0;
    for task in tasks {
        to_clients += task.await.unwrap();
    }
    let through_children = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from_root = received(children) - before;
    let t = Instant::now();
    let mut flat = 0;
    for _ in 0..CHILDREN {
        flat += fetch_all(root.local_addr(), root.pin()).await;
    }
    let flat_time = t.elapsed();
    let clients = CHILDREN as usize * CLIENTS_PER_CHILD;
    println!(
        "{clients} clients' fetches through {CHILDREN} children in {through_children:?}: the root \
         sent {} KiB over the links (the children sent {} KiB to their clients); the same \
         fetches at the root (flat) in {flat_time:?}: {} KiB; ratio {:.4}",
        from_root / 1024,
        to_clients / 1024,
        flat / 1024,
        from_root as f64 / flat as f64
    );
}

async fn lookups(root: &RegistryHandle, child: &Child) {
    let qs = queries(5_000, INTERFACES);
    let mut out = Vec::new();
    for h in [root, &child.handle] {
        let client = connect(h).await;
        for q in qs.iter().take(500) {
            client.find(q.clone()).await.unwrap();
        }
        let mut lat = Vec::with_capacity(qs.len());
        let mut found = 0;
        for q in &qs {
            let t = Instant::now();
            found += client.find(q.clone()).await.unwrap().len();
            lat.push(t.elapsed().as_nanos() as u64);
        }
        out.push((percentiles(lat), found));
    }
    let ((r50, r99, _), rf) = out[0];
    let ((c50, c99, _), cf) = out[1];
    assert_eq!(rf, cf, "the child answers as the root does");
    println!(
        "lookups over QUIC, {} queries: child p50 {c50:?}, p99 {c99:?}; root p50 {r50:?}, \
         p99 {r99:?}; ratio p50 {:.2}x",
        qs.len(),
        c50.as_secs_f64() / r50.as_secs_f64()
    );
}
