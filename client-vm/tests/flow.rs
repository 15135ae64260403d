//! The whole client flow against a fake registry that can lie: tampered bytes, bad
//! signatures, untrusted vendors, expired manifests, capabilities not granted, false export
//! claims. Each is refused with a typed reason before anything is compiled, and the same
//! client goes on to the next call.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_client::{
    Answer, CallError, Client, ClientConfig, OperatorAnswer, Policy, RejectReason, ReportMode,
    RunError, TrustStore,
};
use courier_protocol::{ManifestError, ServiceQuery, SignedManifest, VendorKey, VerifyError};
use courier_proxy_artifacts as artifacts;
use std::time::{Duration, Instant};

const SAY: &str = r#"courier:echo/echo.say("hi")"#;

/// The seed of the tests' client key.
const CLIENT: u8 = 100;

fn config(trust: &[u8], policy: Policy) -> ClientConfig {
    let mut config = ClientConfig::new(TrustStore::from_keys(
        trust.iter().map(|s| VendorKey::of(&key(*s))),
    ));
    config.policy = policy;
    config.key = Some(key(CLIENT));
    config.report = ReportMode::Inline;
    config.report_detail = true;
    config
}

async fn client_with(registry: &FakeRegistry, trust: &[u8], policy: Policy) -> Client {
    Client::new(registry.connect().await, config(trust, policy)).unwrap()
}

fn signed(
    seed: u8,
    component: &[u8],
    target: &courier_client::ProviderTarget,
    edit: impl FnOnce(&mut courier_protocol::Manifest),
) -> SignedManifest {
    let k = key(seed);
    let mut m = manifest_for(&k, "acme/echo", component, target);
    edit(&mut m);
    SignedManifest::sign(&m, &k)
}

