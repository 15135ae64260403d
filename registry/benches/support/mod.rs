//! Shared helpers for the registry benchmarks: a loopback registry, synthetic signed
//! manifests over many interfaces, percentiles.
#![allow(clippy::unwrap_used, dead_code)]

use courier_protocol::ErrorKind;
use courier_protocol::{
    AttributeConstraint, ContentHash, Export, LeaseId, Manifest, Register, ServiceQuery,
    SignedManifest, SigningKey, SpkiPin, VendorKey,
};
use courier_registry::{Registry, RegistryConfig, RegistryHandle, ServerConfig};
use courier_transport::{ClientError, RegistryClient, client_endpoint};
use std::time::{Duration, Instant};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn wall_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn config(dir: &std::path::Path) -> RegistryConfig {
    let mut c = RegistryConfig::new(dir);
    c.max_ttl = Duration::from_secs(3600);
    c
}

/// Serves `registry` on a loopback port with the default caps, except two.
pub async fn serve(registry: Registry) -> RegistryHandle {
    serve_with(registry, |_| {}).await
}

/// [`serve`], with `tweak` applied to the server's configuration last.
pub async fn serve_with(
    registry: Registry,
    tweak: impl FnOnce(&mut ServerConfig),
) -> RegistryHandle {
    let mut c = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    // Every vendor of a benchmark connects from 127.0.0.1.
    c.max_connections_per_peer = c.max_connections;
    // One vendor renewing back to back can pass the per-connection cap (25,000 requests/s)
    // on a fast hour of this machine: measure the path, not the cap (the total cap stays).
    c.request_rate_per_connection = c.request_rate;
    tweak(&mut c);
    courier_registry::serve(std::sync::Arc::new(registry), c)
        .await
        .unwrap()
}

pub fn key(seed: u32) -> SigningKey {
    let mut b = [7u8; 32];
    b[..4].copy_from_slice(&seed.to_le_bytes());
    SigningKey::from_bytes(&b)
}

/// The synthetic manifest number `i`: interface `bench:pkg<i % interfaces>/api` at a
/// version 0.1.0..0.3.0, functions `call` and `ping`, a region and a tier, vendor
/// `i % vendors`.
pub fn synthetic(i: u32, interfaces: u32, keys: &[SigningKey]) -> SignedManifest {
    let key = &keys[(i as usize) % keys.len()];
    let now = wall_now();
    let m = Manifest {
        name: format!("vendor{}/svc{i}", (i as usize) % keys.len()),
        version: format!("1.{}.0", i % 7),
        exports: vec![Export {
            interface: format!("bench:pkg{}/api@0.{}.0", i % interfaces, 1 + i % 3),
            functions: vec!["call".into(), "ping".into()],
        }],
        imports: vec!["courier:proxy/provider@0.1.0".into()],
        attributes: [
            (
                "region".to_string(),
                ["eu", "us", "ap"][(i % 3) as usize].to_string(),
            ),
            (
                "tier".to_string(),
                ["gold", "silver"][(i % 2) as usize].to_string(),
            ),
        ]
        .into(),
        endpoints: vec![format!("10.0.{}.{}:7901", (i / 250) % 250, i % 250)],
        provider_pin: SpkiPin([3; 32]),
        issued_at_ms: now - 60_000,
        not_after_ms: now + 30 * 24 * 3_600_000,
        component_hash: ContentHash::of(&i.to_le_bytes()),
        component_size: 50_000,
        vendor_key: VendorKey::of(key),
    };
    SignedManifest::sign(&m, key)
}

/// Loads `n` synthetic registrations over `interfaces` interfaces in chunks of 5,000 (so
/// the generated manifests never sit in memory all at once).
pub fn bulk_load(registry: &Registry, n: u32, interfaces: u32) {
    bulk_load_in(registry, n, interfaces, 5_000);
}

/// [`bulk_load`] in chunks of `chunk` registrations, one durable commit each.
pub fn bulk_load_in(registry: &Registry, n: u32, interfaces: u32, chunk: u32) {
    let keys: Vec<SigningKey> = (0..100).map(key).collect();
    let mut i = 0;
    while i < n {
        let end = (i + chunk).min(n);
        let items = (i..end)
            .map(|j| (synthetic(j, interfaces, &keys), 3_000_000))
            .collect();
        registry.load_bulk(registry.now(), items).unwrap();
        i = end;
    }
}

