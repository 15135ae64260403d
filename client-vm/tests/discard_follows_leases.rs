//! Discard that follows revocation and leases, against the real registry and provider over
//! loopback QUIC: once the client learns that a lease was cancelled or expired, or that its
//! vendor key was revoked (from the registry's events, or from a key statement it
//! synchronised), its compiled component leaves the sandbox's cache and its kept provider
//! connection is closed; and a compiled component is never used for a manifest that no
//! longer passes its checks.
#![allow(clippy::unwrap_used)]

mod common;

use common::{FakeRegistry, Service, TestProvider, key, manifest_for};
use courier_client::TrustStore;
use courier_client::{CallError, Client, ClientConfig, Policy, RejectReason, ReportMode};
use courier_example_services as examples;
use courier_protocol::{
    KeyStatement, LeaseId, SignedKeyStatement, SignedManifest, SigningKey, VendorKey,
};
use courier_provider::{Bundle, BundleBuilder, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_transport::{Identity, RegistryClient};
use std::time::{Duration, Instant};

const SAY: &str = r#"courier:echo/echo.say("hi")"#;

/// Longest a discard may take to follow the event (the event's delivery, on loopback).
const PROMPT: Duration = Duration::from_secs(5);

struct Setup {
    registry: RegistryHandle,
    _provider: ServiceHandle,
    vendor: RegistryClient,
    acme: SigningKey,
    bundle: Bundle,
    _dir: tempfile::TempDir,
}

/// A registry with short leases, an echo provider, and the echo proxy of `acme`
/// registered for `ttl`.
async fn setup(ttl: Duration) -> (Setup, LeaseId) {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        courier_test_support::start_registry(courier_test_support::short_leases(dir.path())).await;
    let id = Identity::generate().unwrap();
    let provider = examples::echo_service()
        .serve("127.0.0.1:0".parse().unwrap(), &id)
        .await
        .unwrap();
    let acme = key(1);
    let bundle = BundleBuilder::new(artifacts::ECHO)
        .name("acme/echo")
        .version("1.0.0")
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(&acme)
        .unwrap();
    let vendor = RegistryClient::connect(registry.local_addr(), registry.pin(), "vendor")
        .await
        .unwrap();
    vendor.authenticate(&acme).await.unwrap();
    let grant = vendor.register(bundle.register_request(ttl)).await.unwrap();
    let setup = Setup {
        registry,
        _provider: provider,
        vendor,
        acme,
        bundle,
        _dir: dir,
    };
    (setup, grant.lease)
}

/// A client trusting `acme`, watching the registry's events (the default lookup cache).
async fn client(s: &Setup, lookup_ttl: Duration) -> Client {
    let mut config = ClientConfig::new(TrustStore::from_keys([VendorKey::of(&s.acme)]));
    config.policy = Policy::default();
    config.report = ReportMode::Off;
    config.lookup_ttl = lookup_ttl;
    config.key_refresh = Duration::from_secs(3600);
    let registry = RegistryClient::connect(s.registry.local_addr(), s.registry.pin(), "client")
        .await
        .unwrap();
    Client::new(registry, config).unwrap()
}

/// Calls once and checks that the compiled component and a provider connection are kept.
async fn call_and_keep(c: &Client, s: &Setup) {
    c.call_str(SAY).await.unwrap();
    let m = s.bundle.manifest.peek().unwrap();
    assert!(c.sandbox().holds_compiled(&m.component_hash));
    assert_eq!(
        c.sandbox().providers().open_connections_to(&m.provider_pin),
        1
    );
    assert_eq!(c.held_leases(), 1);
}

/// Whether the compiled component and the provider connection are gone within [`PROMPT`].
async fn discarded_soon(c: &Client, s: &Setup) -> bool {
    let m = s.bundle.manifest.peek().unwrap();
    let until = Instant::now() + PROMPT;
    while Instant::now() < until {
        if discarded(c, &m) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn discarded(c: &Client, m: &courier_protocol::Manifest) -> bool {
    !c.sandbox().holds_compiled(&m.component_hash)
        && c.sandbox().providers().open_connections_to(&m.provider_pin) == 0
        && c.held_leases() == 0
}

fn revocation(k: &SigningKey) -> SignedKeyStatement {
    SignedKeyStatement::sign(&KeyStatement::revoke(VendorKey::of(k), 1), k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lease_loses_its_compiled_component_and_provider_connection() {
    let (s, lease) = setup(Duration::from_secs(30)).await;
    let c = client(&s, Duration::from_secs(30)).await;
    call_and_keep(&c, &s).await;
    s.vendor.cancel(lease).await.unwrap();
    assert!(discarded_soon(&c, &s).await);
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_loses_its_compiled_component_and_provider_connection() {
    // Not renewed: the lease runs out a second after registering.
    let (s, _) = setup(Duration::from_secs(1)).await;
    let c = client(&s, Duration::from_secs(30)).await;
    call_and_keep(&c, &s).await;
    let m = s.bundle.manifest.peek().unwrap();
    assert!(!discarded(&c, &m), "nothing goes before the lease ends");
    assert!(discarded_soon(&c, &s).await);
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_loses_its_compiled_component_on_the_registrys_event() {
    let (s, _) = setup(Duration::from_secs(30)).await;
    let c = client(&s, Duration::from_secs(30)).await;
    call_and_keep(&c, &s).await;
    // The registry revokes the key's leases and says so on the event feed; the client has
    // not synchronised the statement itself.
    s.vendor
        .publish_statement(revocation(&s.acme))
        .await
        .unwrap();
    assert!(discarded_soon(&c, &s).await);
    assert!(!c.trust_store().is_revoked(&VendorKey::of(&s.acme)));
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_learned_from_key_statements_discards_without_watching_events() {
    let (s, _) = setup(Duration::from_secs(30)).await;
    // No lookup cache, so no event feed: only the key statement can tell the client.
    let c = client(&s, Duration::ZERO).await;
    call_and_keep(&c, &s).await;
    s.vendor
        .publish_statement(revocation(&s.acme))
        .await
        .unwrap();
    assert_eq!(c.sync_keys().await.unwrap(), 1);
    let m = s.bundle.manifest.peek().unwrap();
    assert!(discarded(&c, &m));
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_key_loses_its_compiled_component_at_once() {
    let (s, _) = setup(Duration::from_secs(30)).await;
    let c = client(&s, Duration::ZERO).await;
    call_and_keep(&c, &s).await;
    assert!(c.untrust(&VendorKey::of(&s.acme)));
    let m = s.bundle.manifest.peek().unwrap();
    assert!(discarded(&c, &m));
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_compile_is_not_used_for_a_manifest_that_no_longer_passes() {
    // A registry that keeps offering the same component under a manifest whose validity
    // ended (signed by the same trusted key): the compiled component is still in the cache,
    // but the manifest is checked again first and refused, and nothing is fetched or run.
    let acme = key(1);
    let fake = FakeRegistry::start().await;
    let provider = TestProvider::start(Service::Echo).await;
    let target = provider.target();
    let fresh = manifest_for(&acme, "acme/echo", artifacts::ECHO, &target);
    let mut stale = fresh.clone();
    stale.not_after_ms = stale.issued_at_ms + 1;
    let iface = common::ECHO_IFACE;
    fake.offer(
        1,
        SignedManifest::sign(&fresh, &acme),
        iface,
        artifacts::ECHO,
    );
    let mut config = ClientConfig::new(TrustStore::from_keys([VendorKey::of(&acme)]));
    config.report = ReportMode::Off;
    config.lookup_ttl = Duration::ZERO;
    let c = Client::new(fake.connect().await, config).unwrap();
    let first = c.call_str(SAY).await.unwrap();
    assert!(!first.timings.cache_hit);
    assert!(c.sandbox().holds_compiled(&fresh.component_hash));
    assert_eq!(fake.fetches(), 1);

    fake.state.lock().unwrap().candidates.clear();
    fake.offer(
        2,
        SignedManifest::sign(&stale, &acme),
        iface,
        artifacts::ECHO,
    );
    let err = c.call_str(SAY).await.unwrap_err();
    let CallError::NoUsableCandidate { rejected } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(rejected[..], [ref r] if matches!(r.reason, RejectReason::Manifest(_))),
        "{err}"
    );
    assert_eq!(fake.fetches(), 1);
}
