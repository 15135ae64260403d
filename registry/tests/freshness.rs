//! Freshness statements at the registry, over real QUIC with real signatures and a real
//! redb store: only the vendor itself can publish one, about names it owns; a forged,
//! unsigned or expired one is refused; an older one cannot replace a newer one; the latest
//! is served with every candidate of its service, and after a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{ErrorKind, ServiceQuery, SignedFreshness};
use courier_test_support::{fresh_now, freshness_at};
use courier_transport::RegistryClient;

fn echo_query() -> ServiceQuery {
    ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    }
}

/// The statement served with each candidate of the echo interface, by service name.
async fn served(c: &RegistryClient) -> Vec<(String, Option<SignedFreshness>)> {
    let mut out: Vec<_> = c
        .find(echo_query())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.manifest.peek().unwrap().name, c.freshness))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_statement_cannot_replace_a_newer_one_and_the_latest_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let (acme, mallory) = (key(1), key(3));
    let v = vendor(&h, &acme).await;
    v.register(echo(&acme, "acme/echo", 30_000)).await.unwrap();
    let v_mallory = vendor(&h, &mallory).await;
    v_mallory
        .register(echo(&mallory, "mallory/echo", 30_000))
        .await
        .unwrap();
    let anon = client(&h).await;
    // Nothing published yet: candidates come without a statement.
    assert!(served(&anon).await.iter().all(|(_, f)| f.is_none()));

    let now = wall_now();
    let newer = freshness_at(&acme, &[("acme/echo", "1.0.0")], now, 600_000);
    let older = freshness_at(&acme, &[("acme/echo", "0.9.0")], now - 60_000, 600_000);

    // Refused: anonymous; by another key than the connection's; about a name the key does
    // not own; forged (signed by another key); unsigned; expired.
    assert_eq!(
        kind(anon.publish_freshness(newer.clone()).await.unwrap_err()),
        ErrorKind::NotAuthenticated
    );
    assert_eq!(
        kind(
            v_mallory
                .publish_freshness(newer.clone())
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );
    assert_eq!(
        kind(
            v_mallory
                .publish_freshness(fresh_now(&mallory, "acme/echo", "9.0.0"))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotOwner
    );
    let forged = SignedFreshness {
        bytes: newer.bytes.clone(),
        signature: fresh_now(&mallory, "mallory/echo", "1.0.0").signature,
    };
    assert_eq!(
        kind(v.publish_freshness(forged).await.unwrap_err()),
        ErrorKind::BadSignature
    );
    let unsigned = SignedFreshness {
        bytes: newer.bytes.clone(),
        signature: [0; 64],
    };
    assert!(v.publish_freshness(unsigned).await.is_err());
    let expired = freshness_at(&acme, &[("acme/echo", "1.0.0")], now - 3_600_000, 600_000);
    assert_eq!(
        kind(v.publish_freshness(expired).await.unwrap_err()),
        ErrorKind::BadQuery
    );
    assert!(served(&anon).await.iter().all(|(_, f)| f.is_none()));

    // The real one, then an older one (refused, `Stale`), then the same again (a retry).
    v.publish_freshness(newer.clone()).await.unwrap();
    assert_eq!(
        kind(v.publish_freshness(older).await.unwrap_err()),
        ErrorKind::Stale
    );
    v.publish_freshness(newer.clone()).await.unwrap();
    let expected = vec![
        ("acme/echo".to_string(), Some(newer.clone())),
        ("mallory/echo".to_string(), None),
    ];
    assert_eq!(served(&anon).await, expected);
    for c in [&v, &v_mallory, &anon] {
        c.close();
    }
    h.shutdown().await;

    // After a restart the latest statement is served still, and an older one is refused.
    let h = start(config(dir.path())).await;
    let v = vendor(&h, &acme).await;
    let anon = client(&h).await;
    assert_eq!(served(&anon).await, expected);
    let between = freshness_at(&acme, &[("acme/echo", "0.9.5")], now - 1, 600_000);
    assert_eq!(
        kind(v.publish_freshness(between).await.unwrap_err()),
        ErrorKind::Stale
    );
    h.shutdown().await;
}
