//! `cargo bench -p courier-bench --bench cluster`: cluster mode on a real etcd member
//! (Debian's `etcd-server`, started here on loopback), in one sitting:
//! - propagation: from sending a registration to the writer to the moment a standby
//!   answers lookups for it (its component copied from the writer first, every
//!   registration with a component of its own), against etcd's own put → watch delivery
//!   of a value of the same size, the floor any node that learns through etcd sits on;
//! - takeover: from the writer's session ending to the standby serving as the writer with
//!   every registration loaded.
//!
//! Without etcd installed, it prints one skip line.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use courier_bench::stats::{Run, human, ratio};
use courier_cluster::{Advert, Node, NodeConfig, Standby, takeover_wall_ms};
use courier_protocol::{Register, SpkiPin, VendorKey};
use courier_provider::BundleBuilder;
use courier_registry::store_records::encode_manifest;
use courier_registry::{Registry, RegistryConfig, ServerConfig};
use courier_test_support::etcd::{EtcdMember, SKIP_LINE, etcd_binary};
use courier_test_support::{key, wall_now};
use etcd_client::{Client, WatchOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registrations timed one at a time.
const REGISTRATIONS: usize = 300;
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
    let writer = open_writer(&a, &dir_a, fence, 0).await;
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

    // Takeover: the writer's session ends; the standby is elected, loads and serves.
    let gone = Instant::now();
    a.leave();
    handle_a.shutdown().await;
    drop(standby);
    let fence = b.lead().await.unwrap();
    let elected = gone.elapsed();
    let new_writer = open_writer(&b, &dir_b, fence, 0).await;
    let took = gone.elapsed();
    assert_eq!(new_writer.counts().1, REGISTRATIONS);
    println!();
    println!(
        "takeover after the writer's session ended: elected in {}, serving {REGISTRATIONS} \
         registrations after {}",
        human(elected),
        human(took)
    );
    b.leave();
    drop(member);
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

fn config(dir: &Path) -> RegistryConfig {
    let mut c = RegistryConfig::new(dir);
    c.flush_interval = Duration::from_millis(500);
    c
}

fn loopback() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
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

async fn open_writer(
    node: &Arc<Node>,
    dir: &Path,
    fence: courier_cluster::Fence,
    skew_ms: u64,
) -> Arc<Registry> {
    let (node, dir) = (node.clone(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let store = node.store(&dir, Some(fence)).unwrap();
        let c = config(&dir);
        let at = takeover_wall_ms(
            store.last_alive_ms().unwrap(),
            wall_now() + skew_ms,
            SESSION_TTL,
            c.flush_interval,
        );
        Arc::new(Registry::open_takeover(c, Box::new(store), at).unwrap())
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
