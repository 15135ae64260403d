//! `cargo bench -p courier-bench --bench cluster`: cluster mode on a real etcd member
//! (Debian's `etcd-server`, started here on loopback), in one sitting:
//! - propagation: from sending a registration to the writer to the moment a standby
//!   answers lookups for it (its component copied from the writer first, every
//!   registration with a component of its own), against etcd's own put → watch delivery
//!   of a value of the same size, the floor any node that learns through etcd sits on;
//! - renewals: 64 vendors, each on a connection and socket of its own, renewing back to
//!   back at the writer alone, then spread over the writer and two standbys (every node
//!   takes the renewals of the vendors connected to it, the standbys writing their rows
//!   to etcd in batches). All three nodes share this machine's cores: the ratio says what
//!   the cluster's path costs here, not what three machines would give;
//! - reattach: 63 lease keepers (6 s leases) renewing at the node given first (a third each at the
//!   writer and the two standbys); one standby is cut off as a kill -9 would (a relay in
//!   front of it stops passing packets, so nothing answers and nothing is closed), and the
//!   time is taken until every one of its vendors has renewed at another node;
//! - takeover: from the writer's session ending to the standby serving as the writer with
//!   every registration loaded.
//!
//! Without etcd installed, it prints one skip line.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../registry/benches/support/mod.rs"]
mod registry_support;

