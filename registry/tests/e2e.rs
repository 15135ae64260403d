//! End to end over loopback QUIC with the real client: publish, find, fetch, renew, let
//! expire, cancel, replace, ownership and grants, events (sequence, filter, live, missed),
//! service history.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{
    AttributeConstraint, ErrorKind, EventKind, Outcome, ServiceQuery, VendorKey,
};
use std::time::Duration;

fn query(interface: &str) -> ServiceQuery {
    ServiceQuery {
        interface: interface.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_find_fetch_renew_expire_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;

    // Publish: the echo proxy with a long lease, the kv proxy with a short one.
    let echo_grant = v.register(echo(&acme, "acme/echo", 600_000)).await.unwrap();
    assert_eq!(echo_grant.ttl_ms, 60_000, "clamped to max_ttl");
    assert_eq!(echo_grant.replaced, None);
    let kv_grant = v.register(kv(&acme, "acme/kv", 1)).await.unwrap();
    assert_eq!(kv_grant.ttl_ms, 100, "raised to min_ttl");

    // Find, as an unauthenticated client.
    let c = client(&h).await;
    let found = c.find(query("courier:echo/echo")).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].lease, echo_grant.lease);
    assert_eq!(found[0].interface, ECHO_IFACE);
    assert!(found[0].remaining_ms > 50_000 && found[0].remaining_ms <= 60_000);
    let m = found[0].manifest.verify().unwrap();
    assert_eq!(m.name, "acme/echo");
    let bytes = c
        .fetch(m.component_hash, m.component_size, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(bytes, courier_proxy_artifacts::ECHO);

    // Functions, version requirement and attributes narrow the match.
    let mut q = query("courier:echo/echo");
    q.functions = vec!["say".into()];
    q.version_req = Some("^0.1".into());
    q.attributes = vec![AttributeConstraint::Equals("region".into(), "eu".into())];
    assert_eq!(c.find(q.clone()).await.unwrap().len(), 1);
    q.functions = vec!["shout".into()];
    assert!(c.find(q.clone()).await.unwrap().is_empty());
    q.functions.clear();
    q.version_req = Some("^0.2".into());
    assert!(c.find(q.clone()).await.unwrap().is_empty());
    q.version_req = None;
    q.attributes = vec![AttributeConstraint::Absent("region".into())];
    assert!(c.find(q).await.unwrap().is_empty());
    assert_eq!(
        kind(c.find(query("not an interface")).await.unwrap_err()),
        ErrorKind::BadQuery
    );

    // Renew.
    let renewed = v.renew(echo_grant.lease, 30_000).await.unwrap();
    assert_eq!(renewed.ttl_ms, 30_000);
    let leases = c.leases().await.unwrap();
    let echo_row = leases.iter().find(|l| l.lease == echo_grant.lease).unwrap();
    assert_eq!(echo_row.renewals, 1);
    assert_eq!(echo_row.ttl_ms, 30_000);
    assert_eq!(echo_row.interfaces, vec![ECHO_IFACE.to_string()]);
    assert_eq!(echo_row.vendor, VendorKey::of(&acme));
    assert!(!echo_row.in_grace);

    // Let the kv lease expire: it stops matching, renewing it fails.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(c.find(query("courier:kv/store")).await.unwrap().is_empty());
    assert_eq!(
        kind(v.renew(kv_grant.lease, 1_000).await.unwrap_err()),
        ErrorKind::UnknownLease
    );

    // Cancel: gone at once, and cannot be renewed or cancelled again.
    v.cancel(echo_grant.lease).await.unwrap();
    assert!(c.find(query("courier:echo/echo")).await.unwrap().is_empty());
    assert_eq!(
        kind(v.renew(echo_grant.lease, 1_000).await.unwrap_err()),
        ErrorKind::UnknownLease
    );
    assert_eq!(
        kind(v.cancel(echo_grant.lease).await.unwrap_err()),
        ErrorKind::UnknownLease
    );
    assert!(c.leases().await.unwrap().is_empty());

    // The events tell the whole story, in strictly increasing order.
    let mut sub = c.subscribe(None, 0).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 5 {
        let batch = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.missed, None);
        events.extend(batch.events);
    }
    let kinds: Vec<(EventKind, bool)> = events
        .iter()
        .map(|e| (e.kind, e.lease == echo_grant.lease))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Registered, true),
            (EventKind::Registered, false),
            (EventKind::Renewed, true),
            (EventKind::Expired, false),
            (EventKind::Cancelled, true),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events[0].name, "acme/echo");
    assert_eq!(events[1].interfaces, vec![KV_IFACE.to_string()]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_ownership_and_grant() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let (acme, evil) = (key(1), key(2));
    let a = vendor(&h, &acme).await;
    let b = vendor(&h, &evil).await;

    let request = echo(&acme, "acme/echo", 10_000);
    let first = a.register(request.clone()).await.unwrap();
    // The very same signed manifest again (a vendor's retry whose first answer was lost):
    // the same lease, renewed.
    let again = a.register(request).await.unwrap();
    assert_eq!((again.lease, again.replaced), (first.lease, None));
    // Same name, same key, another manifest (a new version): replaces.
    let mut newer = echo_manifest(&acme, "acme/echo");
    newer.version = "1.0.1".into();
    let newer = signed(&newer, &acme, courier_proxy_artifacts::ECHO, 10_000);
    let second = a.register(newer).await.unwrap();
    assert_eq!(second.replaced, Some(first.lease));
    assert_eq!(
        kind(a.renew(first.lease, 1_000).await.unwrap_err()),
        ErrorKind::UnknownLease
    );
    let found = a.find(query("courier:echo/echo")).await.unwrap();
    assert_eq!(
        found.iter().map(|c| c.lease).collect::<Vec<_>>(),
        vec![second.lease]
    );

    // Another key can neither take the name nor touch the lease.
    assert_eq!(
        kind(
            b.register(echo(&evil, "acme/echo", 10_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotOwner
    );
    assert_eq!(
        kind(b.renew(second.lease, 10_000).await.unwrap_err()),
        ErrorKind::NotOwner
    );
    assert_eq!(
        kind(b.cancel(second.lease).await.unwrap_err()),
        ErrorKind::NotOwner
    );
    assert_eq!(h.registry().owner("acme/echo"), Some(VendorKey::of(&acme)));

    // An operator grant lets the second key register the name too (its own registration).
    h.registry()
        .grant("acme/echo", &VendorKey::of(&evil))
        .unwrap();
    let granted = b.register(echo(&evil, "acme/echo", 10_000)).await.unwrap();
    assert_eq!(granted.replaced, None);
    assert_eq!(a.find(query("courier:echo/echo")).await.unwrap().len(), 2);
    // Still only the owner of each lease may renew or cancel it.
    assert_eq!(
        kind(b.cancel(second.lease).await.unwrap_err()),
        ErrorKind::NotOwner
    );
    b.cancel(granted.lease).await.unwrap();

    // The replaced lease produced a Replaced event.
    let (batch, _) = h.registry().events_since(0, Some("courier:echo/echo"));
    let replaced: Vec<_> = batch
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Replaced)
        .collect();
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].lease, first.lease);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_filter_live_and_missed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.registry.event_ring = 4;
    let h = start(cfg).await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let c = client(&h).await;

    // A live subscriber for kv only, from now on.
    let mut kv_sub = c
        .subscribe(Some("courier:kv/store".into()), h.registry().next_seq())
        .await
        .unwrap();
    let first = kv_sub.next().await.unwrap().unwrap();
    assert!(first.events.is_empty() && first.missed.is_none());

    let e = v.register(echo(&acme, "acme/echo", 10_000)).await.unwrap();
    let k = v.register(kv(&acme, "acme/kv", 10_000)).await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), kv_sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        live.events.len(),
        1,
        "the echo registration is filtered out"
    );
    assert_eq!(live.events[0].lease, k.lease);
    assert_eq!(live.events[0].kind, EventKind::Registered);

    // Overflow the ring of 4: a subscriber asking from the start learns what it missed.
    for _ in 0..5 {
        v.renew(e.lease, 10_000).await.unwrap();
    }
    let mut late = c.subscribe(None, 1).await.unwrap();
    let batch = late.next().await.unwrap().unwrap();
    let (from, to) = batch.missed.unwrap();
    assert_eq!(from, 1);
    assert_eq!(batch.events.len(), 4);
    assert_eq!(batch.events[0].seq, to);
    assert!(batch.events.iter().all(|ev| ev.kind == EventKind::Renewed));

    // The kv subscriber saw none of the echo renewals, but does see the kv cancel.
    v.cancel(k.lease).await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), kv_sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        live.events.iter().map(|ev| ev.kind).collect::<Vec<_>>(),
        vec![EventKind::Cancelled]
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_history_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let laptop = key(5);
    let c = vendor(&h, &laptop).await;
    c.register_client(courier_protocol::ClientProfile::default())
        .await
        .unwrap();
    let outcome = |i: u64, detail: String| Outcome {
        client: "laptop-1".into(),
        name: "acme/echo".into(),
        version: "1.0.0".into(),
        component: courier_protocol::ContentHash::of(courier_proxy_artifacts::ECHO),
        function: format!("{ECHO_IFACE}.say"),
        ok: i != 1,
        detail,
        duration_us: 10 + i,
        facts: Default::default(),
    };
    for i in 0..3 {
        c.report(outcome(i, format!("run {i}"))).await.unwrap();
    }
    let me = courier_protocol::VendorKey::of(&laptop).to_string();
    let hist = c.history(&me, 2).await.unwrap();
    assert_eq!(
        hist.iter()
            .map(|e| e.outcome.detail.as_str())
            .collect::<Vec<_>>(),
        vec!["run 2", "run 1"]
    );
    // The history is kept under the client's key, whatever it called itself.
    assert_eq!(hist[0].outcome.client, me);
    assert_eq!(
        kind(c.history("laptop-1", 10).await.unwrap_err()),
        ErrorKind::Forbidden
    );
    let bad = outcome(0, "x".repeat(20_000));
    assert_eq!(kind(c.report(bad).await.unwrap_err()), ErrorKind::BadQuery);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_table_is_read_a_page_at_a_time_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let mut names = Vec::new();
    for i in (0..25).rev() {
        let name = format!("acme/svc{i:02}");
        v.register(echo(&acme, &name, 60_000)).await.unwrap();
        names.push(name);
    }
    names.sort();

    let c = client(&h).await;
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = c.leases_page(Default::default(), after, 10).await.unwrap();
        pages.push(
            page.leases
                .iter()
                .map(|l| l.name.clone())
                .collect::<Vec<_>>(),
        );
        match page.next {
            Some(next) => {
                assert_eq!(next.name, page.leases.last().unwrap().name);
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    assert_eq!(pages.concat(), names, "every lease once, sorted by name");

    // The whole table through the client's own paging; a page never exceeds the cap.
    let all = c.leases().await.unwrap();
    assert_eq!(
        all.iter().map(|l| &l.name).collect::<Vec<_>>(),
        names.iter().collect::<Vec<_>>()
    );
    let page = c
        .leases_page(Default::default(), None, u32::MAX)
        .await
        .unwrap();
    assert_eq!(page.leases.len(), 25);
    assert!(page.next.is_none());
    h.shutdown().await;
}
