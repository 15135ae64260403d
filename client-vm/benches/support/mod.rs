//! The world the client benchmarks and the side-by-side harness (bench/) share: a loopback
//! registry with the echo, hostile-files and echo-digest proxies registered, the example
//! echo provider, clients of it, and direct native QUIC requests to the same provider.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use courier_client::{
    CallSpec, Client, ClientConfig, CompiledCodeKey, CompilerChoice, DEFAULT_DISK_CACHE_BYTES,
    DiskCacheConfig, PhaseTimings, ReportMode, SandboxConfig, TrustStore,
};
use courier_example_services as examples;
use courier_protocol::provider::{Call, ProviderHello, Reply};
use courier_protocol::{AttributeConstraint, PROTOCOL_VERSION, SigningKey, VendorKey};
use courier_provider::{BundleBuilder, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::{RegistryConfig, RegistryHandle};
use courier_transport::{Identity, RegistryClient, StreamPool};
use std::time::Duration;

pub const SAY: &str = r#"courier:echo/echo.say("hi")"#;

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub registry: RegistryHandle,
    pub provider: ServiceHandle,
    pub key: SigningKey,
    pub dir: tempfile::TempDir,
}

pub fn world() -> World {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let (registry, provider) = rt.block_on(async {
        let mut c = RegistryConfig::new(dir.path());
        c.max_ttl = Duration::from_secs(3600);
        let registry = courier_test_support::start_registry(c).await;
        let id = Identity::generate().unwrap();
        let provider = examples::echo_service()
            .serve("127.0.0.1:0".parse().unwrap(), &id)
            .await
            .unwrap();
        let vendor = RegistryClient::connect(registry.local_addr(), registry.pin(), "bench")
            .await
            .unwrap();
        vendor.authenticate(&key).await.unwrap();
        for (name, bytes) in [
            ("acme/echo", artifacts::ECHO),
            ("acme/files", artifacts::HOSTILE_FILES),
            ("acme/digest", artifacts::ECHO_DIGEST),
        ] {
            let bundle = BundleBuilder::new(bytes)
                .name(name)
                .version("1.0.0")
                .attribute("proxy", name)
                .endpoint(provider.local_addr().to_string())
                .provider_pin(provider.pin())
                .sign(&key)
                .unwrap();
            bundle
                .register_once(&vendor, &key, Duration::from_secs(3600))
                .await
                .unwrap();
        }
        (registry, provider)
    });
    World {
        rt,
        registry,
        provider,
        key,
        dir,
    }
}

pub fn client(w: &World, compiler: CompilerChoice, cache: bool) -> Client {
    client_with(w, compiler, cache, Duration::ZERO)
}

pub fn client_with(
    w: &World,
    compiler: CompilerChoice,
    cache: bool,
    lookup_ttl: Duration,
) -> Client {
    client_built(w, compiler, cache, lookup_ttl, None)
}

/// A fresh client (as a new `courier call` process has: nothing compiled in memory) that
/// keeps compiled code in the world's compiled-code directory.
pub fn client_from_disk(w: &World, compiler: CompilerChoice) -> Client {
    let disk = DiskCacheConfig {
        dir: w.dir.path().join("client-compiled"),
        key: CompiledCodeKey::from_bytes([3; 32]),
        max_bytes: DEFAULT_DISK_CACHE_BYTES,
    };
    client_built(w, compiler, true, Duration::ZERO, Some(disk))
}

pub fn client_built(
    w: &World,
    compiler: CompilerChoice,
    cache: bool,
    lookup_ttl: Duration,
    disk_cache: Option<DiskCacheConfig>,
) -> Client {
    let mut config = ClientConfig::new(TrustStore::from_keys([VendorKey::of(&w.key)]));
    config.report = ReportMode::Off;
    config.lookup_ttl = lookup_ttl;
    config.sandbox = SandboxConfig {
        compiler,
        cache_compiled: cache,
        disk_cache,
        ..SandboxConfig::default()
    };
    let registry = w.rt.block_on(RegistryClient::connect(
        w.registry.local_addr(),
        w.registry.pin(),
        "bench",
    ));
    Client::new(registry.unwrap(), config).unwrap()
}

pub fn only(name: &str) -> Vec<AttributeConstraint> {
    vec![AttributeConstraint::Equals("proxy".into(), name.into())]
}

pub async fn call(c: &Client, proxy: &str) -> PhaseTimings {
    call_full(c, proxy).await.0
}

pub async fn call_full(c: &Client, proxy: &str) -> (PhaseTimings, Duration) {
    let spec: CallSpec = SAY.parse().unwrap();
    let report = c.call_spec(&spec, only(proxy)).await.unwrap();
    assert!(report.answer.text().len() > 2);
    (report.timings, report.logs.provider_time)
}

/// A direct provider connection, handshake done.
pub async fn native(provider: &ServiceHandle) -> quinn::Connection {
    let addr = provider.local_addr();
    let ep = courier_transport::client_endpoint(addr).unwrap();
    let conn = courier_transport::connect(&ep, addr, provider.pin(), Duration::from_secs(5))
        .await
        .unwrap();
    let hello: ProviderHello = courier_transport::call(
        &conn,
        &ProviderHello {
            version: PROTOCOL_VERSION,
        },
        1024,
    )
    .await
    .unwrap();
    assert_eq!(hello.version, PROTOCOL_VERSION);
    conn
}

pub async fn native_call(conn: &quinn::Connection) {
    let call = Call {
        method: "say".into(),
        payload: b"hi".to_vec(),
    };
    let reply: Reply = courier_transport::call(conn, &call, 1 << 20).await.unwrap();
    assert!(matches!(reply, Reply::Ok(_)));
}

/// The same request on a stream kept from the previous one (as courier's provider pool
/// does), the floor for the provider round trip inside a warm call.
pub async fn native_kept_call(conn: &quinn::Connection, streams: &StreamPool) {
    let call = Call {
        method: "say".into(),
        payload: b"hi".to_vec(),
    };
    let reply: Reply = streams
        .request(conn, &call, 1 << 20, |_: &Reply| true)
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Ok(_)));
}
