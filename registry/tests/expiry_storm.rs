//! An expiry storm on a served registry: leases due in the same millisecond, more than
//! one slice of them ([`EXPIRY_SLICE`]), leave through the real expiry task; each gets its
//! `Expired` event, in deadline order, a lease that stays live keeps answering lookups,
//! and a restart after the write-behind finds only it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{EventKind, LeaseId, ServiceQuery, SignedManifest};
use courier_registry::{EXPIRY_SLICE, Registry};
use std::time::Duration;

/// Leases due at once: two full slices and part of a third.
const STORM: usize = 2 * EXPIRY_SLICE + 500;

fn echo_query() -> ServiceQuery {
    ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_leaves_in_slices_with_every_event_in_deadline_order() {
    let dir = tempfile::tempdir().unwrap();
    let setup = config(dir.path());
    let h = start(setup.clone()).await;
    let reg = h.registry().clone();
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let live = v.register(echo(&acme, "acme/live", 60_000)).await.unwrap();
    let from_seq = reg.next_seq();

    // The storm: loaded in-process in one commit, all due at the same millisecond.
    let items: Vec<_> = (0..STORM)
        .map(|i| {
            let m = echo_manifest(&acme, &format!("acme/storm{i}"));
            (SignedManifest::sign(&m, &acme), 1_000)
        })
        .collect();
    let loader = reg.clone();
    let mut storm: Vec<LeaseId> =
        tokio::task::spawn_blocking(move || loader.load_bulk(loader.now(), items))
            .await
            .unwrap()
            .unwrap();

    // All go, and the live one still answers lookups.
    assert!(eventually(async || reg.counts().0 == 1).await);
    let c = client(&h).await;
    let found: Vec<_> = c
        .find(echo_query())
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.lease)
        .collect();
    assert_eq!(found, vec![live.lease]);

    // Their events, from the ring: each registered, then each expired once, in the order
    // of the deadline index (one deadline: by lease id), numbered without a gap.
    let mut sub = c.subscribe(None, from_seq).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 2 * STORM {
        let batch = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.missed, None);
        events.extend(batch.events);
    }
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    let (registered, expired) = events.split_at(STORM);
    assert!(registered.iter().all(|e| e.kind == EventKind::Registered));
    assert!(expired.iter().all(|e| e.kind == EventKind::Expired));
    storm.sort();
    let order: Vec<_> = expired.iter().map(|e| e.lease).collect();
    assert_eq!(order, storm);
    drop(reg);
    h.shutdown().await;

    // The write-behind deleted them: a restart brings back the live lease alone.
    let r = Registry::open(setup.registry).unwrap();
    assert_eq!(r.counts(), (1, 1, 1));
    let found: Vec<_> = r
        .find(r.now(), &echo_query())
        .unwrap()
        .into_iter()
        .map(|x| x.lease)
        .collect();
    assert_eq!(found, vec![live.lease]);
}
