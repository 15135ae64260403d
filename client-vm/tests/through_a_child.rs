//! A client calls through a child registry exactly as through the root: a proxy signed by
//! an online key that a vendor root delegated the name to runs at a client trusting only
//! the root, the child having copied the registration from its parent and fetched the
//! root's statement from it when the client first asked; a later statement of the root
//! reaches the child too, and the registration the root revokes leaves the child.
#![allow(clippy::unwrap_used)]

mod common;

use common::{echo_provider, eventually, key, registry, wall_now};
use courier_client::{Answer, Client, ClientConfig, Policy, ReportMode, TrustStore};
use courier_protocol::{
    AdminAction, Delegation, MirrorRule, NamePattern, RootKeys, RootSince, RootStatement,
    SignedRootStatement, SigningKey, VendorKey,
};
use courier_provider::BundleBuilder;
use courier_proxy_artifacts as artifacts;
use courier_registry::{ParentConfig, RegistryHandle, follow_parent};
use courier_transport::RegistryClient;
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;
const HOUR_MS: u64 = 3_600_000;

async fn connect(h: &RegistryHandle) -> RegistryClient {
    RegistryClient::connect(h.local_addr(), h.pin(), "child-test")
        .await
        .unwrap()
}

fn root_keys() -> RootKeys {
    RootKeys::new([1, 2, 3].map(|s| VendorKey::of(&key(s))), 2).unwrap()
}

fn signed(statement: &RootStatement, seeds: &[u8]) -> SignedRootStatement {
    let keys: Vec<SigningKey> = seeds.iter().map(|s| key(*s)).collect();
    SignedRootStatement::sign(statement, &keys.iter().collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_trusting_client_calls_through_a_child_as_through_the_root() {
    let (root_dir, child_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (root, child) = (
        registry(root_dir.path()).await,
        registry(child_dir.path()).await,
    );
    let child_key = key(40);
    root.registry()
        .place_in_hierarchy(VendorKey::of(&key(41)), Vec::new());
    child
        .registry()
        .place_in_hierarchy(VendorKey::of(&child_key), Vec::new());
    // The owners of the data directories act offline (no operator key needed).
    let allow = AdminAction::AllowChild {
        key: VendorKey::of(&child_key),
        name: "site-a".into(),
    };
    root.registry()
        .admin(root.registry().now(), None, allow)
        .unwrap();
    let rule = AdminAction::AddMirrorRule(MirrorRule {
        id: 0,
        name: "*".into(),
        vendor: None,
        interface: None,
        version: None,
        approval: false,
    });
    child
        .registry()
        .admin(child.registry().now(), None, rule)
        .unwrap();
    let _link = follow_parent(
        child.registry().clone(),
        ParentConfig {
            addr: root.local_addr(),
            pin: root.pin(),
            key: child_key,
            report_every: Duration::from_secs(30),
            refresh_every: Duration::from_millis(300),
            prefetch: false,
            fetch_deadline: courier_registry::DEFAULT_FETCH_DEADLINE,
        },
    );

    // At the root: the root's statement delegating acme/* to an online key, and the
    // online key's proxy.
    let provider = echo_provider().await;
    let online = key(10);
    let mut v1 = RootStatement::genesis(root_keys()).next(wall_now());
    v1.delegations.push(Delegation {
        key: VendorKey::of(&online),
        names: vec![NamePattern::new("acme/*").unwrap()],
        not_after_ms: wall_now() + HOUR_MS,
    });
    connect(&root)
        .await
        .publish_root(signed(&v1, &[1, 2]))
        .await
        .unwrap();
    let bundle = BundleBuilder::new(artifacts::ECHO)
        .name("acme/echo")
        .version("1.0.0")
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(&online)
        .unwrap();
    let vendor = connect(&root).await;
    vendor.authenticate(&online).await.unwrap();
    bundle
        .register_once(&vendor, &online, Duration::from_secs(30))
        .await
        .unwrap();
    // The registration, then its vendor's freshness statement (published after it).
    assert!(
        eventually(async || {
            let found = connect(&child)
                .await
                .find(courier_protocol::ServiceQuery {
                    interface: "courier:echo/echo".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            found.first().is_some_and(|c| c.freshness.is_some())
        })
        .await
    );

    // A client trusting only the root, at the child: it learns the root's statement from
    // the child (which asks its parent), then runs the proxy.
    let mut trust = TrustStore::new();
    trust.add_root(root_keys()).unwrap();
    let mut config = ClientConfig::new(trust);
    config.policy = Policy::default();
    config.report = ReportMode::Off;
    config.lookup_ttl = Duration::ZERO;
    let client = Client::new(connect(&child).await, config).unwrap();
    let report = client.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));

    // Version 2 revokes the online key at the root: the child holds it soon after, and the
    // revoked key's registration leaves the child.
    let mut v2 = v1.next(wall_now());
    v2.delegations.clear();
    v2.revoked.push(VendorKey::of(&online));
    let v2 = signed(&v2, &[2, 3]);
    connect(&root).await.publish_root(v2.clone()).await.unwrap();
    let since = RootSince {
        root: v1.root,
        after_version: 1,
    };
    assert!(
        eventually(async || child
            .registry()
            .root_statements(&[since])
            .statements
            .contains(&v2))
        .await
    );
    assert!(eventually(async || child.registry().mirror_status().0.mirrored == 0).await);
    assert!(client.call_str(SAY).await.is_err());
}
