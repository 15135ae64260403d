//! One event sequence for the whole cluster, in one process on a real etcd: the writer and
//! a standby number every registration, renewal (the writer's and the standby's),
//! replacement, cancellation, expiry and revocation alike, from etcd's history; a
//! subscriber that read part of the sequence at the standby reads the rest at the writer,
//! from the next number, without a gap and without an event twice; and a standby elected
//! writer goes on with the events it kept.
#![allow(clippy::unwrap_used)]

mod common;

use common::{etcd, open_standby};
use courier_cluster::{Advert, Writer};
use courier_protocol::{
    Event, EventKind, KeyStatement, LeaseId, SignedKeyStatement, SigningKey, SpkiPin, VendorKey,
};
use courier_provider::BundleBuilder;
use courier_registry::{Registry, ServerConfig};
use courier_test_support::{key, short_leases, wall_now};
use std::time::Duration;

fn register(writer: &Registry, vendor: &SigningKey, name: &str, ttl: Duration) -> LeaseId {
    let bundle = BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name(name)
        .version("0.1.0")
        .endpoint("127.0.0.1:7901")
        .provider_pin(SpkiPin([7; 32]))
        .sign(vendor)
        .unwrap();
    writer
        .register(
            writer.now(),
            &VendorKey::of(vendor),
            bundle.register_request(ttl),
        )
        .unwrap()
        .lease
}

/// Every event `registry` numbered since it opened (what came before is missed there).
fn all(registry: &Registry) -> Vec<Event> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let (batch, n) = registry.events_since(next, None);
        if next > 0 {
            assert_eq!(batch.missed, None, "nothing missed since the node opened");
        }
        out.extend(batch.events);
        if n <= next || n >= registry.next_seq() {
            return out;
        }
        next = n;
    }
}

fn summary(events: &[Event]) -> Vec<(u64, EventKind, LeaseId)> {
    events.iter().map(|e| (e.seq, e.kind, e.lease)).collect()
}