use courier_bench::stats::{Run, human, ratio};
use courier_cluster::{Advert, Node, NodeConfig, Standby, Writer};
use courier_protocol::{LeaseId, Register, SpkiPin, VendorKey};
use courier_provider::{BundleBuilder, KeeperConfig, LeaseKeeper, LeaseState};
use courier_registry::store_records::encode_manifest;
use courier_registry::{Registry, RegistryConfig, RegistryHandle, ServerConfig};
use courier_test_support::etcd::{EtcdMember, SKIP_LINE, etcd_binary};
use courier_test_support::relay::Relay;
use courier_test_support::{key, wall_now};
use courier_transport::RegistryClient;
use etcd_client::{Client, WatchOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registrations timed one at a time.
const REGISTRATIONS: usize = 300;
/// Vendors renewing in the renewal comparison.
const RENEWING: usize = 64;
/// How long each renewal run lasts.
const RENEW_RUN: Duration = Duration::from_secs(3);
const SESSION_TTL: Duration = Duration::from_secs(2);

fn main() {
    if etcd_binary().is_none() {
        println!("{SKIP_LINE}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let member = EtcdMember::start(&dir.path().join("etcd")).unwrap();
    let urls = vec![member.client_url()];
    let requests = registrations();
    let value_len = encode_manifest(&requests[0].1.manifest).len();

    let etcd = put_to_watch(&urls[0], REGISTRATIONS, value_len).await;

    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = join(&urls, "a").await;
    let fence = a.lead().await.unwrap();
    let writer_a = open_writer(&a, &dir_a, fence).await;
    let writer = writer_a.registry().clone();
    let handle_a = courier_registry::serve(writer.clone(), loopback())
        .await
        .unwrap();
    advertise(&a, handle_a.local_addr(), handle_a.pin()).await;
    let b = join(&urls, "b").await;
    let standby = {
        let (b, dir_b) = (b.clone(), dir_b.clone());
        tokio::task::spawn_blocking(move || Standby::open(&b, &dir_b, config(&dir_b)))
            .await
            .unwrap()
            .unwrap()
    };

    let mut lat = Vec::with_capacity(REGISTRATIONS);
    let mut acked = Vec::with_capacity(REGISTRATIONS);
    for (i, (vendor, req)) in requests.into_iter().enumerate() {
        let w = writer.clone();
        let sent = Instant::now();
        tokio::task::spawn_blocking(move || w.register(w.now(), &vendor, req))
            .await
            .unwrap()
            .unwrap();
        acked.push(sent.elapsed().as_nanos() as u64);
        while standby.registry().counts().1 <= i {
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        lat.push(sent.elapsed().as_nanos() as u64);
    }
    let acked = Run::new(acked, None);
    let courier = Run::new(lat, None);

    println!(
        "cluster mode, one etcd member on loopback, {REGISTRATIONS} registrations one at a time"
    );
    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "measure", "courier", "etcd", "ratio"
    );
    for (what, c, e) in [
        ("propagation to a standby, p50", courier.p50(), etcd.p50()),
        ("propagation to a standby, p99", courier.p99(), etcd.p99()),
    ] {
        println!(
            "{what:<44} {:>12} {:>12} {:>8}",
            human(c),
            human(e),
            ratio(c.as_secs_f64() / e.as_secs_f64().max(1e-9))
        );
    }
    println!(
        "(etcd: from sending a put of {value_len} bytes to its delivery on a watch; courier: \
         from sending a registration to the writer to a standby's lookup finding it, the \
         component copied first; the writer acknowledged it after p50 {}, p99 {})",
        human(acked.p50()),
        human(acked.p99())
    );

    // Renewals: the writer alone, then the writer and two standbys.
    let handle_b = courier_registry::serve(standby.registry().clone(), loopback())
        .await
        .unwrap();
    let (dir_c, c) = (dir.path().join("c"), join(&urls, "c").await);
    let standby_c = {
        let (c, dir_c) = (c.clone(), dir_c.clone());
        tokio::task::spawn_blocking(move || Standby::open(&c, &dir_c, config(&dir_c)))
            .await
            .unwrap()
            .unwrap()
    };
    let handle_c = courier_registry::serve(standby_c.registry().clone(), loopback())
        .await
        .unwrap();
    let ((one, one_writes), (three, three_writes)) = renewals(
        &urls[0],
        &handle_a,
        [&handle_b, &handle_c],
        [standby.registry(), standby_c.registry()],
    )
    .await;
    println!();
    println!(
        "renewals, {RENEWING} vendors each on a connection of its own, {} s each",
        RENEW_RUN.as_secs()
    );
    println!();
    println!(
        "{:<44} {:>12} {:>10} {:>10} {:>14} {:>8}",
        "where", "per second", "p50", "p99", "etcd writes/1k", "ratio"
    );
    for (what, run, writes) in [
        ("1 node (all at the writer)", &one, one_writes),
        (
            "3 nodes (spread over writer and standbys)",
            &three,
            three_writes,
        ),
    ] {
        println!(
            "{what:<44} {:>12.0} {:>10} {:>10} {:>14.3} {:>8}",
            run.per_sec.unwrap_or(0.0),
            human(run.p50()),
            human(run.p99()),
            writes as f64 * 1000.0
                / (run.per_sec.unwrap_or(0.0) * RENEW_RUN.as_secs_f64()).max(1.0),
            ratio(run.per_sec.unwrap_or(0.0) / one.per_sec.unwrap_or(1.0).max(1e-9))
        );
    }
    println!(
        "(one machine, 2 cores shared by the nodes, etcd and the vendors: the ratio is the \
         cost of the cluster's path here; across machines each node's share is its own)"
    );
    let (each, all) = reattach(&handle_a, &handle_b, &handle_c).await;
    println!();
    println!(
        "reattach after a standby is cut off (as by kill -9), {KEEPERS} keepers, a third of \
         them at it, lease {} s (renewed every {} s): each of its vendors renewed elsewhere \
         after p50 {}, all after {} (bound: two renewal intervals, {} s)",
        KEEPER_TTL.as_secs(),
        KEEPER_TTL.as_secs() / 2,
        human(each),
        human(all),
        KEEPER_TTL.as_secs()
    );
    handle_b.shutdown().await;
    handle_c.shutdown().await;
    drop(standby_c);
    c.leave();
    // Every renewed lease is still live at the writer.
    assert_eq!(writer.counts().1, REGISTRATIONS + RENEWING);

    // Takeover: the writer's session ends; the standby is elected, loads and serves.
    handle_a.shutdown().await;
    drop(writer_a);
    let gone = Instant::now();
    a.leave();
    drop(standby);
    let fence = b.lead().await.unwrap();
    let elected = gone.elapsed();
    let new_writer = open_writer(&b, &dir_b, fence).await;
    let took = gone.elapsed();
    assert_eq!(new_writer.registry().counts().1, REGISTRATIONS + RENEWING);
    println!();
    println!(
        "takeover after the writer's session ended: elected in {}, serving {} \
         registrations after {}",
        human(elected),
        REGISTRATIONS + RENEWING,
        human(took)
    );
    drop(new_writer);
    b.leave();
    drop(member);
}

/// [`RENEWING`] vendors register at the writer `a`, then renew back to back for
/// [`RENEW_RUN`]: at `a` alone, then each at node `i % 3` (`a` and the standbys `others`,
/// whose registries are `followers`). Returns both runs, each with the etcd transactions
/// (revisions) it cost, its rows' flushes included.
async fn renewals(
    url: &str,
    a: &RegistryHandle,
    others: [&RegistryHandle; 2],
    followers: [&Arc<Registry>; 2],
) -> ((Run, i64), (Run, i64)) {
    let first = 10_000;
    let at_writer = registry_support::vendors(a, RENEWING, false, first).await;
    let want = REGISTRATIONS + RENEWING;
    while followers.iter().any(|r| r.counts().1 < want) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let timed = |vs: Vec<(RegistryClient, LeaseId)>| async move {
        // Warm up the connections first, as the single node's runs do.
        registry_support::renew_for(&vs, Duration::from_millis(300)).await;
        // What the warm-up renewed is written by the next flushes.
        tokio::time::sleep(FLUSH * 2).await;
        let before = revision(url).await;
        let start = Instant::now();
        let (_, lat) = registry_support::renew_for(&vs, RENEW_RUN).await;
        let run = Run::new(lat, Some(start.elapsed()));
        tokio::time::sleep(FLUSH * 2).await;
        ((run, revision(url).await - before), vs)
    };
    let (one, at_writer) = timed(at_writer).await;
    let mut spread = Vec::with_capacity(RENEWING);
    for (i, (client, lease)) in at_writer.into_iter().enumerate() {
        let node = match i % 3 {
            0 => {
                spread.push((client, lease));
                continue;
            }
            k => others[k - 1],
        };
        client.close();
        let c = RegistryClient::connect(node.local_addr(), node.pin(), "bench")
            .await
            .unwrap();
        c.authenticate(&registry_support::key(first + i as u32))
            .await
            .unwrap();
        spread.push((c, lease));
    }
    let (three, spread) = timed(spread).await;
    for (c, _) in spread {
        c.close();
    }
    (one, three)
}

/// Keepers in the reattach measure.
const KEEPERS: usize = 63;
/// Their lease.
const KEEPER_TTL: Duration = Duration::from_secs(6);

/// [`KEEPERS`] lease keepers, keeper `i` given node `i % 3` first (`c` through a relay),
/// renew; the relay is cut; returns how long `c`'s vendors took to renew elsewhere: the
/// median and the last. Every keeper keeps its lease; all are shut down at the end.
async fn reattach(
    a: &RegistryHandle,
    b: &RegistryHandle,
    c: &RegistryHandle,
) -> (Duration, Duration) {
    let relay = Relay::start(c.local_addr()).await;
    let nodes = [
        (a.local_addr(), a.pin()),
        (b.local_addr(), b.pin()),
        (relay.addr, c.pin()),
    ];
    let keepers: Vec<LeaseKeeper> = (0..KEEPERS)
        .map(|i| {
            let key = registry_support::key(20_000 + i as u32);
            let home = nodes[i % 3];
            let bundle = BundleBuilder::new(courier_proxy_artifacts::ECHO)
                .name(format!("keeper{i}/echo"))
                .version("0.1.0")
                .endpoint("127.0.0.1:7901")
                .provider_pin(SpkiPin([7; 32]))
                .sign(&key)
                .unwrap();
            LeaseKeeper::start_with(
                home.0,
                home.1,
                key,
                bundle,
                KeeperConfig {
                    backoff_initial: Duration::from_millis(50),
                    backoff_max: Duration::from_millis(300),
                    request_timeout: Duration::from_millis(800),
                    other_nodes: nodes.iter().copied().filter(|n| *n != home).collect(),
                    ..KeeperConfig::new(KEEPER_TTL)
                },
            )
        })
        .collect();
    let mut leases = Vec::new();
    for k in &keepers {
        leases.push(k.wait_active().await.unwrap());
    }
    // Two renewals each, at the nodes given first.
    tokio::time::sleep(KEEPER_TTL).await;
    let at_c: Vec<(usize, u64)> = (0..KEEPERS)
        .filter(|i| i % 3 == 2)
        .map(|i| (i, keepers[i].state().borrow().renewals()))
        .collect();
    let cut = Instant::now();
    relay.cut();
    let mut took = Vec::new();
    let mut waiting = at_c;
    while !waiting.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        waiting.retain(|(i, before)| {
            let moved = keepers[*i].state().borrow().renewals() > *before;
            if moved {
                took.push(cut.elapsed().as_nanos() as u64);
            }
            !moved
        });
    }
    for (i, (k, lease)) in keepers.iter().zip(&leases).enumerate() {
        let state = k.state().borrow().clone();
        let kept = matches!(state, LeaseState::Active { lease: l, .. } if l == *lease);
        assert!(
            kept,
            "every vendor keeps its lease: {i} had {lease}, now {state:?}"
        );
    }
    for k in keepers {
        k.shutdown().await.unwrap();
    }
    let run = Run::new(took, None);
    (run.p50(), run.at(1.0))
}

/// Each registration by a vendor of its own, with a component of its own (the echo
/// proxy with a custom section naming it).
fn registrations() -> Vec<(VendorKey, Register)> {
    (0..REGISTRATIONS)
        .map(|i| {
            let k = key(1).to_bytes();
            let mut seed = k;
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let signing = courier_protocol::SigningKey::from_bytes(&seed);
            let component = with_custom_section(courier_proxy_artifacts::ECHO, i);
            let bundle = BundleBuilder::new(component)
                .name(format!("bench/echo-{i}"))
                .version("0.1.0")
                .endpoint("127.0.0.1:7901")
                .provider_pin(SpkiPin([7; 32]))
                .sign(&signing)
                .unwrap();
            (
                VendorKey::of(&signing),
                bundle.register_request(Duration::from_secs(60)),
            )
        })
        .collect()
}

/// `wasm` with a custom section `courier-bench` holding `i` appended (a valid component
/// with another hash).
fn with_custom_section(wasm: &[u8], i: usize) -> Vec<u8> {
    let name = b"courier-bench";
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&(i as u64).to_le_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    let mut n = body.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&body);
    out
}

/// etcd's revision now (each transaction adds one).
async fn revision(url: &str) -> i64 {
    let mut client = Client::connect([url], None).await.unwrap();
    client
        .get("/", None)
        .await
        .unwrap()
        .header()
        .map_or(0, |h| h.revision())
}

/// etcd's own floor: a put of `len` bytes to its delivery on a watch, `n` times.
async fn put_to_watch(url: &str, n: usize, len: usize) -> Run {
    let mut client = Client::connect([url], None).await.unwrap();
    let mut stream = client
        .watch("/bench/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let value = vec![7u8; len];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let sent = Instant::now();
        client
            .put(format!("/bench/{i}"), value.clone(), None)
            .await
            .unwrap();
        loop {
            let resp = stream.message().await.unwrap().unwrap();
            if !resp.events().is_empty() {
                break;
            }
        }
        lat.push(sent.elapsed().as_nanos() as u64);
    }
    Run::new(lat, None)
}

/// The nodes' flush interval.
const FLUSH: Duration = Duration::from_millis(500);

fn config(dir: &Path) -> RegistryConfig {
    let mut c = RegistryConfig::new(dir);
    c.flush_interval = FLUSH;
    c
}

/// A loopback server whose caps fit a benchmark: every vendor connects from 127.0.0.1,
/// and one renewing back to back may pass the per-connection rate (as the single node's
/// benchmarks set).
fn loopback() -> ServerConfig {
    let mut c = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    c.max_connections_per_peer = c.max_connections;
    c.request_rate_per_connection = c.request_rate;
    c
}

async fn join(urls: &[String], name: &str) -> Arc<Node> {
    let config = NodeConfig {
        session_ttl: SESSION_TTL,
        ..NodeConfig::new(urls.to_vec(), "bench", name)
    };
    Arc::new(
        tokio::task::spawn_blocking(move || Node::join(config))
            .await
            .unwrap()
            .unwrap(),
    )
}

/// `node`'s registry as the writer, following the renewals other nodes take.
async fn open_writer(node: &Arc<Node>, dir: &Path, fence: courier_cluster::Fence) -> Writer {
    let (node, dir) = (node.clone(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        Writer::open(&node, &dir, fence, config(&dir), wall_now()).unwrap()
    })
    .await
    .unwrap()
}

async fn advertise(node: &Arc<Node>, addr: std::net::SocketAddr, pin: SpkiPin) {
    let node = node.clone();
    tokio::task::spawn_blocking(move || node.advertise(&Advert { addr, pin }))
        .await
        .unwrap()
        .unwrap();
}
