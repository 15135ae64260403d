//! Rollback protection, key rotation and revocation at the client, against the real registry
//! and a real provider over loopback QUIC (and a lying registry where the registry is the
//! attacker), with real signatures and the client's state on disk:
//! - a replayed older proxy version is refused, unless pinned; the memory survives a new
//!   client, and a corrupt memory is an error;
//! - a client trusting only the old key follows a valid rotation (and keeps it), and
//!   refuses the new key without one, or with a forged one;
//! - a client that learned a revocation refuses the key's proxies even though it lists it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{FakeRegistry, echo_provider, key, registry};
use courier_client::{
    Answer, CallError, Client, ClientConfig, Policy, RejectReason, ReportMode, SetupError,
    StateError, TrustStore,
};
use courier_protocol::{KeyStatement, SignedKeyStatement, SigningKey, VendorKey};
use courier_provider::{Bundle, BundleBuilder, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_transport::RegistryClient;
use std::path::Path;
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;

fn bundle(key: &SigningKey, version: &str, provider: &ServiceHandle) -> Bundle {
    BundleBuilder::new(artifacts::ECHO)
        .name("acme/echo")
        .version(version)
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(key)
        .unwrap()
}

async fn vendor(h: &RegistryHandle, key: &SigningKey) -> RegistryClient {
    let v = RegistryClient::connect(h.local_addr(), h.pin(), "vendor")
        .await
        .unwrap();
    v.authenticate(key).await.unwrap();
    v
}

/// Registers `b` on `v` (authenticated as `key`) with its freshness statement.
async fn publish(v: &RegistryClient, key: &SigningKey, b: &Bundle) {
    b.register_once(v, key, Duration::from_secs(30))
        .await
        .unwrap();
}

fn config(trusted: &[&SigningKey], state: Option<&Path>) -> ClientConfig {
    let mut config = ClientConfig::new(TrustStore::from_keys(
        trusted.iter().map(|k| VendorKey::of(k)),
    ));
    config.policy = Policy::default();
    config.report = ReportMode::Off;
    config.state_dir = state.map(Path::to_path_buf);
    // Each step checks the registry's answer right after a write on another connection:
    // ask the registry every call instead of waiting for the event to reach the cache.
    config.lookup_ttl = Duration::ZERO;
    config
}

async fn client(h: &RegistryHandle, config: ClientConfig) -> Client {
    Client::new(connect(h).await, config).unwrap()
}

async fn connect(h: &RegistryHandle) -> RegistryClient {
    RegistryClient::connect(h.local_addr(), h.pin(), "keys-client")
        .await
        .unwrap()
}

fn reasons(err: &CallError) -> Vec<&RejectReason> {
    err.rejections().iter().map(|r| &r.reason).collect()
}

fn v(s: &str) -> semver::Version {
    semver::Version::parse(s).unwrap()
}

fn rotation(old: &SigningKey, new: &SigningKey, signer: &SigningKey) -> SignedKeyStatement {
    SignedKeyStatement::sign(
        &KeyStatement::rotate(VendorKey::of(old), VendorKey::of(new), 1),
        signer,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_older_version_is_refused_unless_pinned_and_the_memory_survives() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let provider = echo_provider().await;
    let acme = key(1);
    let vendor = vendor(&h, &acme).await;
    publish(&vendor, &acme, &bundle(&acme, "1.1.0", &provider)).await;

    let c = client(&h, config(&[&acme], Some(state.path()))).await;
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(
        c.accepted_version(&VendorKey::of(&acme), "acme/echo"),
        Some(v("1.1.0"))
    );

    // An older, validly signed proxy of the same service comes back (a replay: the
    // registry accepts it, the signature is good).
    publish(&vendor, &acme, &bundle(&acme, "1.0.0", &provider)).await;
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(
            reasons(&err)[..],
            [RejectReason::Rollback { have, offered }] if *have == v("1.1.0") && *offered == v("1.0.0")
        ),
        "{err}"
    );
    drop(c);

    // A new client (a new process) on the same state directory remembers.
    let c = client(&h, config(&[&acme], Some(state.path()))).await;
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(reasons(&err)[..], [RejectReason::Rollback { .. }]),
        "{err}"
    );
    // Pinned explicitly, the older version runs; the memory keeps the highest.
    c.pin_version("acme/echo", v("1.0.0"));
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.chosen.version, "1.0.0");
    assert_eq!(
        c.accepted_version(&VendorKey::of(&acme), "acme/echo"),
        Some(v("1.1.0"))
    );
    // Pinned to a version nobody offers: refused, typed.
    c.pin_version("acme/echo", v("2.0.0"));
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(reasons(&err)[..], [RejectReason::NotPinned { .. }]),
        "{err}"
    );
    assert!(c.unpin_version("acme/echo"));
    // A newer version is accepted and raises the mark.
    publish(&vendor, &acme, &bundle(&acme, "1.2.0", &provider)).await;
    c.call_str(SAY).await.unwrap();
    assert_eq!(
        c.accepted_version(&VendorKey::of(&acme), "acme/echo"),
        Some(v("1.2.0"))
    );
    drop(c);

    // A corrupt memory is a clear error, never an empty memory.
    let file = state.path().join(courier_client::VERSIONS_FILE);
    std::fs::write(&file, "not a version line\n").unwrap();
    let err = Client::new(connect(&h).await, config(&[&acme], Some(state.path()))).unwrap_err();
    assert!(
        matches!(err, SetupError::State(StateError::Corrupt { line: 1, .. })),
        "{err}"
    );
    vendor.close();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_refused_for_rollback_lets_the_next_one_run() {
    let provider = echo_provider().await;
    let fake = FakeRegistry::start().await;
    let acme = key(1);
    let (old, new) = (
        bundle(&acme, "1.0.0", &provider),
        bundle(&acme, "1.3.0", &provider),
    );
    // The lying registry ranks the old one first.
    fake.offer(1, old.manifest.clone(), common::ECHO_IFACE, &old.component);
    fake.offer(2, new.manifest.clone(), common::ECHO_IFACE, &new.component);
    let mut cfg = config(&[&acme], None);
    cfg.report = ReportMode::Off;
    let c = Client::new(fake.connect().await, cfg).unwrap();
    // Nothing remembered: the first is fine.
    assert_eq!(c.call_str(SAY).await.unwrap().chosen.version, "1.0.0");
    c.pin_version("acme/echo", v("1.3.0"));
    assert_eq!(c.call_str(SAY).await.unwrap().chosen.version, "1.3.0");
    c.unpin_version("acme/echo");
    // Having accepted 1.3.0, the 1.0.0 candidate is skipped as a rollback before it is
    // fetched, and the next one runs.
    let fetches = fake.fetches();
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.chosen.version, "1.3.0");
    assert!(
        matches!(
            report
                .rejected
                .iter()
                .map(|r| &r.reason)
                .collect::<Vec<_>>()[..],
            [RejectReason::Rollback { .. }]
        ),
        "{:?}",
        report.rejected
    );
    assert_eq!(
        fake.fetches(),
        fetches,
        "nothing fetched for the refused one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_only_the_old_key_follows_a_valid_rotation_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let provider = echo_provider().await;
    let (old, new) = (key(1), key(2));
    let v_old = vendor(&h, &old).await;
    publish(&v_old, &old, &bundle(&old, "1.1.0", &provider)).await;

    let mut cfg = config(&[&old], Some(state.path()));
    cfg.key_refresh = Duration::from_secs(3600);
    let c = client(&h, cfg).await;
    assert_eq!(
        c.call_str(SAY).await.unwrap().chosen.vendor,
        VendorKey::of(&old)
    );

    // The vendor rotates; the new key takes over the name with a new version.
    v_old
        .publish_statement(rotation(&old, &new, &old))
        .await
        .unwrap();
    let v_new = vendor(&h, &new).await;
    publish(&v_new, &new, &bundle(&new, "1.2.0", &provider)).await;

    // Before the client has seen the statement, the new key is just untrusted.
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(reasons(&err)[..], [RejectReason::Untrusted(k)] if *k == VendorKey::of(&new)),
        "{err}"
    );
    assert_eq!(c.sync_keys().await.unwrap(), 1);
    // The mark set under the old key holds for the new one before it ran anything.
    assert_eq!(
        c.accepted_version(&VendorKey::of(&new), "acme/echo"),
        Some(v("1.1.0"))
    );
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.chosen.vendor, VendorKey::of(&new));
    // One vendor across the rotation: the version memory carries over.
    assert_eq!(
        c.accepted_version(&VendorKey::of(&old), "acme/echo"),
        Some(v("1.2.0"))
    );
    drop(c);

    // A new client on the same state knows the new key before asking the registry.
    let mut cfg = config(&[&old], Some(state.path()));
    cfg.key_refresh = Duration::from_secs(3600);
    let c = client(&h, cfg).await;
    assert!(c.trust_store().is_trusted(&VendorKey::of(&new)));
    drop(c);
    v_old.close();
    v_new.close();
    h.shutdown().await;

    // After a registry restart, a fresh client (no state) trusting only the old key learns
    // the rotation from the registry and runs the new key's proxy.
    let h = registry(dir.path()).await;
    let v_new = vendor(&h, &new).await;
    publish(&v_new, &new, &bundle(&new, "1.2.1", &provider)).await;
    let c = client(&h, config(&[&old], None)).await;
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.chosen.vendor, VendorKey::of(&new));
    assert_eq!(report.chosen.version, "1.2.1");
    v_new.close();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_registry_cannot_forge_a_rotation() {
    let provider = echo_provider().await;
    let fake = FakeRegistry::start().await;
    let (old, new, mallory) = (key(1), key(2), key(3));
    let b = bundle(&new, "1.0.0", &provider);
    fake.offer(1, b.manifest.clone(), common::ECHO_IFACE, &b.component);
    // Statements signed by the new key, or a third key, instead of the old one.
    fake.state.lock().unwrap().statements =
        vec![rotation(&old, &new, &new), rotation(&old, &new, &mallory)];
    let mut cfg = config(&[&old], None);
    cfg.key_refresh = Duration::ZERO;
    let c = Client::new(fake.connect().await, cfg).unwrap();
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(reasons(&err)[..], [RejectReason::Untrusted(k)] if *k == VendorKey::of(&new)),
        "{err}"
    );
    assert!(!c.trust_store().is_trusted(&VendorKey::of(&new)));
    // The real statement is followed.
    fake.state
        .lock()
        .unwrap()
        .statements
        .push(rotation(&old, &new, &old));
    assert_eq!(
        c.call_str(SAY).await.unwrap().chosen.vendor,
        VendorKey::of(&new)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_learned_a_revocation_refuses_the_key_even_if_listed() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let provider = echo_provider().await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let b = bundle(&acme, "1.0.0", &provider);
    publish(&v, &acme, &b).await;
    let mut cfg = config(&[&acme], Some(state.path()));
    cfg.key_refresh = Duration::ZERO;
    let c = client(&h, cfg).await;
    c.call_str(SAY).await.unwrap();

    v.publish_statement(SignedKeyStatement::sign(
        &KeyStatement::revoke(VendorKey::of(&acme), 1),
        &acme,
    ))
    .await
    .unwrap();
    // The registry no longer offers it; the client learned the revocation on the way.
    assert!(matches!(
        c.call_str(SAY).await.unwrap_err(),
        CallError::NoCandidates(_)
    ));
    assert!(c.trust_store().is_revoked(&VendorKey::of(&acme)));
    drop(c);
    v.close();
    h.shutdown().await;

    // A compromised registry still serving the revoked key's proxy (and withholding the
    // revocation) gains nothing with a client that learned it: the client kept it.
    let fake = FakeRegistry::start().await;
    fake.offer(1, b.manifest.clone(), common::ECHO_IFACE, &b.component);
    let c = Client::new(fake.connect().await, config(&[&acme], Some(state.path()))).unwrap();
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(reasons(&err)[..], [RejectReason::Revoked(k)] if *k == VendorKey::of(&acme)),
        "{err}"
    );
    assert_eq!(fake.fetches(), 0);
}
