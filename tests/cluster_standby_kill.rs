//! Killing a standby with -9 while a third of the vendors renew there. Three `courier
//! registry serve --etcd` nodes on one etcd member; 30 vendors' lease keepers each renew at
//! the node given first (a third at each). The standby `c` is killed: every one of its
//! vendors renews at another node within two renewal intervals, under the lease it had;
//! after longer than a lease, the writer still serves every registration (so no renewal
//! the dead node had taken and written was lost to the writer's expiry), and its lease
//! page names a live node as the holder of each.
//!
//! Built with `--features cluster`; skips with one line when etcd is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{etcd_here, find_echo, keeper, start_node};
use common::wait_for;
use courier_protocol::{LeaseFilter, SigningKey, SpkiPin};
use courier_provider::{BundleBuilder, LeaseKeeper, LeaseState};
use courier_test_support::etcd::EtcdMember;
use courier_transport::RegistryClient;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Vendors renewing, a third at each node.
const VENDORS: usize = 30;
/// Their lease, renewed every half of it.
const TTL: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_standby_loses_no_lease_and_its_vendors_move_on() {
    // `COURIER_TEST_NODE_LOG=info` shows what the keepers and the nodes log.
    if !etcd_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdMember::start(&dir.path().join("etcd")).unwrap();
    let urls = vec![etcd.client_url()];
    let a = start_node("a", &dir.path().join("a"), &urls, "2s", &[]);
    tokio::task::block_in_place(|| wait_for(&a.lines, "(the writer)"));
    let b = start_node("b", &dir.path().join("b"), &urls, "2s", &[]);
    let c = start_node("c", &dir.path().join("c"), &urls, "2s", &[]);
    tokio::task::block_in_place(|| {
        wait_for(&b.lines, "standby: a writes");
        wait_for(&c.lines, "standby: a writes");
    });
    let nodes = [(a.addr, a.pin), (b.addr, b.pin), (c.addr, c.pin)];

    let keepers: Vec<LeaseKeeper> = (0..VENDORS)
        .map(|i| {
            let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
            let home = nodes[i % 3];
            let bundle = BundleBuilder::new(courier_proxy_artifacts::ECHO)
                .name(format!("acme/echo-{i}"))
                .version("0.1.0")
                .endpoint("127.0.0.1:7901")
                .provider_pin(SpkiPin([7; 32]))
                .sign(&key)
                .unwrap();
            keeper(
                home,
                nodes.iter().copied().filter(|n| *n != home).collect(),
                key,
                bundle,
                TTL,
            )
        })
        .collect();
    let mut leases = Vec::new();
    for k in &keepers {
        let lease = tokio::time::timeout(Duration::from_secs(20), k.wait_active())
            .await
            .expect("registered in time")
            .unwrap();
        leases.push(lease);
    }
    // A couple of renewals each, at the nodes given first.
    tokio::time::sleep(TTL).await;
    let at_c: Vec<(usize, u64)> = (0..VENDORS)
        .filter(|i| i % 3 == 2)
        .map(|i| (i, keepers[i].state().borrow().renewals()))
        .collect();
    assert!(at_c.iter().all(|(_, n)| *n > 0), "renewing at c: {at_c:?}");

    let killed = Instant::now();
    drop(c);
    let mut waiting = at_c;
    tokio::time::timeout(2 * TTL, async {
        while !waiting.is_empty() {
            waiting.retain(|(i, before)| keepers[*i].state().borrow().renewals() <= *before);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("c's vendors renew elsewhere");
    let moved = killed.elapsed();
    eprintln!("every vendor of the killed standby renewed elsewhere {moved:?} after the kill");
    assert!(
        moved <= TTL,
        "within two renewal intervals of the kill: {moved:?}"
    );

    // Longer than a lease: a lease whose renewals did not reach the writer would be gone.
    tokio::time::sleep(TTL + TTL / 2).await;
    for (i, (k, lease)) in keepers.iter().zip(&leases).enumerate() {
        let state = k.state().borrow().clone();
        assert!(
            matches!(state, LeaseState::Active { lease: l, .. } if l == *lease),
            "vendor {i} keeps the lease it was acknowledged with: {state:?}"
        );
    }
    let served: HashSet<_> = find_echo(a.addr, a.pin)
        .await
        .unwrap()
        .iter()
        .map(|f| f.lease)
        .collect();
    assert_eq!(
        served,
        leases.iter().copied().collect(),
        "the writer serves every registration"
    );
    let at_a = RegistryClient::connect(a.addr, a.pin, "test")
        .await
        .unwrap();
    let page = at_a.lease_table(&LeaseFilter::default()).await.unwrap();
    at_a.close();
    for row in &page.leases {
        assert_ne!(
            row.holder.as_deref(),
            Some("c"),
            "no lease is held by the dead node: {row:?}"
        );
    }
    // Each cancel may first try the dead node: all at once, not one after another.
    let mut stopping = tokio::task::JoinSet::new();
    for k in keepers {
        stopping.spawn(k.shutdown());
    }
    while stopping.join_next().await.is_some() {}
    drop((a, b, etcd));
}
