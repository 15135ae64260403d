//! Clients the registry knows and operators acting on it, over loopback: who may read and
//! write a client's data and history, and each operator action with its audit entry, its
//! effect on vendors, and its survival across a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{
    AdminAction, ClientProfile, ContentHash, ErrorKind, OperatorStatement, Outcome,
    SignedOperatorStatement, SystemData, VendorKey,
};
use courier_transport::RegistryClient;

fn outcome(ok: bool) -> Outcome {
    Outcome {
        client: "whatever the client claims".into(),
        name: "acme/echo".into(),
        version: "1.0.0".into(),
        component: ContentHash([1; 32]),
        function: "courier:echo/echo@0.1.0.say".into(),
        ok,
        detail: "fine".into(),
        duration_us: 10,
        facts: Default::default(),
    }
}

fn facts(pairs: &[(&str, &str)]) -> SystemData {
    SystemData {
        facts: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A registry whose operator key is `key(9)`.
fn setup(dir: &std::path::Path) -> Setup {
    let mut s = config(dir);
    s.registry.operators = vec![VendorKey::of(&key(9))];
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_data_and_history_are_its_own_and_the_operators() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(setup(dir.path())).await;
    let (alice_key, bob_key) = (key(1), key(2));
    let alice = vendor(&h, &alice_key).await;
    let bob = vendor(&h, &bob_key).await;
    let anonymous = client(&h).await;
    let operator = vendor(&h, &key(9)).await;

    // Not registered yet: reports and shared data are refused.
    assert_eq!(
        kind(alice.report(outcome(true)).await.unwrap_err()),
        ErrorKind::UnknownClient
    );
    assert_eq!(
        kind(
            alice
                .share_system_data(facts(&[("os", "debian")]))
                .await
                .unwrap_err()
        ),
        ErrorKind::UnknownClient
    );
    assert_eq!(
        kind(
            anonymous
                .register_client(ClientProfile::default())
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );

    let profile = ClientProfile {
        attributes: [("site".to_string(), "lab".to_string())].into(),
    };
    alice.register_client(profile).await.unwrap();
    bob.register_client(ClientProfile::default()).await.unwrap();
    alice
        .share_system_data(facts(&[("os", "debian"), ("packages", "a\t1\nb\t2\n")]))
        .await
        .unwrap();
    alice.report(outcome(true)).await.unwrap();
    alice.report(outcome(false)).await.unwrap();

    // Alice reads her own record and history; the client id is her key, whatever she said.
    let me = VendorKey::of(&alice_key);
    let info = alice.client(me).await.unwrap();
    assert_eq!(info.attributes["site"], "lab");
    assert_eq!((info.os(), info.package_count()), (Some("debian"), Some(2)));
    assert!(!info.last_outcome.as_ref().unwrap().outcome.ok);
    let history = alice.history(&me.to_string(), 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|e| e.outcome.client == me.to_string()));
    assert!(
        alice
            .history("whatever the client claims", 10)
            .await
            .is_err()
    );

    // Bob may read neither; nobody unauthenticated may.
    assert_eq!(
        kind(bob.client(me).await.unwrap_err()),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(bob.history(&me.to_string(), 10).await.unwrap_err()),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(anonymous.history(&me.to_string(), 10).await.unwrap_err()),
        ErrorKind::NotAuthenticated
    );
    assert_eq!(kind(bob.clients().await.unwrap_err()), ErrorKind::Forbidden);

    // The operator reads them all.
    let all = operator.clients().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        operator.history(&me.to_string(), 10).await.unwrap().len(),
        2
    );
    assert!(operator.client(me).await.unwrap().last_contact_ms >= info.registered_at_ms);

    // A restart keeps the clients, their data and their last outcome.
    h.shutdown().await;
    let h = start(setup(dir.path())).await;
    let operator = vendor(&h, &key(9)).await;
    let info = operator.client(me).await.unwrap();
    assert_eq!(info.package_count(), Some(2));
    assert!(info.last_outcome.is_some());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_act_on_a_running_registry_and_every_action_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(setup(dir.path())).await;
    let acme_key = key(1);
    let acme = vendor(&h, &acme_key).await;
    let operator = vendor(&h, &key(9)).await;
    let stranger = vendor(&h, &key(3)).await;
    let anonymous = client(&h).await;
    let echo_query = || courier_protocol::ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    };

    // Without an operator key, every action is refused.
    let drain = AdminAction::Drain {
        name: "acme/echo".into(),
        reason: "maintenance".into(),
    };
    assert_eq!(
        kind(stranger.admin(drain.clone()).await.unwrap_err()),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(anonymous.admin(drain.clone()).await.unwrap_err()),
        ErrorKind::NotAuthenticated
    );
    assert_eq!(
        kind(stranger.audit(0).await.unwrap_err()),
        ErrorKind::Forbidden
    );

    // Revoking one lease: it stops matching at once, and its vendor learns why.
    let first = acme
        .register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap();
    let revoke = AdminAction::RevokeLease {
        lease: first.lease,
        reason: "serves stale data".into(),
    };
    let entry = operator.admin(revoke).await.unwrap();
    assert_eq!(entry.operator, Some(VendorKey::of(&key(9))));
    assert!(anonymous.find(echo_query()).await.unwrap().is_empty());
    let err = acme.renew(first.lease, 30_000).await.unwrap_err();
    assert!(err.to_string().contains("serves stale data"), "{err}");
    assert_eq!(kind(err), ErrorKind::LeaseRevoked);

    // Draining: no new registrations, no renewals; undraining lets them back.
    let second = acme
        .register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap();
    operator.admin(drain).await.unwrap();
    assert_eq!(
        kind(acme.renew(second.lease, 30_000).await.unwrap_err()),
        ErrorKind::Draining
    );
    assert_eq!(
        kind(
            acme.register(echo(&acme_key, "acme/echo", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::Draining
    );
    assert_eq!(
        anonymous.find(echo_query()).await.unwrap().len(),
        1,
        "existing leases run out"
    );
    operator
        .admin(AdminAction::Undrain {
            name: "acme/echo".into(),
        })
        .await
        .unwrap();
    acme.renew(second.lease, 30_000).await.unwrap();

    // Banning the key from the name retires its registration and refuses it again.
    let ban = AdminAction::Ban {
        name: "acme/echo".into(),
        key: VendorKey::of(&acme_key),
        reason: "abuse".into(),
    };
    operator.admin(ban).await.unwrap();
    assert!(anonymous.find(echo_query()).await.unwrap().is_empty());
    assert_eq!(
        kind(
            acme.register(echo(&acme_key, "acme/echo", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::Banned
    );
    assert_eq!(
        kind(acme.renew(second.lease, 30_000).await.unwrap_err()),
        ErrorKind::LeaseRevoked
    );
    // The ban is for that name only.
    acme.register(kv(&acme_key, "acme/kv", 30_000))
        .await
        .unwrap();

    // A restart keeps the ban; allowing lifts it.
    h.shutdown().await;
    let h = start(setup(dir.path())).await;
    let acme = vendor(&h, &acme_key).await;
    let operator = vendor(&h, &key(9)).await;
    assert_eq!(
        kind(
            acme.register(echo(&acme_key, "acme/echo", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::Banned
    );
    operator
        .admin(AdminAction::Allow {
            name: "acme/echo".into(),
            key: VendorKey::of(&acme_key),
        })
        .await
        .unwrap();
    acme.register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap();

    // Revoking the whole key with a statement the operator signs: everything of the key
    // goes, it can register nothing, and anyone can fetch the statement and check it.
    let statement = OperatorStatement {
        operator: VendorKey::of(&key(9)),
        subject: VendorKey::of(&acme_key),
        reason: "key leaked".into(),
        issued_at_ms: wall_now(),
    };
    let signed = SignedOperatorStatement::sign(&statement, &key(9));
    // A statement signed by another key than the connection's operator key is refused.
    let forged = SignedOperatorStatement::sign(&statement, &key(3));
    assert!(
        operator
            .admin(AdminAction::RevokeKey(forged))
            .await
            .is_err()
    );
    operator
        .admin(AdminAction::RevokeKey(signed.clone()))
        .await
        .unwrap();
    let anonymous = client(&h).await;
    assert!(anonymous.find(echo_query()).await.unwrap().is_empty());
    assert_eq!(
        kind(
            acme.register(kv(&acme_key, "acme/kv", 30_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::Revoked
    );
    let held = anonymous
        .operator_statements(vec![VendorKey::of(&acme_key)])
        .await
        .unwrap();
    assert_eq!(held, vec![signed]);
    assert_eq!(held[0].verify().unwrap().into_inner(), statement);

    // Every action is in the audit log, numbered, oldest first, across the restart.
    let log = operator.audit(0).await.unwrap();
    let actions: Vec<String> = log.iter().map(|e| e.action.to_string()).collect();
    assert_eq!(log.len(), 6, "{actions:?}");
    assert!(log.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(actions[0].starts_with("revoke lease"), "{actions:?}");
    assert!(actions[5].starts_with("revoke key"), "{actions:?}");
    assert_eq!(operator.audit(log[4].seq).await.unwrap().len(), 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_operator_input_is_refused_with_a_type() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(setup(dir.path())).await;
    let operator = vendor(&h, &key(9)).await;
    let unknown = AdminAction::RevokeLease {
        lease: courier_protocol::LeaseId([7; 16]),
        reason: String::new(),
    };
    assert_eq!(
        kind(operator.admin(unknown).await.unwrap_err()),
        ErrorKind::UnknownLease
    );
    let bad_name = AdminAction::Drain {
        name: "no spaces allowed".into(),
        reason: String::new(),
    };
    assert_eq!(
        kind(operator.admin(bad_name).await.unwrap_err()),
        ErrorKind::BadQuery
    );
    let long = AdminAction::Drain {
        name: "acme/echo".into(),
        reason: "x".repeat(10_000),
    };
    assert_eq!(
        kind(operator.admin(long).await.unwrap_err()),
        ErrorKind::BadQuery
    );
    // The registry keeps serving.
    let c: RegistryClient = client(&h).await;
    assert!(c.leases().await.unwrap().is_empty());
    assert!(operator.audit(0).await.unwrap().is_empty());
    h.shutdown().await;
}
