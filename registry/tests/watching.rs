//! What operators and clients watch, over loopback: usage metered per client and service,
//! the operator's lease view (filters, last renewal, clients served), and leased event
//! registrations with their notifications, gaps and recommendations.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{
    ClientProfile, ContentHash, ErrorKind, Interest, LeaseFilter, Outcome, ServiceQuery,
    SystemData, Transition, UsageBy, UsageQuery, VendorKey,
};
use std::time::Duration;

fn setup(dir: &std::path::Path) -> Setup {
    let mut s = config(dir);
    s.registry.operators = vec![VendorKey::of(&key(9))];
    s
}

fn echo_query() -> ServiceQuery {
    ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_metered_per_client_and_service_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(setup(dir.path())).await;
    let acme_key = key(1);
    let acme = vendor(&h, &acme_key).await;
    let echo_lease = acme
        .register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap()
        .lease;
    acme.register(kv(&acme_key, "acme/kv", 30_000))
        .await
        .unwrap();
    let alice = vendor(&h, &key(2)).await;
    alice
        .register_client(ClientProfile::default())
        .await
        .unwrap();
    let anonymous = client(&h).await;

    // Alice is handed the echo proxy twice and reports three calls, one failed; an
    // anonymous client fetches it once without saying for which candidate.
    let hash = ContentHash::of(courier_proxy_artifacts::ECHO);
    let size = courier_proxy_artifacts::ECHO.len() as u64;
    for _ in 0..2 {
        alice
            .fetch_for(Some(echo_lease), hash, size, Duration::from_secs(5))
            .await
            .unwrap();
    }
    anonymous
        .fetch(hash, size, Duration::from_secs(5))
        .await
        .unwrap();
    for ok in [true, true, false] {
        alice
            .report(Outcome {
                client: String::new(),
                name: "acme/echo".into(),
                version: "1.0.0".into(),
                component: hash,
                function: "courier:echo/echo@0.1.0.say".into(),
                ok,
                detail: String::new(),
                duration_us: 5,
                facts: Default::default(),
            })
            .await
            .unwrap();
    }

    let operator = vendor(&h, &key(9)).await;
    let by = |by| UsageQuery { since_ms: 0, by };
    let rows = operator.usage(by(UsageBy::ClientService)).await.unwrap();
    let alice_echo = rows
        .iter()
        .find(|r| {
            r.client == Some(VendorKey::of(&key(2))) && r.service.as_deref() == Some("acme/echo")
        })
        .unwrap();
    assert_eq!(
        (alice_echo.handed_out, alice_echo.calls, alice_echo.failed),
        (2, 3, 1)
    );
    assert_eq!(alice_echo.bytes, 2 * size);
    let rows = operator.usage(by(UsageBy::Client)).await.unwrap();
    let anonymous_row = rows.iter().find(|r| r.client.is_none()).unwrap();
    assert_eq!(anonymous_row.handed_out, 1, "{rows:?}");
    // Usage is for operators only.
    assert_eq!(
        kind(alice.usage(by(UsageBy::Client)).await.unwrap_err()),
        ErrorKind::Forbidden
    );

    // The operator's lease view: filtered, with last renewal and clients served.
    let echo_only = LeaseFilter {
        interface: Some("courier:echo/echo".into()),
        ..Default::default()
    };
    let leases = operator.leases_where(&echo_only).await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].clients_served, 1);
    assert!(leases[0].last_renewal_ms > 0 && leases[0].last_renewal_ms <= wall_now());
    let by_prefix = LeaseFilter {
        name_prefix: Some("acme/k".into()),
        ..Default::default()
    };
    assert_eq!(
        operator.leases_where(&by_prefix).await.unwrap()[0].name,
        "acme/kv"
    );
    let nobody = LeaseFilter {
        vendor: Some(VendorKey::of(&key(7))),
        ..Default::default()
    };
    assert!(operator.leases_where(&nobody).await.unwrap().is_empty());

    // Written behind, usage survives a restart (and so does who was served).
    h.shutdown().await;
    let h = start(setup(dir.path())).await;
    let operator = vendor(&h, &key(9)).await;
    let rows = operator.usage(by(UsageBy::Service)).await.unwrap();
    let echo_row = rows
        .iter()
        .find(|r| r.service.as_deref() == Some("acme/echo"))
        .unwrap();
    assert_eq!((echo_row.handed_out, echo_row.calls), (2, 3));
    // A fetch that names no lease cannot be pinned on a service.
    let unknown = rows
        .iter()
        .find(|r| r.service.as_deref() == Some("(unknown)"))
        .unwrap();
    assert_eq!(unknown.handed_out, 1);
    let since_tomorrow = UsageQuery {
        since_ms: wall_now() + 2 * 3_600_000,
        by: UsageBy::Service,
    };
    assert!(operator.usage(since_tomorrow).await.unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_registrations_are_leased_and_told_of_their_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(setup(dir.path())).await;
    let acme_key = key(1);
    let acme = vendor(&h, &acme_key).await;
    let watcher = vendor(&h, &key(2)).await;
    let anonymous = client(&h).await;
    let interest = Interest {
        interface: Some("courier:echo/echo".into()),
        transitions: vec![Transition::Appeared, Transition::Gone],
        ttl_ms: 2_000,
        ..Default::default()
    };
    assert_eq!(
        kind(
            anonymous
                .register_interest(interest.clone())
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );
    let grant = watcher.register_interest(interest).await.unwrap();
    assert_eq!(grant.ttl_ms, 2_000);
    let mut listener = watcher.listen(grant.id, grant.next_seq).await.unwrap();
    let first = listener.next().await.unwrap().unwrap();
    assert!(
        first.notifications.is_empty() && first.missed.is_none(),
        "{first:?}"
    );

    // A kv registration concerns nobody; an echo one appears, its cancellation is gone.
    acme.register(kv(&acme_key, "acme/kv", 30_000))
        .await
        .unwrap();
    let lease = acme
        .register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap()
        .lease;
    let batch = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.notifications[0].transition, Transition::Appeared);
    assert_eq!(batch.notifications[0].lease, lease);
    let appeared_seq = batch.notifications[0].seq;
    acme.cancel(lease).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.notifications[0].transition, Transition::Gone);

    // A listener that was away asks from where it was and gets what it missed, in order.
    drop(listener);
    let again = acme
        .register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap()
        .lease;
    let mut listener = watcher.listen(grant.id, appeared_seq + 1).await.unwrap();
    let batch = listener.next().await.unwrap().unwrap();
    let seen: Vec<_> = batch
        .notifications
        .iter()
        .map(|n| (n.transition, n.lease))
        .collect();
    assert_eq!(
        seen,
        vec![(Transition::Gone, lease), (Transition::Appeared, again)]
    );

    // Someone else's registration cannot be renewed, cancelled or listened to.
    assert_eq!(
        kind(acme.renew_interest(grant.id, 2_000).await.unwrap_err()),
        ErrorKind::UnknownInterest
    );
    let mut stolen = acme.listen(grant.id, 0).await.unwrap();
    assert_eq!(
        kind(stolen.next().await.unwrap_err()),
        ErrorKind::UnknownInterest
    );

    // Renewed it lives on; left alone its lease runs out and its listener is told so.
    watcher.renew_interest(grant.id, 1_000).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match listener.next().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(ended, Ok(None)), "{ended:?}");
    assert_eq!(
        kind(watcher.renew_interest(grant.id, 1_000).await.unwrap_err()),
        ErrorKind::UnknownInterest
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_are_explicit_and_recommendations_fit_the_clients_system_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path());
    s.registry.event_ring = 8;
    let h = start(s).await;
    let acme_key = key(1);
    let acme = vendor(&h, &acme_key).await;
    let laptop = vendor(&h, &key(2)).await;

    // Recommendations are for registered clients, told of what fits their system data.
    let wants = Interest {
        interface: Some("courier:kv/store".into()),
        recommendations: true,
        ttl_ms: 30_000,
        ..Default::default()
    };
    assert_eq!(
        kind(laptop.register_interest(wants.clone()).await.unwrap_err()),
        ErrorKind::UnknownClient
    );
    laptop
        .register_client(ClientProfile::default())
        .await
        .unwrap();
    let facts = SystemData {
        facts: [
            ("os".to_string(), "linux".to_string()),
            (
                "packages".to_string(),
                "openssl\t3.0.1\nbash\t5.2\n".to_string(),
            ),
        ]
        .into(),
    };
    laptop.share_system_data(facts).await.unwrap();
    let grant = laptop.register_interest(wants).await.unwrap();
    let mut listener = laptop.listen(grant.id, grant.next_seq).await.unwrap();
    listener.next().await.unwrap().unwrap();

    let with = |name: &str, attrs: &[(&str, &str)]| {
        let mut m = echo_manifest(&acme_key, name);
        m.attributes = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        signed(&m, &acme_key, courier_proxy_artifacts::ECHO, 30_000)
    };
    // Does not fit (another OS), then fits (its OS and an installed package).
    acme.register(with("acme/for-alpine", &[("os", "alpine")]))
        .await
        .unwrap();
    let fits = acme
        .register(with(
            "acme/openssl-fix",
            &[("os", "Linux"), ("package", "openssl")],
        ))
        .await
        .unwrap()
        .lease;
    let batch = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.notifications.len(), 1, "{batch:?}");
    assert!(batch.notifications[0].recommended);
    assert_eq!(batch.notifications[0].lease, fits);
    // A kv registration matches the template itself (not as a recommendation).
    let kv_lease = acme
        .register(kv(&acme_key, "acme/kv", 30_000))
        .await
        .unwrap()
        .lease;
    let batch = tokio::time::timeout(Duration::from_secs(5), listener.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(batch.notifications[0].lease, kv_lease);
    assert!(!batch.notifications[0].recommended);

    // Asking from events the ring no longer keeps: told of the gap.
    for i in 0..12 {
        acme.register(echo(&acme_key, &format!("acme/e{i}"), 30_000))
            .await
            .unwrap();
    }
    let mut late = laptop.listen(grant.id, 1).await.unwrap();
    let batch = late.next().await.unwrap().unwrap();
    assert!(
        batch.missed.is_some_and(|(from, to)| from == 1 && to > 1),
        "{batch:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_template_is_refused_with_a_type() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(setup(dir.path())).await;
    let c = vendor(&h, &key(3)).await;
    let bad = Interest {
        interface: Some("not an interface".into()),
        ..Default::default()
    };
    assert_eq!(
        kind(c.register_interest(bad).await.unwrap_err()),
        ErrorKind::BadQuery
    );
    let bad = Interest {
        interface: Some("courier:echo/echo".into()),
        version_req: Some("^^1".into()),
        ..Default::default()
    };
    assert_eq!(
        kind(c.register_interest(bad).await.unwrap_err()),
        ErrorKind::BadQuery
    );
    assert!(
        c.find(echo_query()).await.unwrap().is_empty(),
        "still serving"
    );
    h.shutdown().await;
}
