//! Key rotation and revocation at the registry, over real QUIC with real signatures and a
//! real redb store: statements with bad or foreign signatures are refused; after a rotation
//! the old key can no longer register or renew the name and the new key can; a revoked
//! key's registrations stop matching at once and it cannot register again; all of it
//! survives a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{
    ErrorKind, EventKind, KeyStatement, ServiceQuery, SignedKeyStatement, SigningKey, VendorKey,
};

fn echo_query() -> ServiceQuery {
    ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    }
}

fn rotation(old: &SigningKey, new: &SigningKey, signer: &SigningKey) -> SignedKeyStatement {
    SignedKeyStatement::sign(
        &KeyStatement::rotate(VendorKey::of(old), VendorKey::of(new), wall_now()),
        signer,
    )
}

fn revocation(key: &SigningKey) -> SignedKeyStatement {
    SignedKeyStatement::sign(&KeyStatement::revoke(VendorKey::of(key), wall_now()), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_passes_the_name_to_the_new_key_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let (old, new, mallory) = (key(1), key(2), key(3));
    let v_old = vendor(&h, &old).await;
    let grant = v_old
        .register(echo(&old, "acme/echo", 30_000))
        .await
        .unwrap();

    // Refused: not authenticated; authenticated as another key; signed by the new key;
    // signed by a foreign key; signed in another domain (a manifest signature).
    let anon = client(&h).await;
    assert_eq!(
        kind(
            anon.publish_statement(rotation(&old, &new, &old))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );
    let v_mallory = vendor(&h, &mallory).await;
    assert_eq!(
        kind(
            v_mallory
                .publish_statement(rotation(&old, &mallory, &old))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );
    for signer in [&new, &mallory] {
        assert_eq!(
            kind(
                v_old
                    .publish_statement(rotation(&old, &new, signer))
                    .await
                    .unwrap_err()
            ),
            ErrorKind::BadSignature
        );
    }
    let statement = KeyStatement::rotate(VendorKey::of(&old), VendorKey::of(&new), wall_now());
    let bytes = courier_protocol::codec::encode(&statement);
    let other_domain = SignedKeyStatement {
        signature: courier_protocol::sign(&old, courier_protocol::MANIFEST_DOMAIN, &bytes),
        bytes,
    };
    assert_eq!(
        kind(v_old.publish_statement(other_domain).await.unwrap_err()),
        ErrorKind::BadSignature
    );
    assert_eq!(h.registry().owner("acme/echo"), Some(VendorKey::of(&old)));

    // The real rotation.
    v_old
        .publish_statement(rotation(&old, &new, &old))
        .await
        .unwrap();
    assert_eq!(h.registry().owner("acme/echo"), Some(VendorKey::of(&new)));
    // A rotated key rotates no more (not even to a third key).
    assert_eq!(
        kind(
            v_old
                .publish_statement(rotation(&old, &mallory, &old))
                .await
                .unwrap_err()
        ),
        ErrorKind::Rotated
    );
    // The old key can no longer renew, cancel or register the name.
    assert_eq!(
        kind(v_old.renew(grant.lease, 30_000).await.unwrap_err()),
        ErrorKind::NotOwner
    );
    assert_eq!(
        kind(
            v_old
                .register(echo(&old, "acme/echo", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::Rotated
    );
    // Its registration still matches (it is validly signed), and the new key keeps it
    // alive, then replaces it with its own.
    assert_eq!(anon.find(echo_query()).await.unwrap().len(), 1);
    let v_new = vendor(&h, &new).await;
    v_new.renew(grant.lease, 30_000).await.unwrap();
    let fresh = v_new
        .register(echo(&new, "acme/echo", 30_000))
        .await
        .unwrap();
    assert_eq!(fresh.replaced, Some(grant.lease));
    // Another key still cannot take the name.
    assert_eq!(
        kind(
            v_mallory
                .register(echo(&mallory, "acme/echo", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotOwner
    );
    // Anyone can read the statements, to verify them itself.
    let served = anon
        .key_statements(vec![VendorKey::of(&old)])
        .await
        .unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(
        served[0].verify().unwrap().successor(),
        Some(VendorKey::of(&new))
    );
    for c in [&v_old, &v_new, &v_mallory, &anon] {
        c.close();
    }
    h.shutdown().await;

    // After a restart: the rotation, the ownership and the statements are all still there.
    let h = start(config(dir.path())).await;
    assert_eq!(h.registry().owner("acme/echo"), Some(VendorKey::of(&new)));
    let v_old = vendor(&h, &old).await;
    assert_eq!(
        kind(
            v_old
                .register(echo(&old, "acme/echo", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::Rotated
    );
    let v_new = vendor(&h, &new).await;
    v_new.renew(fresh.lease, 30_000).await.unwrap();
    let anon = client(&h).await;
    assert_eq!(
        anon.key_statements(vec![VendorKey::of(&old)])
            .await
            .unwrap(),
        served
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_stops_matching_at_once_and_cannot_register_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let (acme, other) = (key(1), key(2));
    let v = vendor(&h, &acme).await;
    v.register(echo(&acme, "acme/echo", 30_000)).await.unwrap();
    v.register(kv(&acme, "acme/kv", 30_000)).await.unwrap();
    let v_other = vendor(&h, &other).await;
    v_other
        .register(echo(&other, "other/echo", 30_000))
        .await
        .unwrap();
    let anon = client(&h).await;
    assert_eq!(anon.find(echo_query()).await.unwrap().len(), 2);
    let mut events = anon.subscribe(None, u64::MAX).await.unwrap();

    // Only the key itself can revoke itself.
    assert_eq!(
        kind(
            v_other
                .publish_statement(revocation(&acme))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );
    v.publish_statement(revocation(&acme)).await.unwrap();
    let found = anon.find(echo_query()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].manifest.peek().unwrap().name, "other/echo");
    assert!(
        anon.leases()
            .await
            .unwrap()
            .iter()
            .all(|l| l.vendor != VendorKey::of(&acme))
    );
    let mut revoked = 0;
    while revoked < 2 {
        let batch = events.next().await.unwrap().unwrap();
        revoked += batch
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Revoked)
            .count();
    }
    assert_eq!(
        kind(
            v.register(echo(&acme, "acme/echo", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::Revoked
    );
    // Revoking again changes nothing; a revoked key cannot rotate away.
    v.publish_statement(revocation(&acme)).await.unwrap();
    assert_eq!(
        kind(
            v.publish_statement(rotation(&acme, &other, &acme))
                .await
                .unwrap_err()
        ),
        ErrorKind::Revoked
    );
    assert_eq!(
        anon.key_statements(vec![VendorKey::of(&acme)])
            .await
            .unwrap()
            .len(),
        1
    );
    for c in [&v, &v_other, &anon] {
        c.close();
    }
    h.shutdown().await;

    let h = start(config(dir.path())).await;
    let anon = client(&h).await;
    assert_eq!(anon.find(echo_query()).await.unwrap().len(), 1);
    let v = vendor(&h, &acme).await;
    assert_eq!(
        kind(v.register(kv(&acme, "acme/kv", 30_000)).await.unwrap_err()),
        ErrorKind::Revoked
    );
    h.shutdown().await;
}

#[test]
fn operator_revocation_is_durable_and_the_keys_own_statement_can_follow() {
    let dir = tempfile::tempdir().unwrap();
    let acme = key(1);
    {
        let r = courier_registry::Registry::open(config(dir.path()).registry).unwrap();
        let now = r.now();
        r.register(now, &VendorKey::of(&acme), echo(&acme, "acme/echo", 30_000))
            .unwrap();
        assert!(r.revoke_by_operator(now, &VendorKey::of(&acme)).unwrap());
        assert!(!r.revoke_by_operator(now, &VendorKey::of(&acme)).unwrap());
        assert_eq!(r.counts().0, 0);
    }
    let r = courier_registry::Registry::open(config(dir.path()).registry).unwrap();
    assert_eq!(
        r.key_status(&VendorKey::of(&acme)),
        (VendorKey::of(&acme), true)
    );
    assert!(r.key_statements(&[VendorKey::of(&acme)]).is_empty());
    assert!(
        r.register(
            r.now(),
            &VendorKey::of(&acme),
            echo(&acme, "acme/echo", 30_000)
        )
        .is_err()
    );
    // The key's own revocation afterwards adds the statement clients can learn, durably.
    let (_, changed) = r
        .key_statement(r.now(), &VendorKey::of(&acme), revocation(&acme))
        .unwrap();
    assert!(changed);
    drop(r);
    let r = courier_registry::Registry::open(config(dir.path()).registry).unwrap();
    assert_eq!(r.key_statements(&[VendorKey::of(&acme)]).len(), 1);
}
