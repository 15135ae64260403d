//! Shared helpers for the registry's integration tests: signed bundles of the real example
//! components, a registry on loopback with short leases, connected clients.
#![allow(clippy::unwrap_used, dead_code)]

use courier_protocol::{
    ContentHash, Export, Manifest, Register, SignedManifest, SigningKey, SpkiPin, VendorKey,
};
use courier_registry::{RegistryConfig, RegistryHandle, ServerConfig};
use courier_transport::{ClientError, RegistryClient};
use std::path::Path;
use std::time::Duration;

pub const ECHO_IFACE: &str = "courier:echo/echo@0.1.0";
pub const KV_IFACE: &str = "courier:kv/store@0.1.0";

#[allow(unused_imports)]
pub use courier_test_support::{init_logs, key, wall_now};

/// A manifest for `component` exporting `exports`, valid for an hour around now.
pub fn manifest(
    key: &SigningKey,
    name: &str,
    component: &[u8],
    exports: &[(&str, &[&str])],
) -> Manifest {
    let now = wall_now();
    Manifest {
        name: name.into(),
        version: "1.0.0".into(),
        exports: exports
            .iter()
            .map(|(i, fs)| Export {
                interface: (*i).into(),
                functions: fs.iter().map(|f| f.to_string()).collect(),
            })
            .collect(),
        imports: vec!["courier:proxy/provider@0.1.0".into()],
        attributes: [("region".to_string(), "eu".to_string())].into(),
        endpoints: vec!["127.0.0.1:7901".into()],
        provider_pin: SpkiPin([7; 32]),
        issued_at_ms: now - 60_000,
        not_after_ms: now + 3_600_000,
        component_hash: ContentHash::of(component),
        component_size: component.len() as u64,
        vendor_key: VendorKey::of(key),
    }
}

pub fn echo_manifest(key: &SigningKey, name: &str) -> Manifest {
    manifest(
        key,
        name,
        courier_proxy_artifacts::ECHO,
        &[(ECHO_IFACE, &["say"])],
    )
}

pub fn kv_manifest(key: &SigningKey, name: &str) -> Manifest {
    manifest(
        key,
        name,
        courier_proxy_artifacts::KV,
        &[(KV_IFACE, &["delete", "get", "keys", "set"])],
    )
}

pub fn signed(m: &Manifest, key: &SigningKey, component: &[u8], ttl_ms: u64) -> Register {
    Register {
        manifest: SignedManifest::sign(m, key),
        component: component.to_vec(),
        ttl_ms,
        staged: false,
    }
}

pub fn echo(key: &SigningKey, name: &str, ttl_ms: u64) -> Register {
    signed(
        &echo_manifest(key, name),
        key,
        courier_proxy_artifacts::ECHO,
        ttl_ms,
    )
}

pub fn kv(key: &SigningKey, name: &str, ttl_ms: u64) -> Register {
    signed(
        &kv_manifest(key, name),
        key,
        courier_proxy_artifacts::KV,
        ttl_ms,
    )
}

/// A registry's configuration and its server's.
#[derive(Debug, Clone)]
pub struct Setup {
    pub registry: RegistryConfig,
    pub server: ServerConfig,
}

/// A loopback configuration with short leases, for tests.
pub fn config(dir: &Path) -> Setup {
    Setup {
        registry: courier_test_support::short_leases(dir),
        server: courier_test_support::loopback(),
    }
}

pub async fn start(setup: Setup) -> RegistryHandle {
    courier_test_support::start_registry_with(setup.registry, setup.server).await
}

pub async fn client(h: &RegistryHandle) -> RegistryClient {
    RegistryClient::connect(h.local_addr(), h.pin(), "test")
        .await
        .unwrap()
}

pub async fn vendor(h: &RegistryHandle, key: &SigningKey) -> RegistryClient {
    let c = client(h).await;
    c.authenticate(key).await.unwrap();
    c
}

/// Polls `f` every 20 ms for up to 5 s until it is true.
pub async fn eventually<F: AsyncFnMut() -> bool>(mut f: F) -> bool {
    for _ in 0..250 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The kind of a registry's refusal; anything else fails the test.
pub fn kind(e: ClientError) -> courier_protocol::ErrorKind {
    match e {
        ClientError::Registry(w) => w.kind,
        other => panic!("expected a registry refusal, got {other}"),
    }
}
