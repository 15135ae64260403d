//! The whole flow against the real registry and the real example providers over loopback:
//! publish signed bundles under leases, call through the client, read the service history,
//! cancel a lease and see the proxy no longer match, stop a provider and get a clear error.
#![allow(clippy::unwrap_used)]

use courier_client::{
    Answer, CallError, Client, ClientConfig, DEFAULT_LOOKUP_TTL, Policy, ReportMode, TrustStore,
};
use courier_example_services as examples;
use courier_protocol::{LeaseId, SigningKey, VendorKey};
use courier_provider::{BundleBuilder, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_transport::{Identity, RegistryClient};
use std::time::{Duration, Instant};

async fn registry(dir: &std::path::Path) -> RegistryHandle {
    courier_test_support::start_registry(courier_test_support::short_leases(dir)).await
}

async fn provider(service: courier_provider::ServiceBuilder) -> ServiceHandle {
    let id = Identity::generate().unwrap();
    service
        .serve("127.0.0.1:0".parse().unwrap(), &id)
        .await
        .unwrap()
}

async fn publish(
    h: &RegistryHandle,
    key: &SigningKey,
    name: &str,
    component: &[u8],
    provider: &ServiceHandle,
) -> LeaseId {
    let bundle = BundleBuilder::new(component)
        .name(name)
        .version("1.0.0")
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(key)
        .unwrap();
    let vendor = RegistryClient::connect(h.local_addr(), h.pin(), "vendor")
        .await
        .unwrap();
    vendor.authenticate(key).await.unwrap();
    let grant = bundle
        .register_once(&vendor, key, Duration::from_secs(30))
        .await
        .unwrap();
    vendor.close();
    grant.lease
}

async fn client(h: &RegistryHandle, key: &SigningKey, policy: Policy) -> Client {
    client_with_ttl(h, key, policy, DEFAULT_LOOKUP_TTL).await
}

async fn client_with_ttl(
    h: &RegistryHandle,
    key: &SigningKey,
    policy: Policy,
    lookup_ttl: Duration,
) -> Client {
    let mut config = ClientConfig::new(TrustStore::from_keys([VendorKey::of(key)]));
    config.key = Some(client_key());
    config.policy = policy;
    config.report = ReportMode::Inline;
    config.lookup_ttl = lookup_ttl;
    let registry = RegistryClient::connect(h.local_addr(), h.pin(), "e2e-client")
        .await
        .unwrap();
    // The client registers itself, so that the registry keeps its history.
    registry.authenticate(&client_key()).await.unwrap();
    registry
        .register_client(courier_protocol::ClientProfile::default())
        .await
        .unwrap();
    Client::new(registry, config).unwrap()
}

/// The tests' client key.
fn client_key() -> SigningKey {
    SigningKey::from_bytes(&[100; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_and_kv_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let acme = SigningKey::from_bytes(&[7; 32]);
    let echo = provider(examples::echo_service()).await;
    let kv = provider(examples::kv_service()).await;
    let echo_lease = publish(&h, &acme, "acme/echo", artifacts::ECHO, &echo).await;
    publish(&h, &acme, "acme/kv", artifacts::KV, &kv).await;

    let c = client(&h, &acme, Policy::default()).await;
    let report = c.call_str(r#"courier:echo/echo.say("hi")"#).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(report.chosen.lease, echo_lease);

    c.call_str(r#"courier:kv/store.set("colour", "blue")"#)
        .await
        .unwrap();
    let report = c
        .call_str(r#"courier:kv/store.get("colour")"#)
        .await
        .unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok(some("blue"))"#.into()));
    assert!(report.timings.cache_hit);

    // A function no proxy claims: the error names what the interface's proxies export.
    let err = c
        .call_str(r#"courier:kv/store.put("colour", "red")"#)
        .await
        .unwrap_err();
    let CallError::NoSuchFunction { exported, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(exported, &["delete", "get", "keys", "set"]);
    assert_eq!(
        err.to_string(),
        "no proxy offers courier:kv/store.put; its proxies export delete, get, keys, set"
    );
    // A version nobody offers: the error shows the whole query.
    let err = c
        .call_str(r#"courier:kv/store@0.2.0.keys()"#)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no proxy offers courier:kv/store@^0.2.0 with keys"
    );

    // The registry kept the outcomes as this client's service history.
    let me = VendorKey::of(&client_key()).to_string();
    let history = c.registry().history(&me, 10).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|e| e.outcome.ok));
    assert_eq!(history[0].outcome.function, "courier:kv/store@0.1.0.get");

    // A cancelled lease no longer matches, once its event reached the client's lookup
    // cache (which then drops the echo query's candidates, and only those).
    let cached = c.cached_lookups();
    assert_eq!(cached, 3);
    let vendor = RegistryClient::connect(h.local_addr(), h.pin(), "vendor")
        .await
        .unwrap();
    vendor.authenticate(&acme).await.unwrap();
    vendor.cancel(echo_lease).await.unwrap();
    assert!(eventually(|| c.cached_lookups() == cached - 1).await);
    let err = c
        .call_str(r#"courier:echo/echo.say("hi")"#)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NoCandidates(_)), "{err}");

    // A provider that stopped: the proxy gets a clear error, in bounded time.
    kv.shutdown().await;
    let mut policy = Policy::default();
    policy.limits.provider_timeout = Duration::from_millis(500);
    let c = client(&h, &acme, policy).await;
    let started = Instant::now();
    let report = c.call_str(r#"courier:kv/store.keys()"#).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(report.answer, Answer::ProxyError(_)),
        "{}",
        report.answer
    );
    assert_eq!(report.logs.provider_failures.len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_vendor_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let mallory = SigningKey::from_bytes(&[9; 32]);
    let echo = provider(examples::echo_service()).await;
    publish(&h, &mallory, "mallory/echo", artifacts::ECHO, &echo).await;
    let c = client(&h, &SigningKey::from_bytes(&[7; 32]), Policy::default()).await;
    let err = c
        .call_str(r#"courier:echo/echo.say("hi")"#)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not trusted"), "{err}");
    assert_eq!(c.sandbox().cached_components(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_cache_follows_the_registrys_events() {
    let dir = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let acme = SigningKey::from_bytes(&[7; 32]);
    let echo = provider(examples::echo_service()).await;
    let lease = publish(&h, &acme, "acme/echo", artifacts::ECHO, &echo).await;
    let c = client_with_ttl(&h, &acme, Policy::default(), Duration::from_secs(60)).await;
    let say = r#"courier:echo/echo.say("hi")"#;
    let ok = |a: &Answer| matches!(a, Answer::Ok(s) if s.contains("echo: hi"));
    assert!(ok(&c.call_str(say).await.unwrap().answer));
    assert_eq!(c.cached_lookups(), 1);
    assert!(ok(&c.call_str(say).await.unwrap().answer));
    assert_eq!(c.cached_lookups(), 1);

    // A new registration of the interface drops the kept candidates.
    let _second = publish(&h, &acme, "acme/echo-two", artifacts::ECHO, &echo).await;
    assert!(eventually(|| c.cached_lookups() == 0).await);
    assert!(ok(&c.call_str(say).await.unwrap().answer));
    assert_eq!(c.cached_lookups(), 1);

    // So does a cancellation: the withdrawn proxy is not offered from the cache.
    let vendor = RegistryClient::connect(h.local_addr(), h.pin(), "vendor")
        .await
        .unwrap();
    vendor.authenticate(&acme).await.unwrap();
    vendor.cancel(lease).await.unwrap();
    assert!(eventually(|| c.cached_lookups() == 0).await);
    let report = c.call_str(say).await.unwrap();
    assert_eq!(report.chosen.name, "acme/echo-two");
    h.shutdown().await;
}

/// Polls `f` for up to 5 s.
async fn eventually(f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
