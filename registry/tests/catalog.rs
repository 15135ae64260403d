//! The catalog as a mirror copies it, over loopback: pages of signed manifests with their
//! lease state in the lease table's order, read to the end with nothing listed twice, and
//! an event number from which the feed has every change made after the first page (list,
//! then follow).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{EventKind, LeaseCursor, LeaseId, VendorKey};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_copies_the_catalog_in_pages_then_follows_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let acme_key = key(1);
    let acme = vendor(&h, &acme_key).await;
    let mut registered = BTreeSet::new();
    for i in 0..5 {
        let grant = acme
            .register(echo(&acme_key, &format!("acme/echo-{i}"), 30_000))
            .await
            .unwrap();
        registered.insert(grant.lease);
    }
    let kv_lease = acme
        .register(kv(&acme_key, "acme/kv", 30_000))
        .await
        .unwrap()
        .lease;
    registered.insert(kv_lease);

    // Anyone may copy it (what is on offer is public; each manifest is signed).
    let mirror = client(&h).await;
    let first = mirror.catalog_page(None, 4).await.unwrap();
    assert_eq!(first.entries.len(), 4);
    let anchor = first.seq;
    let mut copied: Vec<LeaseId> = Vec::new();
    let mut page = first;
    loop {
        for e in &page.entries {
            let m = e.manifest.verify().unwrap();
            assert_eq!(m.vendor_key, VendorKey::of(&acme_key));
            assert_eq!(m.name, e.lease.name);
            assert_eq!(m.component_hash, e.lease.component);
            assert!(e.lease.remaining_ms > 0 && e.lease.remaining_ms <= 30_000);
            copied.push(e.lease.lease);
        }
        let Some(next) = page.next.clone() else { break };
        page = mirror.catalog_page(Some(next), 4).await.unwrap();
    }
    assert_eq!(copied.len(), 6, "every registration once");
    assert_eq!(copied.iter().copied().collect::<BTreeSet<_>>(), registered);

    // A change after the first page is in the feed from its anchor; one before is not.
    acme.cancel(kv_lease).await.unwrap();
    let added = acme
        .register(echo(&acme_key, "acme/later", 30_000))
        .await
        .unwrap()
        .lease;
    // The registration an event names, read on its own; a gone one is `None`.
    let entry = mirror.registration(added).await.unwrap().unwrap();
    assert_eq!(entry.lease.name, "acme/later");
    assert_eq!(entry.manifest.verify().unwrap().name, "acme/later");
    assert_eq!(mirror.registration(kv_lease).await.unwrap(), None);
    let mut feed = mirror.subscribe(None, anchor).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = feed.next().await.unwrap().unwrap();
        assert_eq!(batch.missed, None);
        seen.extend(
            batch
                .events
                .iter()
                .filter(|e| e.kind != EventKind::Renewed)
                .map(|e| (e.kind, e.lease)),
        );
    }
    assert_eq!(
        seen,
        vec![
            (EventKind::Cancelled, kv_lease),
            (EventKind::Registered, added)
        ]
    );

    // A page asked past the end, or from a lease that is gone, goes on in order.
    let after_all = LeaseCursor {
        name: "zzz".into(),
        lease: LeaseId([0xff; 16]),
    };
    let empty = mirror.catalog_page(Some(after_all), 4).await.unwrap();
    assert!(empty.entries.is_empty() && empty.next.is_none());
    let from_gone = LeaseCursor {
        name: "acme/kv".into(),
        lease: kv_lease,
    };
    let rest = mirror.catalog_page(Some(from_gone), 100).await.unwrap();
    let names: Vec<&str> = rest.entries.iter().map(|e| e.lease.name.as_str()).collect();
    assert_eq!(names, vec!["acme/later"]);
    mirror.close();
    acme.close();
    h.shutdown().await;
}
