//! Vendor roots end to end, against the real registry and a real provider over loopback
//! QUIC, with real m-of-n signatures:
//! - a proxy signed by an online key a trusted root delegated the name to runs, the client
//!   having learned the root's statement from the registry;
//! - once the root revokes that delegation, the revoked key's proxy does not run (a client
//!   that knows the revocation refuses it even from a registry that never heard of it),
//!   the registry drops the key's registration and refuses it the name, and the key that
//!   replaces it registers the same name, which stays the root's;
//! - a root rotation with too few of the old root's signatures is refused by the registry
//!   and by the client, and so is an older root statement after a newer one;
//! - an expired delegation's proxy does not run.
#![allow(clippy::unwrap_used)]

mod common;

use common::{echo_provider, key, registry, wall_now};
use courier_client::{
    Answer, CallError, Client, ClientConfig, Policy, RejectReason, ReportMode, TrustRefusal,
    TrustStore,
};
use courier_protocol::{
    AuthorityError, Delegation, ErrorKind, NamePattern, RootKeys, RootStatement,
    SignedRootStatement, SigningKey, VendorKey,
};
use courier_provider::{Bundle, BundleBuilder, RegisterOnceError, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_transport::{ClientError, RegistryClient};
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;
const HOUR_MS: u64 = 3_600_000;

fn bundle(key: &SigningKey, provider: &ServiceHandle) -> Bundle {
    BundleBuilder::new(artifacts::ECHO)
        .name("acme/echo")
        .version("1.0.0")
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(key)
        .unwrap()
}

async fn connect(h: &RegistryHandle) -> RegistryClient {
    RegistryClient::connect(h.local_addr(), h.pin(), "roots-test")
        .await
        .unwrap()
}

async fn publish(h: &RegistryHandle, key: &SigningKey, b: &Bundle) -> Result<(), ClientError> {
    let v = connect(h).await;
    v.authenticate(key).await.unwrap();
    match b.register_once(&v, key, Duration::from_secs(30)).await {
        Ok(_) => Ok(()),
        Err(RegisterOnceError::Register(e)) => Err(e),
        Err(e) => panic!("registered, but: {e}"),
    }
}

/// The root: keys 1, 2, 3, two of which must sign.
fn root_keys() -> RootKeys {
    RootKeys::new([1, 2, 3].map(|s| VendorKey::of(&key(s))), 2).unwrap()
}

fn delegation(online: &SigningKey, not_after_ms: u64) -> Delegation {
    Delegation {
        key: VendorKey::of(online),
        names: vec![NamePattern::new("acme/*").unwrap()],
        not_after_ms,
    }
}

fn signed(statement: &RootStatement, seeds: &[u8]) -> SignedRootStatement {
    let keys: Vec<SigningKey> = seeds.iter().map(|s| key(*s)).collect();
    SignedRootStatement::sign(statement, &keys.iter().collect::<Vec<_>>())
}

/// Version 1: `acme/*` delegated to `online` until `not_after_ms`.
fn first(online: &SigningKey, not_after_ms: u64) -> RootStatement {
    let mut s = RootStatement::genesis(root_keys()).next(wall_now());
    s.delegations.push(delegation(online, not_after_ms));
    s
}

fn config(trust: TrustStore) -> ClientConfig {
    let mut config = ClientConfig::new(trust);
    config.policy = Policy::default();
    config.report = ReportMode::Off;
    config.lookup_ttl = Duration::ZERO;
    config
}

fn trusting_the_root() -> TrustStore {
    let mut trust = TrustStore::new();
    trust.add_root(root_keys()).unwrap();
    trust
}

fn reasons(err: &CallError) -> Vec<&RejectReason> {
    err.rejections().iter().map(|r| &r.reason).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_keys_proxy_runs_until_the_root_revokes_the_delegation() {
    let (dir, frozen_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (h, frozen) = (
        registry(dir.path()).await,
        registry(frozen_dir.path()).await,
    );
    let provider = echo_provider().await;
    let (online, replacement) = (key(10), key(11));
    let v1 = first(&online, wall_now() + HOUR_MS);
    for r in [&h, &frozen] {
        connect(r)
            .await
            .publish_root(signed(&v1, &[1, 2]))
            .await
            .unwrap();
        publish(r, &online, &bundle(&online, &provider))
            .await
            .unwrap();
    }
    // The name belongs to the root, not to the online key that registered it.
    assert_eq!(h.registry().owner("acme/echo"), Some(VendorKey(v1.root.0)));

    let c = Client::new(connect(&h).await, config(trusting_the_root())).unwrap();
    // Before it learns the root's statement, the online key is just an unknown key; the
    // first call learns it from the registry, then runs the proxy.
    let online_key = VendorKey::of(&online);
    assert_eq!(
        c.trust_store()
            .check_for(&online_key, "acme/echo", wall_now()),
        Err(TrustRefusal::Untrusted(online_key))
    );
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));

    // Version 2 revokes the online key and delegates the names to its replacement.
    let mut v2 = v1.next(wall_now());
    v2.delegations = vec![delegation(&replacement, wall_now() + HOUR_MS)];
    v2.revoked.push(VendorKey::of(&online));
    let v2 = signed(&v2, &[2, 3]);
    connect(&h).await.publish_root(v2.clone()).await.unwrap();

    // A registry that never heard of version 2 still offers the revoked key's proxy; a
    // client that knows version 2 refuses it.
    let mut knows_v2 = trusting_the_root();
    knows_v2.learn_root(&signed(&v1, &[1, 2])).unwrap();
    knows_v2.learn_root(&v2).unwrap();
    let c2 = Client::new(connect(&frozen).await, config(knows_v2)).unwrap();
    let err = c2.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(
            reasons(&err)[..],
            [RejectReason::Delegation { reason, .. }] if matches!(**reason, AuthorityError::Revoked(_))
        ),
        "{err}"
    );

    // The registry that has version 2 dropped the revoked key's registration and refuses
    // it the name; the replacement registers it, and the name stays the root's.
    let refused = publish(&h, &online, &bundle(&online, &provider))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Registry(e) if e.kind == ErrorKind::NotOwner),
        "{refused}"
    );
    publish(&h, &replacement, &bundle(&replacement, &provider))
        .await
        .unwrap();
    assert_eq!(h.registry().owner("acme/echo"), Some(VendorKey(v1.root.0)));
    assert_eq!(c.sync_keys().await.unwrap(), 1);
    let report = c.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    // Rolling the root back to version 1 is refused.
    let replay = connect(&h)
        .await
        .publish_root(signed(&v1, &[1, 3]))
        .await
        .unwrap_err();
    assert!(
        matches!(&replay, ClientError::Registry(e) if e.kind == ErrorKind::BadQuery),
        "{replay}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_too_few_old_signatures_and_expired_delegations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let h = registry(dir.path()).await;
    let provider = echo_provider().await;
    let online = key(10);
    let v1 = first(&online, wall_now() + HOUR_MS);
    connect(&h)
        .await
        .publish_root(signed(&v1, &[1, 2]))
        .await
        .unwrap();
    let mut v2 = v1.next(wall_now());
    v2.keys = RootKeys::new([4, 5].map(|s| VendorKey::of(&key(s))), 2).unwrap();
    v2.delegations = vec![delegation(&online, wall_now().saturating_sub(1000))];
    // One old root key and both new ones: not the old root's threshold.
    let refused = connect(&h)
        .await
        .publish_root(signed(&v2, &[1, 4, 5]))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Registry(e) if e.kind == ErrorKind::BadSignature),
        "{refused}"
    );
    let mut client_side = trusting_the_root();
    client_side.learn_root(&signed(&v1, &[1, 2])).unwrap();
    assert!(client_side.learn_root(&signed(&v2, &[1, 4, 5])).is_err());
    // With two old keys it is a rotation; its delegation has expired already.
    connect(&h)
        .await
        .publish_root(signed(&v2, &[1, 2, 4, 5]))
        .await
        .unwrap();
    // The expired delegation gives the key nothing: the registry treats it as any other
    // key (it may claim a fresh name, not the root's), and the client refuses its proxy.
    publish(&h, &online, &bundle(&online, &provider))
        .await
        .unwrap();
    assert_eq!(
        h.registry().owner("acme/echo"),
        Some(VendorKey::of(&online))
    );
    let c = Client::new(connect(&h).await, config(trusting_the_root())).unwrap();
    assert_eq!(c.sync_keys().await.unwrap(), 2);
    let err = c.call_str(SAY).await.unwrap_err();
    assert!(
        matches!(
            reasons(&err)[..],
            [RejectReason::Delegation { reason, .. }] if matches!(**reason, AuthorityError::Expired { .. })
        ),
        "{err}"
    );
}
