//! Crash safety: an acknowledged registration survives `kill -9` of the registry process,
//! with its remaining lease time (no reset, no extension).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ServedRegistry;
use courier_protocol::{ContentHash, ServiceQuery};
use courier_provider::{BundleBuilder, generate_key};
use courier_transport::RegistryClient;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_remaining_lease_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ServedRegistry::start(dir.path(), &["--max-ttl", "10m"]);
    let key = generate_key();
    let bundle = BundleBuilder::new(courier_proxy_artifacts::ECHO.to_vec())
        .name("crash/echo")
        .version("1.0.0")
        .endpoint("127.0.0.1:9")
        .provider_pin(
            "sha256:0101010101010101010101010101010101010101010101010101010101010101"
                .parse()
                .unwrap(),
        )
        .sign(&key)
        .unwrap();
    let hash = ContentHash::of(courier_proxy_artifacts::ECHO);

    let client = RegistryClient::connect(registry.addr, registry.pin, "crash-test")
        .await
        .unwrap();
    client.authenticate(&key).await.unwrap();
    let ttl = Duration::from_secs(120);
    let grant = client.register(bundle.register_request(ttl)).await.unwrap();
    let granted_at = Instant::now();
    assert_eq!(grant.ttl_ms, 120_000);
    client.close();

    // The acknowledgement is in hand: kill the process without any chance to flush.
    let pin = registry.pin;
    registry.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let registry = ServedRegistry::start(dir.path(), &["--max-ttl", "10m"]);
    assert_eq!(registry.pin, pin, "the registry keeps its TLS identity");
    let client = RegistryClient::connect(registry.addr, registry.pin, "crash-test")
        .await
        .unwrap();
    let leases = client.leases().await.unwrap();
    let lease = leases
        .iter()
        .find(|l| l.lease == grant.lease)
        .expect("lease survived kill -9");
    assert_eq!(lease.name, "crash/echo");
    let elapsed = granted_at.elapsed().as_millis() as u64;
    // Remaining time continues: not reset to the full 120 s, not extended.
    assert!(
        lease.remaining_ms <= 120_000 - elapsed + 50,
        "remaining {} after {elapsed} ms",
        lease.remaining_ms
    );
    assert!(
        lease.remaining_ms >= 120_000 - elapsed - 5_000,
        "remaining {} after {elapsed} ms",
        lease.remaining_ms
    );
    assert!(!lease.in_grace);

    // It still matches, and the stored component is intact.
    let found = client
        .find(ServiceQuery {
            interface: "courier:echo/echo".into(),
            limit: 5,
            ..ServiceQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].lease, grant.lease);
    let bytes = client
        .fetch(
            hash,
            courier_proxy_artifacts::ECHO.len() as u64,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(bytes, courier_proxy_artifacts::ECHO);
}
