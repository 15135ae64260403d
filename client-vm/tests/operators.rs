//! Operator revocations seen by a client, against real registries over loopback: a client
//! that follows an operator key learns the operator's signed revocation of a vendor from
//! the registry, keeps it in its state directory, and refuses that vendor's proxies even
//! where another registry still offers them, naming the operator and its reason. A client
//! that does not follow the operator is not affected. A client with a key is metered as
//! itself: the operator's usage names it for what it was handed and what it called.
#![allow(clippy::unwrap_used)]

use courier_client::{
    Answer, CallError, Client, ClientConfig, Policy, RejectReason, ReportMode, TrustRefusal,
    TrustStore,
};
use courier_example_services as examples;
use courier_protocol::{
    AdminAction, ClientProfile, OperatorStatement, SignedOperatorStatement, SigningKey, UsageBy,
    UsageQuery, UsageRow, VendorKey,
};
use courier_provider::{BundleBuilder, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_test_support::{key, short_leases, start_registry, wall_now};
use courier_transport::{Identity, RegistryClient};
use std::path::Path;
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;

async fn registry(dir: &Path, operator: Option<&SigningKey>) -> RegistryHandle {
    let mut config = short_leases(dir);
    config.operators = operator.map(VendorKey::of).into_iter().collect();
    start_registry(config).await
}

async fn connect(h: &RegistryHandle, as_key: Option<&SigningKey>) -> RegistryClient {
    let c = RegistryClient::connect(h.local_addr(), h.pin(), "operators-test")
        .await
        .unwrap();
    if let Some(k) = as_key {
        c.authenticate(k).await.unwrap();
    }
    c
}

/// Publishes the echo proxy of `vendor` (calling `provider`) on `h`.
async fn publish(h: &RegistryHandle, vendor: &SigningKey, provider: &ServiceHandle) {
    let bundle = BundleBuilder::new(artifacts::ECHO)
        .name("acme/echo")
        .version("1.0.0")
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(vendor)
        .unwrap();
    let link = connect(h, Some(vendor)).await;
    bundle
        .register_once(&link, vendor, Duration::from_secs(30))
        .await
        .unwrap();
}

fn config(vendor: &SigningKey, operator: Option<&SigningKey>, state: &Path) -> ClientConfig {
    let mut trust = TrustStore::from_keys([VendorKey::of(vendor)]);
    if let Some(op) = operator {
        trust.add_operator(VendorKey::of(op)).unwrap();
    }
    let mut config = ClientConfig::new(trust);
    config.policy = Policy::default();
    config.report = ReportMode::Off;
    config.state_dir = Some(state.to_path_buf());
    config.lookup_ttl = Duration::ZERO;
    config.key_refresh = Duration::ZERO;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_revoked_by_a_followed_operator_is_refused_everywhere_after() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state, other_state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (vendor, operator) = (key(1), key(50));
    let id = Identity::generate().unwrap();
    let provider = examples::echo_service()
        .serve("127.0.0.1:0".parse().unwrap(), &id)
        .await
        .unwrap();
    // Registry A, run by the operator; registry B, elsewhere, does not know of it.
    let a = registry(dir_a.path(), Some(&operator)).await;
    let b = registry(dir_b.path(), None).await;
    publish(&a, &vendor, &provider).await;
    publish(&b, &vendor, &provider).await;

    let follower = Client::new(
        connect(&a, None).await,
        config(&vendor, Some(&operator), state.path()),
    )
    .unwrap();
    let report = follower.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));

    // The operator revokes the vendor's key on A, with a statement its own key signs.
    let statement = OperatorStatement {
        operator: VendorKey::of(&operator),
        subject: VendorKey::of(&vendor),
        reason: "signing key leaked".into(),
        issued_at_ms: wall_now(),
    };
    connect(&a, Some(&operator))
        .await
        .admin(AdminAction::RevokeKey(SignedOperatorStatement::sign(
            &statement, &operator,
        )))
        .await
        .unwrap();
    // A no longer offers the proxy; the follower learns the statement with its query.
    assert!(matches!(
        follower.call_str(SAY).await,
        Err(CallError::NoCandidates(_))
    ));
    assert_eq!(
        follower.trust_store().check(&VendorKey::of(&vendor)),
        Err(TrustRefusal::RevokedByOperator {
            key: VendorKey::of(&vendor),
            operator: VendorKey::of(&operator),
            reason: "signing key leaked".into()
        })
    );
    drop(follower);

    // On B the proxy is still offered: a client with the same state refuses it from what
    // it remembered, naming the operator and the reason; nothing is fetched or run.
    let later = Client::new(
        connect(&b, None).await,
        config(&vendor, Some(&operator), state.path()),
    )
    .unwrap();
    let err = later.call_str(SAY).await.unwrap_err();
    let reasons: Vec<&RejectReason> = err.rejections().iter().map(|r| &r.reason).collect();
    assert!(
        matches!(
            reasons[..],
            [RejectReason::RevokedByOperator { vendor: v, operator: o, reason: r }]
                if *v == VendorKey::of(&vendor) && *o == VendorKey::of(&operator)
                    && r == "signing key leaked"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("revoked by operator"), "{err}");

    // A client that does not follow the operator still runs the proxy from B.
    let independent = Client::new(
        connect(&b, None).await,
        config(&vendor, None, other_state.path()),
    )
    .unwrap();
    assert!(independent.call_str(SAY).await.is_ok());
    // Nor does a statement of an operator it does not follow count on A.
    let stranger = Client::new(
        connect(&a, None).await,
        config(&vendor, Some(&key(51)), other_state.path()),
    )
    .unwrap();
    stranger.sync_keys().await.unwrap();
    assert!(stranger.trust_store().is_trusted(&VendorKey::of(&vendor)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_key_is_metered_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (vendor, operator, me) = (key(1), key(50), key(60));
    let id = Identity::generate().unwrap();
    let provider = examples::echo_service()
        .serve("127.0.0.1:0".parse().unwrap(), &id)
        .await
        .unwrap();
    let h = registry(dir.path(), Some(&operator)).await;
    publish(&h, &vendor, &provider).await;

    // A registered client: the registry keeps the outcomes of registered clients only.
    connect(&h, Some(&me))
        .await
        .register_client(ClientProfile::default())
        .await
        .unwrap();
    let mut config = config(&vendor, None, state.path());
    config.key = Some(me.clone());
    config.report = ReportMode::Inline;
    let client = Client::new(connect(&h, None).await, config).unwrap();
    for _ in 0..3 {
        client.call_str(SAY).await.unwrap();
    }

    // The usage is written behind by the flush; wait for it (bounded).
    let admin = connect(&h, Some(&operator)).await;
    let query = UsageQuery {
        since_ms: 0,
        by: UsageBy::ClientService,
    };
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = admin.usage(query.clone()).await.unwrap();
        if rows.iter().map(|r| r.calls).sum::<u64>() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let component = artifacts::ECHO.len() as u64;
    assert_eq!(
        rows,
        [UsageRow {
            client: Some(VendorKey::of(&me)),
            service: Some("acme/echo".into()),
            handed_out: 1,
            bytes: component,
            calls: 3,
            failed: 0,
        }],
        "the compiled proxy is kept, so it is fetched once; every call is reported"
    );
}