/// Waits until `registry` kept an event of `kind` about `lease`.
async fn until_event(registry: &Registry, kind: EventKind, lease: LeaseId, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !all(registry)
            .iter()
            .any(|e| e.kind == kind && e.lease == lease)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no {kind} event for {lease}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_numbers_the_same_events_and_a_subscriber_moves_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let Some(member) = etcd(dir.path()) else {
        return;
    };
    let urls = vec![member.client_url()];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));

    // The writer, serving (the standby copies components from it) and advertised.
    let a = common::join(&urls, "e", "a").await.unwrap();
    let fence = a.lead().await.unwrap();
    let writer = {
        let (a, dir_a) = (a.clone(), dir_a.clone());
        tokio::task::spawn_blocking(move || {
            Writer::open(&a, &dir_a, fence, short_leases(&dir_a), wall_now())
        })
        .await
        .unwrap()
        .unwrap()
    };
    let w = writer.registry().clone();
    let server = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..courier_test_support::loopback()
    };
    let writer_handle = courier_registry::serve(w.clone(), server.clone())
        .await
        .unwrap();
    let advert = Advert {
        addr: writer_handle.local_addr(),
        pin: writer_handle.pin(),
    };
    {
        let a = a.clone();
        tokio::task::spawn_blocking(move || a.advertise(&advert))
            .await
            .unwrap()
            .unwrap();
    }
    let b = common::join(&urls, "e", "b").await.unwrap();
    let standby = open_standby(&b, &dir_b).await;
    let sb = standby.registry().clone();
    // Served, so that its flushes write the rows of the renewals it takes.
    let standby_handle = courier_registry::serve(sb.clone(), server).await.unwrap();

    let (v1, v2, v3) = (key(1), key(2), key(3));
    let first = register(&w, &v1, "acme/one", Duration::from_secs(30));
    let second = register(&w, &v2, "acme/two", Duration::from_secs(30));
    until_event(&sb, EventKind::Registered, second, "registered").await;
    // Renewed at the writer (its flush writes the row) and at the standby (its own row).
    w.renew(w.now(), &VendorKey::of(&v1), first, 30_000)
        .unwrap();
    until_event(&sb, EventKind::Renewed, first, "renewed at the writer").await;
    sb.renew_durably(sb.now(), &VendorKey::of(&v2), second, 30_000)
        .await
        .unwrap();
    until_event(&w, EventKind::Renewed, second, "renewed at the standby").await;
    // Registered again by its vendor: the first one is replaced, in the same transaction.
    let again = register(&w, &v1, "acme/one", Duration::from_secs(30));
    // Cancelled; and a short one left to run out (the writer expires it).
    w.cancel(w.now(), &VendorKey::of(&v2), second).unwrap();
    let short = register(&w, &v3, "acme/short", Duration::from_millis(300));
    until_event(&sb, EventKind::Expired, short, "expired").await;
    until_event(&w, EventKind::Expired, short, "expired").await;

    // One sequence: the same numbers, kinds and leases at both nodes.
    let (at_writer, at_standby) = (all(&w), all(&sb));
    assert_eq!(summary(&at_writer), summary(&at_standby));
    assert_eq!(
        at_writer
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        at_standby
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        "a removal's event names what was removed at both nodes"
    );
    let kinds: Vec<(EventKind, LeaseId)> = at_writer.iter().map(|e| (e.kind, e.lease)).collect();
    let expected = [
        (EventKind::Registered, first),
        (EventKind::Registered, second),
        (EventKind::Renewed, first),
        (EventKind::Renewed, second),
        (EventKind::Replaced, first),
        (EventKind::Registered, again),
        (EventKind::Cancelled, second),
        (EventKind::Registered, short),
        (EventKind::Expired, short),
    ];
    assert_eq!(kinds, expected, "the history, in order: {at_writer:#?}");
    assert!(
        at_writer.windows(2).all(|p| p[0].seq < p[1].seq),
        "strictly increasing"
    );

    // A subscriber that read up to the replacement at the standby goes on at the writer.
    let cut = at_standby
        .iter()
        .position(|e| e.kind == EventKind::Replaced)
        .unwrap();
    let (batch, _) = w.events_since(at_standby[cut].seq + 1, None);
    assert_eq!(batch.missed, None);
    assert_eq!(summary(&batch.events), summary(&at_standby[cut + 1..]));

    // A key revoked with 70 registrations: their deletions take two transactions, and
    // every one is a revocation at both nodes (each transaction notes why).
    let many = key(4);
    let leases: Vec<LeaseId> = (0..70)
        .map(|i| {
            register(
                &w,
                &many,
                &format!("acme/many-{i}"),
                Duration::from_secs(30),
            )
        })
        .collect();
    let statement = KeyStatement::revoke(VendorKey::of(&many), wall_now());
    w.key_statement(
        w.now(),
        &VendorKey::of(&many),
        SignedKeyStatement::sign(&statement, &many),
    )
    .unwrap();
    for lease in &leases {
        until_event(&sb, EventKind::Revoked, *lease, "revoked").await;
        until_event(&w, EventKind::Revoked, *lease, "revoked").await;
    }
    let (at_writer, at_standby) = (all(&w), all(&sb));
    assert_eq!(summary(&at_writer), summary(&at_standby));
    let revoked: Vec<&Event> = at_writer
        .iter()
        .filter(|e| e.kind == EventKind::Revoked)
        .collect();
    assert_eq!(revoked.len(), 70);
    let revisions: std::collections::BTreeSet<u64> = revoked.iter().map(|e| e.seq >> 16).collect();
    assert!(
        revisions.len() >= 2,
        "split over transactions: {revisions:?}"
    );

    // The writer goes; the standby is elected and takes its events over: a subscriber
    // that was reading them at this node goes on from the next number.
    let read_at_standby = all(&sb);
    let last = read_at_standby.last().unwrap().seq;
    writer_handle.shutdown().await;
    drop(writer);
    a.leave();
    standby_handle.shutdown().await;
    let fence = b.lead().await.unwrap();
    let promoted = {
        let (b, dir_b) = (b.clone(), dir_b.clone());
        tokio::task::spawn_blocking(move || {
            Writer::take_over(standby, &b, &dir_b, fence, short_leases(&dir_b), wall_now())
        })
        .await
        .unwrap()
        .unwrap()
    };
    let nw = promoted.registry().clone();
    let (batch, _) = nw.events_since(read_at_standby[0].seq, None);
    assert_eq!(
        batch.missed, None,
        "the standby's events went on at the writer"
    );
    assert_eq!(summary(&batch.events), summary(&read_at_standby));
    let after_takeover = register(&nw, &v3, "acme/after", Duration::from_secs(30));
    until_event(
        &nw,
        EventKind::Registered,
        after_takeover,
        "registered after takeover",
    )
    .await;
    let (batch, _) = nw.events_since(last + 1, None);
    assert_eq!(batch.missed, None);
    assert_eq!(
        batch
            .events
            .iter()
            .map(|e| (e.kind, e.lease))
            .collect::<Vec<_>>(),
        vec![(EventKind::Registered, after_takeover)],
        "numbered after everything before the takeover"
    );
    assert!(batch.events[0].seq > last);

    drop(promoted);
    b.leave();
}
