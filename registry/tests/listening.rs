//! Listening streams: a connection's listeners share one stream, each told of what concerns
//! its registration; a registration listened to elsewhere ends here; a listener stopped
//! leaves its registration alive; a stream too slow for its queue is marked behind and
//! reads the ring again, told of what the ring no longer has.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{Interest, Transition, VendorKey};
use courier_registry::{Heard, LISTENING_QUEUE, Registry};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn echo_interest() -> Interest {
    Interest {
        interface: Some("courier:echo/echo".into()),
        ttl_ms: 30_000,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_listeners_share_a_stream_and_each_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let acme_key = key(1);
    let acme = vendor(&h, &acme_key).await;
    let laptop = vendor(&h, &key(2)).await;
    let mut ids = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..20 {
        let grant = laptop.register_interest(echo_interest()).await.unwrap();
        let mut l = laptop.listen(grant.id, grant.next_seq).await.unwrap();
        let first = l.next().await.unwrap().unwrap();
        assert!(first.notifications.is_empty() && first.missed.is_none());
        ids.push(grant.id);
        listeners.push(l);
    }
    // The same key on another connection takes the first registration over.
    let desk = vendor(&h, &key(2)).await;
    let mut taken = desk.listen(ids[0], u64::MAX).await.unwrap();
    taken.next().await.unwrap().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), listeners[0].next())
        .await
        .unwrap();
    assert!(matches!(ended, Ok(None)), "{ended:?}");

    // One registration: every listener, on both connections, is told of it.
    let lease = acme
        .register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap()
        .lease;
    let mut seqs = Vec::new();
    for l in listeners.iter_mut().skip(1).chain([&mut taken]) {
        let batch = tokio::time::timeout(Duration::from_secs(5), l.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.notifications.len(), 1, "{batch:?}");
        let n = &batch.notifications[0];
        assert_eq!((n.transition, n.lease), (Transition::Appeared, lease));
        seqs.push(n.seq);
    }
    seqs.dedup();
    assert_eq!(seqs.len(), 1, "one transition, one number: {seqs:?}");

    // A listener let go leaves its registration alive; listening again from where it was
    // gets what it missed meanwhile.
    let appeared = seqs[0];
    drop(listeners.remove(1));
    acme.cancel(lease).await.unwrap();
    laptop.renew_interest(ids[1], 30_000).await.unwrap();
    let mut again = laptop.listen(ids[1], appeared + 1).await.unwrap();
    let batch = again.next().await.unwrap().unwrap();
    let seen: Vec<_> = batch
        .notifications
        .iter()
        .map(|n| (n.transition, n.lease))
        .collect();
    assert_eq!(seen, vec![(Transition::Gone, lease)]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_stream_behind_its_queue_is_told_of_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = courier_test_support::short_leases(dir.path());
    c.event_ring = 8;
    let registry = Registry::open(c).unwrap();
    let mut transitions = registry.transitions();
    let owner = VendorKey::of(&key(2));
    let grant = registry.register_interest(owner, &echo_interest()).unwrap();
    let mut feed = registry.open_listening();
    let (matcher, _) = registry.listen(owner, grant.id, feed.stream).unwrap();

    // More transitions than the queue holds, and the stream reads none of them.
    let acme_key = key(1);
    let acme = VendorKey::of(&acme_key);
    let mut leases = Vec::new();
    while leases.len() * 2 < LISTENING_QUEUE + 32 {
        let name = format!("acme/e{}", leases.len());
        let req = echo(&acme_key, &name, 30_000);
        leases.push(registry.register(registry.now(), &acme, req).unwrap().lease);
    }
    for lease in leases {
        registry.cancel(registry.now(), &acme, lease).unwrap();
    }
    while let Ok(rec) = transitions.try_recv() {
        registry.dispatch(&rec);
    }
    assert!(feed.behind.load(Ordering::Relaxed), "the stream is behind");
    let (mut queued, mut last) = (0, 0);
    while let Ok(heard) = feed.rx.try_recv() {
        let Heard::Told { ids, notification } = heard else {
            panic!("expected a notification");
        };
        assert_eq!(ids, vec![grant.id]);
        (queued, last) = (queued + 1, notification.seq);
    }
    assert_eq!(
        queued, LISTENING_QUEUE,
        "the queue held what it could, no more"
    );

    // Reading the ring again from after what it was told: the rest is gone, said so.
    let (batch, next) = registry.notifications_since(&matcher, last + 1, 1024);
    let (from, to) = batch.missed.expect("a gap");
    assert_eq!(from, last + 1);
    assert!(to > from && to <= next, "{from}..{to} then {next}");
    assert!(registry.listens(&grant.id, feed.stream));

    // Its registration cancelled, the stream is told that listening to it ended.
    let mut feed = {
        registry.close_listening(feed.stream);
        registry.open_listening()
    };
    let (_, generation) = registry.listen(owner, grant.id, feed.stream).unwrap();
    registry.cancel_interest(owner, grant.id).unwrap();
    match feed.rx.try_recv().unwrap() {
        Heard::Ended { id, generation: g } => {
            assert_eq!((id, g), (grant.id, generation));
        }
        other => panic!("expected an end, got {other:?}"),
    }
    assert!(!registry.listens(&grant.id, feed.stream));
}
