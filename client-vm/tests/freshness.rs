//! Freshness statements end to end (TUF's timestamp role), through the real registry, a
//! real provider over loopback QUIC and real signatures, and a lying registry where the
//! registry is the attacker:
//! - a registry that keeps serving an answer after its vendor stopped vouching for it (a
//!   freeze) is refused once the statement lapses, by the statement's expiry or by the
//!   client's own shorter window; a recorded answer from yesterday is refused at first
//!   contact;
//! - a registry that rolls back to an older version while the vendor says a newer one is
//!   current is caught at a client's first contact, which remembers the newer version; a pin
//!   still runs the older one;
//! - forged, unsigned, foreign and missing statements, and one about another service, are
//!   refused before anything is fetched; a client whose policy does not require statements
//!   lets through a candidate that comes without one, and still checks one that comes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    ECHO_IFACE, FakeRegistry, Service, TestProvider, echo_provider, key, manifest_for, registry,
    wall_now,
};
use courier_client::{
    Answer, CallError, Client, ClientConfig, FreshnessPolicy, FreshnessRefusal, Policy,
    RejectReason, ReportMode, TrustStore,
};
use courier_protocol::{
    FreshnessError, FreshnessTimeError, SignedFreshness, SignedManifest, SigningKey, VendorKey,
    VerifyError,
};
use courier_provider::{Bundle, BundleBuilder, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_test_support::{fresh_now, freshness_at};
use courier_transport::RegistryClient;
use std::path::Path;
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;
const ECHO: &str = "acme/echo";

fn bundle(key: &SigningKey, version: &str, provider: &ServiceHandle) -> Bundle {
    BundleBuilder::new(artifacts::ECHO)
        .name(ECHO)
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

fn config(trusted: &SigningKey, freshness: FreshnessPolicy, state: Option<&Path>) -> ClientConfig {
    let mut config = ClientConfig::new(TrustStore::from_keys([VendorKey::of(trusted)]));
    config.policy = Policy {
        freshness,
        ..Policy::default()
    };
    config.report = ReportMode::Off;
    config.state_dir = state.map(Path::to_path_buf);
    // Every call asks the registry: each step reads what it serves right now.
    config.lookup_ttl = Duration::ZERO;
    config
}

/// The default window with no skew, so that a statement lapses at its expiry exactly.
fn strict() -> FreshnessPolicy {
    FreshnessPolicy {
        skew: Duration::ZERO,
        ..FreshnessPolicy::default()
    }
}

async fn client(h: &RegistryHandle, config: ClientConfig) -> Client {
    let link = RegistryClient::connect(h.local_addr(), h.pin(), "freshness-client")
        .await
        .unwrap();
    Client::new(link, config).unwrap()
}

/// The one freshness refusal of a failed call.
fn refusal(err: &CallError) -> &FreshnessRefusal {
    match err.rejections() {
        [r] => match &r.reason {
            RejectReason::Freshness(f) => f,
            other => panic!("not a freshness refusal: {other} ({err})"),
        },
        other => panic!("expected one rejection, got {other:?} from {err}"),
    }
}

fn v(s: &str) -> semver::Version {
    semver::Version::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_answer_is_refused_once_its_freshness_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let provider = echo_provider().await;
    let acme = key(1);
    let v1 = vendor(&h, &acme).await;
    let b = bundle(&acme, "1.0.0", &provider);
    v1.register(b.register_request(Duration::from_secs(60)))
        .await
        .unwrap();
    // The vendor vouches for 1.0.0 for two seconds, then stops: from then on the registry
    // serves the same answer, which nobody vouches for any more (a freeze).
    v1.publish_freshness(freshness_at(&acme, &[(ECHO, "1.0.0")], wall_now(), 2_000))
        .await
        .unwrap();

    let c = client(&h, config(&acme, strict(), None)).await;
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));

    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let err = c.call_str(SAY).await.unwrap_err();
    let FreshnessRefusal::Stale {
        service,
        age,
        reason,
    } = refusal(&err)
    else {
        panic!("not stale: {err}");
    };
    assert_eq!(service, ECHO);
    assert!(*age >= Duration::from_millis(2_300), "{age:?}");
    assert!(
        matches!(reason, FreshnessTimeError::Expired { .. }),
        "{reason}"
    );
    let text = err.to_string();
    assert!(
        text.contains("acme/echo: stale freshness statement, 2s old"),
        "{text}"
    );

    // The vendor vouches again: the same registration runs again.
    v1.publish_freshness(fresh_now(&acme, ECHO, "1.0.0"))
        .await
        .unwrap();
    c.call_str(SAY).await.unwrap();

    // A client may choose a window shorter than the statement's own: one second.
    let short = FreshnessPolicy {
        max_age: Duration::from_secs(1),
        ..strict()
    };
    let c = client(&h, config(&acme, short, None)).await;
    c.call_str(SAY).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(
            refusal(&err),
            FreshnessRefusal::Stale {
                reason: FreshnessTimeError::TooOld {
                    max_age_ms: 1_000,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );

    // An answer recorded yesterday, replayed by a lying registry, is refused at a client's
    // first contact, before anything is fetched.
    let fake = FakeRegistry::start().await;
    let echo = TestProvider::start(Service::Echo).await;
    let manifest = manifest_for(&acme, ECHO, artifacts::ECHO, &echo.target());
    let yesterday = wall_now() - 24 * 3_600_000;
    fake.offer_with(
        1,
        SignedManifest::sign(&manifest, &acme),
        ECHO_IFACE,
        artifacts::ECHO,
        Some(freshness_at(&acme, &[(ECHO, "1.0.0")], yesterday, 600_000)),
    );
    let c = Client::new(
        fake.connect().await,
        config(&acme, FreshnessPolicy::default(), None),
    )
    .unwrap();
    let err = c.call_str(SAY).await.unwrap_err();
    let FreshnessRefusal::Stale { age, reason, .. } = refusal(&err) else {
        panic!("not stale: {err}");
    };
    assert!(*age >= Duration::from_secs(24 * 3_600), "{age:?}");
    assert!(
        matches!(reason, FreshnessTimeError::Expired { .. }),
        "{reason}"
    );
    assert_eq!(fake.fetches(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_registry_is_caught_at_first_contact_unless_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let provider = echo_provider().await;
    let acme = key(1);
    let v1 = vendor(&h, &acme).await;
    // The vendor publishes 2.0.0 and says so; the registry then goes back to serving 1.0.0
    // (the old registration, validly signed, replaces the new one), with the vendor's
    // latest statement, the only one it has.
    bundle(&acme, "2.0.0", &provider)
        .register_once(&v1, &acme, Duration::from_secs(60))
        .await
        .unwrap();
    let old = bundle(&acme, "1.0.0", &provider);
    v1.register(old.register_request(Duration::from_secs(60)))
        .await
        .unwrap();

    // A client that never saw this service before refuses 1.0.0 at once, nothing fetched
    // or compiled, and remembers that 2.0.0 is current.
    let c = client(
        &h,
        config(&acme, FreshnessPolicy::default(), Some(state.path())),
    )
    .await;
    let vendor_key = VendorKey::of(&acme);
    assert_eq!(c.accepted_version(&vendor_key, ECHO), None);
    let err = c.call_str(SAY).await.unwrap_err();
    assert_eq!(
        refusal(&err),
        &FreshnessRefusal::Outdated {
            service: ECHO.into(),
            offered: v("1.0.0"),
            current: v("2.0.0"),
        }
    );
    let old_hash = old.manifest.peek().unwrap().component_hash;
    assert!(!c.sandbox().holds_compiled(&old_hash));
    assert_eq!(c.accepted_version(&vendor_key, ECHO), Some(v("2.0.0")));
    drop(c);

    // The memory is durable: a new client on the same state refuses 1.0.0 even where no
    // statement comes with it (its policy lets such candidates through), as a rollback.
    let optional = FreshnessPolicy::optional();
    let fake = FakeRegistry::start().await;
    let echo = TestProvider::start(Service::Echo).await;
    let manifest = manifest_for(&acme, ECHO, artifacts::ECHO, &echo.target());
    fake.offer_with(
        1,
        SignedManifest::sign(&manifest, &acme),
        ECHO_IFACE,
        artifacts::ECHO,
        None,
    );
    let c = Client::new(
        fake.connect().await,
        config(&acme, optional, Some(state.path())),
    )
    .unwrap();
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(
            err.rejections(),
            [r] if matches!(&r.reason, RejectReason::Rollback { have, offered }
                if *have == v("2.0.0") && *offered == v("1.0.0"))
        ),
        "{err}"
    );
    assert_eq!(fake.fetches(), 0);
    drop(c);

    // Pinned explicitly, the older version runs; the memory keeps 2.0.0.
    let c = client(
        &h,
        config(&acme, FreshnessPolicy::default(), Some(state.path())),
    )
    .await;
    c.pin_version(ECHO, v("1.0.0"));
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.chosen.version, "1.0.0");
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(c.accepted_version(&vendor_key, ECHO), Some(v("2.0.0")));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_unsigned_and_missing_statements_are_refused() {
    let provider = TestProvider::start(Service::Echo).await;
    let fake = FakeRegistry::start().await;
    let (acme, mallory) = (key(1), key(2));
    let manifest = manifest_for(&acme, ECHO, artifacts::ECHO, &provider.target());
    let signed = SignedManifest::sign(&manifest, &acme);
    let fresh = fresh_now(&acme, ECHO, "1.0.0");
    // Acme's vendor key, mallory's signature.
    let forged = SignedFreshness {
        bytes: fresh.bytes.clone(),
        signature: fresh_now(&mallory, ECHO, "1.0.0").signature,
    };
    let unsigned = SignedFreshness {
        bytes: fresh.bytes.clone(),
        signature: [0; 64],
    };
    let statements = [
        None,
        Some(forged),
        Some(unsigned),
        Some(fresh_now(&mallory, ECHO, "1.0.0")),
        Some(fresh_now(&acme, "acme/other", "1.0.0")),
    ];
    for (n, statement) in (1..).zip(statements) {
        fake.offer_with(n, signed.clone(), ECHO_IFACE, artifacts::ECHO, statement);
    }
    let c = Client::new(
        fake.connect().await,
        config(&acme, FreshnessPolicy::default(), None),
    )
    .unwrap();
    let err = c.call_str(SAY).await.unwrap_err();
    let reasons: Vec<&FreshnessRefusal> = err
        .rejections()
        .iter()
        .map(|r| match &r.reason {
            RejectReason::Freshness(f) => f,
            other => panic!("not a freshness refusal: {other}"),
        })
        .collect();
    let service = || ECHO.to_string();
    assert_eq!(
        reasons,
        [
            &FreshnessRefusal::Missing { service: service() },
            &FreshnessRefusal::Invalid {
                service: service(),
                reason: FreshnessError::Verify(VerifyError::BadSignature),
            },
            &FreshnessRefusal::Invalid {
                service: service(),
                reason: FreshnessError::Verify(VerifyError::BadSignature),
            },
            &FreshnessRefusal::Foreign {
                service: service(),
                vendor: VendorKey::of(&acme),
                signer: VendorKey::of(&mallory),
            },
            &FreshnessRefusal::NotNamed { service: service() },
        ]
    );
    assert!(reasons.iter().all(|r| r.service() == ECHO));
    assert!(err.to_string().contains("no freshness statement"), "{err}");
    assert_eq!(fake.fetches(), 0);

    // A client that does not require statements takes the candidate that comes without
    // one, and still refuses the others.
    let c = Client::new(
        fake.connect().await,
        config(&acme, FreshnessPolicy::optional(), None),
    )
    .unwrap();
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(fake.fetches(), 1);
}