fn only_rejection(err: &CallError) -> &RejectReason {
    match err.rejections() {
        [r] => &r.reason,
        other => panic!("expected one rejection, got {other:?} from {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_flow_reports_and_then_hits_the_cache() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;

    let report = client.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(report.function, "courier:echo/echo@0.1.0.say");
    assert_eq!(report.chosen.name, "acme/echo");
    assert_eq!(report.chosen.vendor, VendorKey::of(&key(1)));
    assert!(report.rejected.is_empty());
    assert!(!report.timings.cache_hit);
    assert!(report.timings.compile > Duration::ZERO);
    assert_eq!(registry.fetches(), 1);
    assert_eq!(client.sandbox().live_stores(), 0);

    let outcomes = registry.reports();
    assert_eq!(outcomes.len(), 1);
    let o = &outcomes[0];
    assert!(o.ok);
    assert_eq!(o.client, VendorKey::of(&key(CLIENT)).to_string());
    assert_eq!(o.function, "courier:echo/echo@0.1.0.say");
    assert_eq!(o.component, report.chosen.component);
    assert!(o.detail.contains("echo: hi"));
    assert!(o.facts.is_empty());

    // Second call: compiled component from the cache, nothing fetched.
    let report = client
        .call_str(r#"courier:echo/echo@0.1.0.say("again")"#)
        .await
        .unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: again")"#.into()));
    assert!(report.timings.cache_hit);
    assert_eq!(report.timings.fetch, Duration::ZERO);
    assert_eq!(registry.fetches(), 1);

    // Typed use through the client.
    let typed = client
        .call_typed::<(String,), (Result<String, String>,)>(
            ServiceQuery {
                interface: "courier:echo/echo".into(),
                ..Default::default()
            },
            "say",
            ("typed".to_string(),),
        )
        .await
        .unwrap();
    assert_eq!(typed.value.0, Ok("echo: typed".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_larger_digest_proxy_does_its_guest_work_then_calls_its_provider() {
    assert!(artifacts::ECHO_DIGEST.len() > 100_000);
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    registry.offer(
        1,
        signed(1, artifacts::ECHO_DIGEST, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO_DIGEST,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let report = client
        .call_str(r#"courier:echo/echo.say("the cat and the hat: 1.5, 2.5 and 5")"#)
        .await
        .unwrap();
    assert_eq!(
        report.answer,
        Answer::Ok(
            r#"ok("echo: the cat and the hat: 1.5, 2.5 and 5 [words=6 and:2 the:2 cat:1 hat:1 lengths=3x4, numbers=3 sum=9.000 mean=3.000 sd=1.472]")"#
                .into()
        )
    );
    assert_eq!(client.sandbox().live_stores(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_bytes_are_refused_before_compiling() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    let mut tampered = artifacts::ECHO.to_vec();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x5a;
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        &tampered,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let err = client.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(
            only_rejection(&err),
            RejectReason::Manifest(ManifestError::HashMismatch { .. })
        ),
        "{err}"
    );
    assert_eq!(client.sandbox().cached_components(), 0);
    assert!(
        registry.reports().is_empty(),
        "nothing ran, nothing reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payload_is_cut_at_the_declared_size() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    // The manifest declares the echo proxy's size; the registry sends 32 MiB more.
    let declared = artifacts::ECHO.len() as u64;
    let mut longer = artifacts::ECHO.to_vec();
    longer.extend_from_slice(&vec![0u8; 32 << 20]);
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        &longer,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let received = || client.registry().connection().stats().udp_rx.bytes;
    let before = received();
    let err = client.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(only_rejection(&err), RejectReason::Fetch(_)),
        "{err}"
    );
    // What came over the wire meanwhile: the client stopped reading at the declared size,
    // so no more than that plus one stream receive window (quinn's 1.25 MB) arrived, not
    // the 32 MiB offered.
    let taken = received() - before;
    assert!(
        taken < declared + (2 << 20),
        "{taken} bytes received for a declared {declared}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_payload_is_cut_by_the_fetch_deadline() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    registry.state.lock().unwrap().drip_payloads = true;
    let deadline = Duration::from_millis(500);
    let mut policy = Policy::default();
    policy.limits.fetch_timeout = deadline;
    let client = client_with(&registry, &[1], policy).await;
    // The call ends with the fetch deadline (the drip would take an hour), not before it,
    // and not much after: the bound is the deadline plus the rest of a call on loopback.
    let bound = deadline + Duration::from_millis(1500);
    let started = Instant::now();
    let err = tokio::time::timeout(bound, client.call_str(SAY))
        .await
        .expect("the call ended within the fetch deadline's bound")
        .unwrap_err();
    assert!(started.elapsed() >= deadline, "{:?}", started.elapsed());
    assert!(
        matches!(only_rejection(&err), RejectReason::Fetch(_)),
        "{err}"
    );
    // The same client goes on once the registry behaves.
    registry.state.lock().unwrap().drip_payloads = false;
    client.call_str(SAY).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_and_untrusted_vendor_are_refused_before_fetching() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    let mut forged = signed(1, artifacts::ECHO, &provider.target(), |_| {});
    forged.signature[3] ^= 1;
    registry.offer(1, forged, ECHO_IFACE, artifacts::ECHO);
    registry.offer(
        2,
        signed(2, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    // Trusts key 1 only: the first candidate's signature is broken, the second is untrusted.
    let client = client_with(&registry, &[1], Policy::default()).await;
    let err = client.call_str(SAY).await.unwrap_err();
    let reasons: Vec<&RejectReason> = err.rejections().iter().map(|r| &r.reason).collect();
    assert!(
        matches!(
            reasons[0],
            RejectReason::BadSignature(VerifyError::BadSignature)
        ),
        "{err}"
    );
    assert!(
        matches!(reasons[1], RejectReason::Untrusted(k) if *k == VendorKey::of(&key(2))),
        "{err}"
    );
    assert!(err.to_string().contains("is not trusted"), "{err}");
    assert_eq!(
        registry.fetches(),
        0,
        "nothing downloaded from untrusted or forged manifests"
    );

    // Once trusted, the same client runs it.
    client.trust(VendorKey::of(&key(2))).unwrap();
    let report = client.call_str(SAY).await.unwrap();
    assert_eq!(report.chosen.vendor, VendorKey::of(&key(2)));
    assert_eq!(report.rejected.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_future_manifests_are_refused() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    let now = wall_now();
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |m| {
            m.issued_at_ms = now - 7_200_000;
            m.not_after_ms = now - 3_600_000;
        }),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    registry.offer(
        2,
        signed(1, artifacts::ECHO, &provider.target(), |m| {
            m.issued_at_ms = now + 3_600_000;
            m.not_after_ms = now + 7_200_000;
        }),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let err = client.call_str(SAY).await.unwrap_err();
    let reasons: Vec<&RejectReason> = err.rejections().iter().map(|r| &r.reason).collect();
    assert!(
        matches!(
            reasons[0],
            RejectReason::Manifest(ManifestError::Expired { .. })
        ),
        "{err}"
    );
    assert!(
        matches!(
            reasons[1],
            RejectReason::Manifest(ManifestError::NotYetValid { .. })
        ),
        "{err}"
    );
    assert_eq!(registry.fetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_not_granted_are_listed() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    // Honest manifest asking for operator and host-info.
    registry.offer(
        1,
        signed(1, artifacts::ECHO_OPERATOR, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO_OPERATOR,
    );
    // Lying manifest: claims to import only the provider, the component wants sockets.
    registry.offer(
        2,
        signed(1, artifacts::HOSTILE_SOCKETS, &provider.target(), |m| {
            m.imports = vec!["courier:proxy/provider@0.1.0".into()];
        }),
        ECHO_IFACE,
        artifacts::HOSTILE_SOCKETS,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let err = client.call_str(SAY).await.unwrap_err();
    let reasons: Vec<&RejectReason> = err.rejections().iter().map(|r| &r.reason).collect();
    let RejectReason::Capabilities(first) = reasons[0] else {
        panic!("{err}")
    };
    assert_eq!(
        first.names(),
        [
            "courier:proxy/host-info@0.1.0",
            "courier:proxy/operator@0.1.0"
        ]
    );
    let RejectReason::Capabilities(second) = reasons[1] else {
        panic!("{err}")
    };
    assert!(
        second
            .names()
            .iter()
            .all(|n| n.starts_with("wasi:sockets/")),
        "{second}"
    );
    assert_eq!(
        registry.fetches(),
        1,
        "the honest one is refused before fetching"
    );
    assert_eq!(client.sandbox().cached_components(), 0, "nothing compiled");
    // Asked again, with the manifest's signature check remembered, the same refusal.
    let again = client.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(&again.rejections()[0].reason, RejectReason::Capabilities(c) if c == first),
        "{again}"
    );

    // A client whose policy grants them runs the operator proxy.
    let client = client_with(
        &registry,
        &[1],
        Policy::permissive(OperatorAnswer::ApproveAll),
    )
    .await;
    let report = client.call_str(SAY).await.unwrap();
    assert!(
        report.answer.text().contains("answer=echo: hi"),
        "{}",
        report.answer
    );
    assert_eq!(report.logs.transcript.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_not_exporting_what_was_matched_is_refused() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    // The echo component, with a manifest claiming the kv interface.
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |m| {
            m.exports = vec![export(KV_IFACE, &["get"])];
        }),
        KV_IFACE,
        artifacts::ECHO,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let err = client
        .call_str(r#"courier:kv/store.get("a")"#)
        .await
        .unwrap_err();
    assert!(
        matches!(only_rejection(&err), RejectReason::MissingExport(_)),
        "{err}"
    );
    // A manifest that does not claim the function is refused without fetching.
    let registry = FakeRegistry::start().await;
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |m| {
            m.exports = vec![export(ECHO_IFACE, &["shout"])];
        }),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let err = client.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(only_rejection(&err), RejectReason::NotClaimed(_)),
        "{err}"
    );
    assert_eq!(registry.fetches(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_proxy_is_reported_and_the_client_goes_on() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    registry.offer(
        1,
        signed(1, artifacts::HOSTILE_TRAP, &provider.target(), |m| {
            m.name = "acme/trap".into();
        }),
        ECHO_IFACE,
        artifacts::HOSTILE_TRAP,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    let err = client.call_str(SAY).await.unwrap_err();
    let failure = err.run_failure().unwrap();
    assert!(matches!(failure.error, RunError::Trap { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("acme/trap 1.0.0: proxy trapped"),
        "{err}"
    );
    let outcomes = registry.reports();
    assert_eq!(outcomes.len(), 1);
    assert!(!outcomes[0].ok);
    assert!(
        outcomes[0].detail.contains("trapped"),
        "{}",
        outcomes[0].detail
    );

    // No candidates is its own error; then a good proxy works on the same client.
    let err = client
        .call_str(r#"courier:kv/store.keys()"#)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::NoCandidates(_)), "{err}");
    registry.state.lock().unwrap().candidates.clear();
    registry.offer(
        2,
        signed(1, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    let report = client.call_str(SAY).await.unwrap();
    assert!(report.answer.is_ok());
    // Bad argument text is the caller's error.
    let err = client
        .call_str("courier:echo/echo.say(1)")
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::BadCall(_)), "{err}");
    assert_eq!(client.sandbox().live_stores(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_registry_connection_is_reopened() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    let client = client_with(&registry, &[1], Policy::default()).await;
    client.call_str(SAY).await.unwrap();
    client.registry().close();
    let report = client.call_str(SAY).await.unwrap();
    assert!(report.answer.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_watch_or_with_a_zero_ttl_every_call_asks_the_registry() {
    let provider = TestProvider::start(Service::Echo).await;
    let registry = FakeRegistry::start().await;
    registry.offer(
        1,
        signed(1, artifacts::ECHO, &provider.target(), |_| {}),
        ECHO_IFACE,
        artifacts::ECHO,
    );
    let finds = || registry.state.lock().unwrap().finds;
    // The cache is off (ttl zero): every call asks.
    let mut off = config(&[1], Policy::default());
    off.lookup_ttl = Duration::ZERO;
    let client = Client::new(registry.connect().await, off).unwrap();
    client.call_str(SAY).await.unwrap();
    client.call_str(SAY).await.unwrap();
    assert_eq!(finds(), 2);
    // On (the default), but this registry refuses subscriptions: without a watch nothing
    // is cached (a cache that cannot hear of a cancellation would offer a withdrawn proxy).
    let mut watched = config(&[1], Policy::default());
    watched.lookup_ttl = Duration::from_secs(60);
    let client = Client::new(registry.connect().await, watched).unwrap();
    client.call_str(SAY).await.unwrap();
    client.call_str(SAY).await.unwrap();
    assert_eq!(finds(), 4);
    assert_eq!(client.cached_lookups(), 0);
}
