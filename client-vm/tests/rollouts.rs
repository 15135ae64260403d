//! A staged rollout as real clients live it, over QUIC: the canary client runs the staged
//! version, the other client keeps the one before; failures reported by the canaries halt
//! the rollout; the canary's next contact runs the version's undo call in the sandbox,
//! checked like any candidate, and reports it; the operator's status shows it undone; the
//! canary then goes back to the version its vendor's fresh statement names as current, also
//! from a withdrawn version whose registration is gone.
#![allow(clippy::unwrap_used)]

mod common;

use common::{echo_provider, eventually, key};
use courier_client::{Answer, CallError, Client, ClientConfig, Policy, ReportMode, TrustStore};
use courier_protocol::{
    AdminAction, ClientProfile, ContentHash, Outcome, RolloutSpec, RolloutState, SigningKey,
    VendorKey,
};
use courier_provider::BundleBuilder;
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_transport::RegistryClient;
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;

async fn connect(h: &RegistryHandle, as_key: &SigningKey) -> RegistryClient {
    let c = RegistryClient::connect(h.local_addr(), h.pin(), "rollout-test")
        .await
        .unwrap();
    c.authenticate(as_key).await.unwrap();
    c
}

/// A registered client (attributes given) that trusts `vendor` and reports every call.
async fn client(h: &RegistryHandle, seed: u8, ring: Option<&str>, vendor: &SigningKey) -> Client {
    let k = key(seed);
    let mut profile = ClientProfile::default();
    if let Some(ring) = ring {
        profile.attributes.insert("ring".into(), ring.into());
    }
    connect(h, &k).await.register_client(profile).await.unwrap();
    let mut trust = TrustStore::new();
    trust.add(VendorKey::of(vendor)).unwrap();
    let mut config = ClientConfig::new(trust);
    config.policy = Policy::default();
    config.report = ReportMode::Inline;
    config.lookup_ttl = Duration::ZERO;
    config.key = Some(k);
    let registry = RegistryClient::connect(h.local_addr(), h.pin(), "rollout-test")
        .await
        .unwrap();
    Client::new(registry, config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_run_the_staged_version_and_undo_it_after_a_halt() {
    let dir = tempfile::tempdir().unwrap();
    let operator = key(9);
    let mut config = courier_test_support::short_leases(dir.path());
    config.operators = vec![VendorKey::of(&operator)];
    let h = courier_test_support::start_registry(config).await;
    let provider = echo_provider().await;
    let vendor = key(1);
    // 2.0.0 signs how to undo it; 3.0.0 signs nothing to run.
    let bundle = |version: &str| {
        let b = BundleBuilder::new(artifacts::ECHO)
            .name("acme/echo")
            .version(version);
        let b = if version == "2.0.0" {
            b.attribute("undo", r#"say("undo")"#)
        } else {
            b
        };
        b.endpoint(provider.local_addr().to_string())
            .provider_pin(provider.pin())
            .sign(&vendor)
            .unwrap()
    };
    let at_vendor = connect(&h, &vendor).await;
    bundle("1.0.0")
        .register_once(&at_vendor, &vendor, Duration::from_secs(30))
        .await
        .unwrap();
    let mut staged = bundle("2.0.0").register_request(Duration::from_secs(30));
    staged.staged = true;
    at_vendor.register(staged).await.unwrap();

    let canary = client(&h, 20, Some("canary"), &vendor).await;
    let other = client(&h, 21, None, &vendor).await;
    let version = |r: &courier_client::CallReport| r.chosen.version.clone();
    // Staged: nobody runs it yet.
    assert_eq!(version(&canary.call_str(SAY).await.unwrap()), "1.0.0");

    let at_operator = connect(&h, &operator).await;
    let spec = RolloutSpec {
        name: "acme/echo".into(),
        version: "2.0.0".into(),
        waves: vec!["ring=canary".parse().unwrap(), "100%".parse().unwrap()],
        delay_ms: 3_600_000,
        max_failure_ppm: 100_000,
        min_reports: 2,
    };
    at_operator
        .admin(AdminAction::StartRollout(spec))
        .await
        .unwrap();
    let first = canary.call_str(SAY).await.unwrap();
    assert_eq!(version(&first), "2.0.0");
    assert_eq!(first.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(version(&other.call_str(SAY).await.unwrap()), "1.0.0");

    // Another canary machine reports that 2.0.0 failed: 1 of 2 reports, over 10%.
    let second = key(22);
    let mut profile = ClientProfile::default();
    profile.attributes.insert("ring".into(), "canary".into());
    let at_second = connect(&h, &second).await;
    at_second.register_client(profile).await.unwrap();
    at_second
        .report(Outcome {
            client: String::new(),
            name: "acme/echo".into(),
            version: "2.0.0".into(),
            component: ContentHash::of(artifacts::ECHO),
            function: "courier:echo/echo@0.1.0.say".into(),
            ok: false,
            detail: "broken".into(),
            duration_us: 1,
            facts: Default::default(),
        })
        .await
        .unwrap();
    assert!(
        eventually(async || matches!(
            at_operator.rollouts().await.unwrap()[0].state,
            RolloutState::Halted { .. }
        ))
        .await,
        "the timer halts it soon after the report"
    );

    // The canary's next contact: the undo runs in the sandbox against the version's own
    // provider, and is reported.
    let undone = canary.run_undos().await.unwrap();
    assert_eq!(undone.len(), 1);
    let u = &undone[0];
    assert!(u.ok(), "{:?}", u.result);
    assert_eq!(u.directive.version, "2.0.0");
    let report = u.result.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(u.back_to, Some(semver::Version::new(1, 0, 0)));
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: undo")"#.into()));
    assert_eq!(report.chosen.version, "2.0.0");
    u.reported.as_ref().unwrap();
    assert!(canary.run_undos().await.unwrap().is_empty(), "undone once");
    // The second canary reported a failure of it: it owes its undo still.
    let status = &at_operator.rollouts().await.unwrap()[0];
    assert_eq!(status.waves[0].clients, 2);
    assert_eq!((status.waves[0].undone, status.waves[0].failed), (1, 1));

    // Hidden again: both go on with 1.0.0, the canary too, although it ran 2.0.0: its
    // vendor's fresh statement names 1.0.0 as current (a staged version never is).
    assert_eq!(version(&other.call_str(SAY).await.unwrap()), "1.0.0");
    assert_eq!(version(&canary.call_str(SAY).await.unwrap()), "1.0.0");

    // A rollout with no undo call, aborted: the canary that ran 3.0.0 is told all the same,
    // and goes back to 1.0.0.
    let mut staged = bundle("3.0.0").register_request(Duration::from_secs(30));
    staged.staged = true;
    let three = at_vendor.register(staged).await.unwrap().lease;
    let spec = RolloutSpec {
        name: "acme/echo".into(),
        version: "3.0.0".into(),
        waves: vec!["ring=canary".parse().unwrap(), "100%".parse().unwrap()],
        delay_ms: 3_600_000,
        max_failure_ppm: 100_000,
        min_reports: 2,
    };
    at_operator
        .admin(AdminAction::StartRollout(spec))
        .await
        .unwrap();
    assert_eq!(version(&canary.call_str(SAY).await.unwrap()), "3.0.0");
    at_operator
        .admin(AdminAction::AbortRollout {
            name: "acme/echo".into(),
        })
        .await
        .unwrap();
    // The vendor takes 3.0.0 away before the canary's next contact: it is told all the
    // same, from the manifest the rollout kept.
    at_vendor.cancel(three).await.unwrap();
    let undone = canary.run_undos().await.unwrap();
    assert_eq!(undone.len(), 1);
    assert!(undone[0].ok() && undone[0].directive.call.is_none());
    assert!(matches!(undone[0].result, Ok(None)));
    assert_eq!(version(&canary.call_str(SAY).await.unwrap()), "1.0.0");
    drop(at_vendor);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_registry_cannot_choose_what_a_directive_runs() {
    let provider = echo_provider().await;
    let fake = common::FakeRegistry::start().await;
    let vendor = key(1);
    let sign = |version: &str, by: &SigningKey| {
        BundleBuilder::new(artifacts::ECHO)
            .name("acme/echo")
            .version(version)
            .endpoint(provider.local_addr().to_string())
            .provider_pin(provider.pin())
            .sign(by)
            .unwrap()
    };
    let v2 = sign("2.0.0", &vendor);
    fake.offer(1, v2.manifest.clone(), common::ECHO_IFACE, &v2.component);
    let mut trust = TrustStore::new();
    trust.add(VendorKey::of(&vendor)).unwrap();
    let mut config = ClientConfig::new(trust);
    config.policy = Policy::default();
    config.report = ReportMode::Off;
    config.lookup_ttl = Duration::ZERO;
    let client = Client::new(fake.connect().await, config).unwrap();
    assert_eq!(client.call_str(SAY).await.unwrap().chosen.version, "2.0.0");
    let fetches = fake.fetches();

    let candidate = |bundle: &courier_provider::Bundle, stated: &str, by: &SigningKey| {
        courier_protocol::Candidate {
            lease: courier_protocol::LeaseId([1; 16]),
            manifest: bundle.manifest.clone(),
            interface: common::ECHO_IFACE.into(),
            remaining_ms: 60_000,
            freshness: Some(courier_test_support::fresh_now(by, "acme/echo", stated)),
        }
    };
    let directive = |version: &str, c: courier_protocol::Candidate| courier_protocol::Directive {
        rollout: 1,
        name: "acme/echo".into(),
        version: version.into(),
        // The registry's own text: never what runs.
        call: Some(format!("{}.say(\"pwned\")", common::ECHO_IFACE)),
        candidate: c,
    };
    let stranger = key(66);
    fake.state.lock().unwrap().directives = vec![
        // The version the client ran, its vendor's statement naming it current: the
        // manifest signs no undo, so nothing runs, and nothing is lowered.
        directive("2.0.0", candidate(&v2, "2.0.0", &vendor)),
        // A directive naming another version than its candidate: refused.
        directive("3.0.0", candidate(&v2, "1.0.0", &vendor)),
        // A candidate signed by a key the client does not trust: refused.
        directive(
            "2.0.0",
            candidate(&sign("2.0.0", &stranger), "1.0.0", &stranger),
        ),
    ];
    let undone = client.run_undos().await.unwrap();
    assert_eq!(undone.len(), 3);
    assert!(
        matches!(undone[0].result, Ok(None)),
        "{:?}",
        undone[0].result
    );
    assert_eq!(undone[0].back_to, None);
    assert!(
        matches!(undone[1].result, Err(CallError::Directive(_))),
        "{:?}",
        undone[1].result
    );
    assert!(matches!(
        undone[2].result,
        Err(CallError::NoUsableCandidate { .. })
    ));
    assert!(undone[1].back_to.is_none() && undone[2].back_to.is_none());
    assert_eq!(
        fake.fetches(),
        fetches,
        "nothing was fetched, so nothing ran"
    );
    assert_eq!(
        client.accepted_version(&VendorKey::of(&vendor), "acme/echo"),
        Some(semver::Version::new(2, 0, 0))
    );
    let reports = fake.state.lock().unwrap().undo_reports.clone();
    let oks: Vec<bool> = reports.iter().map(|r| r.ok).collect();
    assert_eq!(oks, [true, false, false]);
}