/// p50, p99 and max of latencies in nanoseconds.
pub fn percentiles(mut v: Vec<u64>) -> (Duration, Duration, Duration) {
    v.sort_unstable();
    let at = |q: f64| Duration::from_nanos(v[((v.len() as f64 - 1.0) * q) as usize]);
    (at(0.50), at(0.99), at(1.0))
}

/// This process's whole resident set, in bytes.
pub fn rss_bytes() -> u64 {
    courier_test_support::resident::resident(None).total()
}

/// `n` vendors, each with its own key (seeds from `first`), its own authenticated
/// connection (on one client UDP socket if `shared_endpoint`) and one lease of 10 min.
pub async fn vendors(
    h: &RegistryHandle,
    n: usize,
    shared_endpoint: bool,
    first: u32,
) -> Vec<(RegistryClient, LeaseId)> {
    let ep = client_endpoint(h.local_addr()).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let key = key(first + i as u32);
        let c = if shared_endpoint {
            RegistryClient::connect_with(ep.clone(), h.local_addr(), h.pin(), "bench")
                .await
                .unwrap()
        } else {
            RegistryClient::connect(h.local_addr(), h.pin(), "bench")
                .await
                .unwrap()
        };
        c.authenticate(&key).await.unwrap();
        let name = format!("bench{}/echo", first + i as u32);
        let grant = c.register(echo_registration(&key, &name)).await.unwrap();
        out.push((c, grant.lease));
    }
    out
}

/// A registration of the echo proxy under `name` by `key`, component included, for 10 min.
pub fn echo_registration(key: &SigningKey, name: &str) -> Register {
    let echo = courier_proxy_artifacts::ECHO;
    let now = wall_now();
    let m = Manifest {
        name: name.into(),
        version: "1.0.0".into(),
        exports: vec![Export {
            interface: "courier:echo/echo@0.1.0".into(),
            functions: vec!["say".into()],
        }],
        imports: vec![],
        attributes: Default::default(),
        endpoints: vec!["127.0.0.1:1".into()],
        provider_pin: SpkiPin([1; 32]),
        issued_at_ms: now - 1000,
        not_after_ms: now + 3_600_000,
        component_hash: ContentHash::of(echo),
        component_size: echo.len() as u64,
        vendor_key: VendorKey::of(key),
    };
    Register {
        manifest: SignedManifest::sign(&m, key),
        component: echo.to_vec(),
        ttl_ms: 600_000,
        staged: false,
    }
}

/// Every vendor renews in a loop (one renewal in flight each) for `run`; returns
/// (renewals/s, latencies in ns), counting only the renewals answered. A renewal the
/// registry refuses as `Busy` (its registry-wide request cap, which 64 vendors pass on a
/// fast hour of this machine) is counted apart and printed; any other failure stops the
/// bench.
pub async fn renew_for(vs: &[(RegistryClient, LeaseId)], run: Duration) -> (f64, Vec<u64>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, lease) in vs.iter().cloned() {
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut busy) = (Vec::with_capacity(200_000), 0u64);
            while start.elapsed() < run {
                let t = Instant::now();
                match c.renew(lease, 600_000).await {
                    Ok(_) => lat.push(t.elapsed().as_nanos() as u64),
                    Err(ClientError::Registry(e)) if e.kind == ErrorKind::Busy => busy += 1,
                    Err(e) => panic!("renewal failed: {e}"),
                }
            }
            (lat, busy)
        }));
    }
    let (mut all, mut busy) = (Vec::new(), 0);
    for t in tasks {
        let (lat, refused) = t.await.unwrap();
        all.extend(lat);
        busy += refused;
    }
    let secs = start.elapsed().as_secs_f64();
    if busy > 0 {
        eprintln!("  {busy} renewals refused as busy by the registry's request cap (not counted)");
    }
    (all.len() as f64 / secs, all)
}

/// A deterministic mix of `n` queries over `interfaces` synthetic interfaces: plain, with
/// a version requirement, with a function, with attribute constraints.
pub fn queries(n: usize, interfaces: u32) -> Vec<ServiceQuery> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut q = ServiceQuery {
                interface: format!("bench:pkg{}/api", x % interfaces as u64),
                limit: 10,
                ..Default::default()
            };
            match i % 4 {
                1 => q.version_req = Some("^0.2".into()),
                2 => q.functions = vec!["call".into()],
                3 => {
                    q.attributes = vec![
                        AttributeConstraint::Equals("region".into(), "eu".into()),
                        AttributeConstraint::Present("tier".into()),
                    ]
                }
                _ => {}
            }
            q
        })
        .collect()
}
