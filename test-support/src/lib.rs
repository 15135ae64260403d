//! Helpers shared by courier's tests and benchmarks, written once: test keys, the wall
//! clock, logs, freshness statements, a registry on loopback with short leases, a real etcd
//! member, a real etcd cluster of several members, and a process's resident memory. A
//! dev-dependency only.
#![allow(clippy::unwrap_used)]

pub mod etcd;
pub mod etcd_cluster;
pub mod relay;
pub mod resident;

use courier_protocol::{FreshnessStatement, SignedFreshness, SigningKey, VendorKey};
use courier_registry::{Registry, RegistryConfig, RegistryHandle, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Sends `tracing` output to the test's output, filtered by `RUST_LOG` (warnings by
/// default). Safe to call from every test.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A deterministic signing key: every byte `seed`.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The wall-clock time now, in ms since the Unix epoch.
pub fn wall_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A freshness statement by `key` that each `(service, version)` is current, issued at
/// `issued_at_ms` for `validity_ms`.
pub fn freshness_at(
    key: &SigningKey,
    services: &[(&str, &str)],
    issued_at_ms: u64,
    validity_ms: u64,
) -> SignedFreshness {
    let statement = FreshnessStatement::new(
        VendorKey::of(key),
        services
            .iter()
            .map(|(name, version)| (name.to_string(), version.to_string())),
        issued_at_ms,
        validity_ms,
    );
    SignedFreshness::sign(&statement, key)
}

/// A freshness statement by `key` that `service` is current at `version`, issued now for
/// ten minutes (what a lease keeper publishes).
pub fn fresh_now(key: &SigningKey, service: &str, version: &str) -> SignedFreshness {
    freshness_at(key, &[(service, version)], wall_now(), 600_000)
}

/// A registry configuration for tests: leases of 100 ms to 60 s, flushed every 50 ms.
pub fn short_leases(dir: &Path) -> RegistryConfig {
    let mut c = RegistryConfig::new(dir);
    c.min_ttl = Duration::from_millis(100);
    c.max_ttl = Duration::from_secs(60);
    c.flush_interval = Duration::from_millis(50);
    c
}

/// A server configuration for tests: a free port on 127.0.0.1, 5 s for a handshake.
pub fn loopback() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        handshake_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

/// Opens a registry with `config` and serves it on loopback.
pub async fn start_registry(config: RegistryConfig) -> RegistryHandle {
    start_registry_with(config, loopback()).await
}

/// Opens a registry with `config` and serves it with `server`.
pub async fn start_registry_with(config: RegistryConfig, server: ServerConfig) -> RegistryHandle {
    init_logs();
    let registry = Registry::open(config).unwrap();
    courier_registry::serve(Arc::new(registry), server)
        .await
        .unwrap()
}

/// A real signed manifest of service `acme/svc<seed>` (an echo export), naming
/// `component`, signed by [`key`]`(seed)`: for stores' tests, which keep manifests without
/// running anything.
pub fn signed_manifest_for(component: &[u8], seed: u8) -> courier_protocol::SignedManifest {
    let key = key(seed);
    let m = courier_protocol::Manifest {
        name: format!("acme/svc{seed}"),
        version: "1.0.0".into(),
        exports: vec![courier_protocol::Export {
            interface: "courier:echo/echo@0.1.0".into(),
            functions: vec!["say".into()],
        }],
        imports: vec![],
        attributes: Default::default(),
        endpoints: vec!["127.0.0.1:1".into()],
        provider_pin: courier_protocol::SpkiPin([1; 32]),
        issued_at_ms: 0,
        not_after_ms: u64::MAX / 2,
        component_hash: courier_protocol::ContentHash::of(component),
        component_size: component.len() as u64,
        vendor_key: VendorKey::of(&key),
    };
    courier_protocol::SignedManifest::sign(&m, &key)
}
