//! Cluster mode as a user runs it: `courier registry serve --etcd` processes on a real
//! three-member etcd cluster. The writer is killed with -9 while vendors renew: the standby
//! takes over within the session's time, every acknowledged registration is there under
//! its lease, and every vendor's keeper renews it at the new writer. Before that, a lease
//! renewed at the standby alone outlives its duration at the writer. An operator's event
//! watch at the standby goes on at the writer it becomes, without a gap. Then one etcd member
//! stops (service goes on), and a majority stops: writes are refused with a clear error
//! while lookups go on from memory, and resume when etcd is back.
//!
//! Built with `--features cluster` (`cargo test --features cluster --test cluster_nodes`);
//! skips with one line when etcd is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{NodeProc, find_echo, keeper, start_node};
use common::{courier, lines_of, run_ok, wait_for};
use courier_protocol::{ErrorKind, SigningKey, SpkiPin};
use courier_provider::{Bundle, BundleBuilder, LeaseKeeper, LeaseState};
use courier_test_support::etcd::{SKIP_LINE, etcd_binary, revoke_lease_of};
use courier_test_support::etcd_cluster::EtcdCluster;
use courier_transport::{ClientError, RegistryClient};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Vendors renewing while the writer is killed.
const VENDORS: usize = 16;

fn bundle(key: &SigningKey, i: usize) -> Bundle {
    BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name(format!("acme/echo-{i}"))
        .version("0.1.0")
        .endpoint("127.0.0.1:7901")
        .provider_pin(SpkiPin([7; 32]))
        .sign(key)
        .unwrap()
}

/// A registration of a new vendor at `node`: its answer.
async fn register_new(node: &NodeProc, seed: u8) -> Result<(), ClientError> {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let c = RegistryClient::connect(node.addr, node.pin, "test").await?;
    c.authenticate(&key).await?;
    let r = c
        .register(bundle(&key, 1000 + seed as usize).register_request(Duration::from_secs(30)))
        .await
        .map(drop);
    c.close();
    r
}

/// `courier leases --watch --json` from the first event `node` keeps, with `other` as the
/// cluster's other node: its stdout lines.
fn watch_events(node: &NodeProc, other: &NodeProc, pins: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = courier()
        .args(["leases", "--watch", "--json", "--from", "1"])
        .args(["--registry", &node.addr.to_string()])
        .args(["--registry-pin", &node.pin.to_string()])
        .args(["--other-node", &format!("{}={}", other.addr, other.pin)])
        .arg("--registry-pins")
        .arg(pins)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    (child, lines)
}

/// Reads the watch's lines until an event about `name` of `kind`; then checks that, but
/// for the first line (what the node did not keep), nothing was missed, no event came
/// twice, and every event `node` keeps between the first (or the first it keeps) and the
/// last printed came.
async fn check_watch(lines: &mpsc::Receiver<String>, node: &NodeProc, kind: &str, name: &str) {
    let mut seqs = Vec::new();
    let mut read = Vec::new();
    let started = Instant::now();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30).saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| {
                let tail = &read[read.len().saturating_sub(10)..];
                panic!(
                    "no {kind} event for {name} after {} events: {tail:#?}",
                    seqs.len()
                )
            });
        read.push(line.clone());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v.get("missed").is_some() {
            assert!(
                seqs.is_empty(),
                "missed events after the first line: {line}"
            );
            continue;
        }
        seqs.push(v["seq"].as_u64().unwrap());
        if v["kind"] == kind && v["name"] == name {
            break;
        }
    }
    assert!(
        seqs.windows(2).all(|p| p[0] < p[1]),
        "strictly increasing, none twice"
    );
    let c = RegistryClient::connect(node.addr, node.pin, "test")
        .await
        .unwrap();
    let (first, last) = (seqs[0], *seqs.last().unwrap());
    let mut stream = c.subscribe(None, first).await.unwrap();
    let (mut kept, mut from) = (Vec::new(), first);
    while kept.last().is_none_or(|s| *s < last) {
        let batch = stream.next().await.unwrap().unwrap();
        if let Some((_, kept_from)) = batch.missed {
            assert!(kept.is_empty(), "{:?}", batch.missed);
            from = kept_from;
        }
        kept.extend(batch.events.iter().map(|e| e.seq).filter(|s| *s <= last));
    }
    seqs.retain(|s| *s >= from);
    assert_eq!(seqs, kept, "every event the node keeps, in order");
    c.close();
    eprintln!(
        "the watch moved nodes and printed {} events without a gap",
        seqs.len()
    );
}

/// Renewals are taken by the node a vendor is connected to: a lease renewed only at the
/// standby `b` outlives its duration at the writer `a` (which alone expires), whose
/// deadline moves on to the rows the standby writes behind. The lease is cancelled at the
/// end.
async fn renewed_at_the_standby_only_lives_on_at_the_writer(a: &NodeProc, b: &NodeProc) {
    const TTL: Duration = Duration::from_secs(2);
    let key = SigningKey::from_bytes(&[77; 32]);
    let at_a = RegistryClient::connect(a.addr, a.pin, "test")
        .await
        .unwrap();
    at_a.authenticate(&key).await.unwrap();
    let lease = at_a
        .register(bundle(&key, 77).register_request(TTL))
        .await
        .unwrap()
        .lease;
    let at_b = RegistryClient::connect(b.addr, b.pin, "test")
        .await
        .unwrap();
    at_b.authenticate(&key).await.unwrap();
    let ttl_ms = TTL.as_millis() as u64;
    // The standby knows the lease once it has followed the registration.
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match at_b.renew(lease, ttl_ms).await {
                Ok(grant) => return grant,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the standby renews a lease the writer granted");
    assert_eq!(first.lease, lease);
    let until = Instant::now() + 3 * TTL;
    let mut renewed = 1;
    while Instant::now() < until {
        tokio::time::sleep(TTL / 3).await;
        at_b.renew(lease, ttl_ms)
            .await
            .expect("the standby renews the lease again");
        renewed += 1;
    }
    let filter = courier_protocol::LeaseFilter {
        name_prefix: Some("acme/echo-77".into()),
        ..Default::default()
    };
    let page = at_a.lease_table(&filter).await.unwrap();
    let row = page
        .leases
        .iter()
        .find(|r| r.lease == lease)
        .expect("the writer keeps a lease renewed at the standby past its duration");
    assert!(
        row.renewals + 2 >= renewed && row.remaining_ms > 0,
        "the writer's row follows the standby's renewals ({renewed}): {row:?}"
    );
    assert_eq!(
        row.holder.as_deref(),
        Some("b"),
        "the lease page names the node holding the lease"
    );
    let out = run_ok(
        courier()
            .env("COURIER_REGISTRY", a.addr.to_string())
            .env("COURIER_REGISTRY_PIN", a.pin.to_string())
            .args(["leases", "--json"]),
    );
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let listed = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["lease"] == lease.to_string().as_str())
        .unwrap();
    assert_eq!(
        listed["node"], "b",
        "`courier leases` names it too: {listed}"
    );
    at_a.cancel(lease).await.unwrap();
    at_a.close();
    at_b.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_writer_or_etcd_members_loses_nothing_acknowledged() {
    if etcd_binary().is_none() {
        eprintln!("{SKIP_LINE}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).unwrap();
    let urls = etcd.client_urls();
    // The writer's session is short, so that the standby takes over soon after the kill.
    // The standby's is longer than the majority loss below: etcd ends a session whose
    // keep-alives stopped for longer than its TTL once its quorum is back (the revocation
    // its leader proposed meanwhile commits then), and a node whose session ended must
    // step down.
    let a = start_node("a", &dir.path().join("a"), &urls, "2s", &[]);
    wait_for(&a.lines, "(the writer)");
    let b = start_node("b", &dir.path().join("b"), &urls, "20s", &[]);
    wait_for(&b.lines, "standby: a writes");
    // An operator watches the cluster's events at the standby; it goes on at the writer
    // this node becomes.
    let (mut watch, watched) = watch_events(&b, &a, &dir.path().join("pins-b"));
    // And another at the writer, which is killed: it notices by itself, and goes on at
    // the standby.
    let (mut watch_a, watched_a) = watch_events(&a, &b, &dir.path().join("pins-a"));

    // Vendors register at the writer, each knowing both nodes: half are given the
    // standby first, and renew there.
    let keepers: Vec<LeaseKeeper> = (0..VENDORS)
        .map(|i| {
            let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
            let (home, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            keeper(
                (home.addr, home.pin),
                vec![(other.addr, other.pin)],
                key.clone(),
                bundle(&key, i),
                Duration::from_secs(2),
            )
        })
        .collect();
    let mut acknowledged = Vec::new();
    for k in &keepers {
        let lease = tokio::time::timeout(Duration::from_secs(20), k.wait_active())
            .await
            .expect("registered in time")
            .unwrap();
        acknowledged.push(lease);
    }
    assert_eq!(find_echo(a.addr, a.pin).await.unwrap().len(), VENDORS);
    // The standby answers lookups for what the writer acknowledged, from its own memory,
    // and refuses writes, which go to the writer.
    let seen = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), async {
        while find_echo(b.addr, b.pin).await.map_or(0, |f| f.len()) < VENDORS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the standby answers lookups for every acknowledged registration");
    eprintln!(
        "the standby found all {VENDORS} registrations {:?} after the writer",
        seen.elapsed()
    );
    let refused = register_new(&b, 99).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Registry(w) if w.kind == ErrorKind::Unavailable),
        "a standby refuses writes: {refused}"
    );
    renewed_at_the_standby_only_lives_on_at_the_writer(&a, &b).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while find_echo(b.addr, b.pin).await.map_or(0, |f| f.len()) != VENDORS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the standby sees the cancel");

    // kill -9 of the writer while the vendors renew.
    let killed = Instant::now();
    drop(a);
    wait_for(&b.lines, "(the writer)");
    let took_over = killed.elapsed();
    let found = find_echo(b.addr, b.pin).await.unwrap();
    let mut leases: Vec<_> = found.iter().map(|c| c.lease).collect();
    leases.sort();
    acknowledged.sort();
    assert_eq!(
        leases, acknowledged,
        "every acknowledged registration, under its lease"
    );
    // Every keeper renews its lease at the new writer within two renewal intervals.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (k, lease) in keepers.iter().zip(&acknowledged) {
        let state = k.state().borrow().clone();
        assert!(
            matches!(state, LeaseState::Active { lease: l, renewals, .. } if acknowledged.contains(&l) && renewals > 0),
            "keeper of {lease}: {state:?}"
        );
    }
    eprintln!("the standby served {VENDORS} registrations {took_over:?} after the kill");

    // One etcd member stops: writes go on.
    etcd.stop(0).unwrap();
    register_new(&b, 101)
        .await
        .expect("a write with one etcd member down");
    check_watch(&watched, &b, "registered", "acme/echo-1101").await;
    check_watch(&watched_a, &b, "registered", "acme/echo-1101").await;
    for w in [&mut watch, &mut watch_a] {
        let _ = w.kill();
        let _ = w.wait();
    }
    etcd.start_member(0).unwrap();

    // A majority stops: writes are refused, lookups go on from memory.
    etcd.stop(1).unwrap();
    etcd.stop(2).unwrap();
    let refused = register_new(&b, 102).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Registry(w) if w.kind == ErrorKind::Unavailable),
        "{refused}"
    );
    assert_eq!(find_echo(b.addr, b.pin).await.unwrap().len(), VENDORS + 1);
    let c = RegistryClient::connect(b.addr, b.pin, "test")
        .await
        .unwrap();
    let table = c.lease_table(&Default::default()).await.unwrap();
    let (leases, unwritable) = (table.leases, table.store_unwritable_ms);
    assert_eq!(leases.len(), VENDORS + 1, "leases served from memory");
    assert!(unwritable.is_some(), "and marked stale");
    etcd.start_member(1).unwrap();
    etcd.start_member(2).unwrap();
    let back = Instant::now();
    loop {
        match register_new(&b, 103).await {
            Ok(()) => break,
            Err(e) if back.elapsed() < Duration::from_secs(30) => {
                tracing::debug!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("writes did not resume after etcd came back: {e}"),
        }
    }
    assert_eq!(find_echo(b.addr, b.pin).await.unwrap().len(), VENDORS + 2);
    let unwritable = c
        .lease_table(&Default::default())
        .await
        .unwrap()
        .store_unwritable_ms;
    assert_eq!(unwritable, None, "no longer stale");
    c.close();

    // A cancel sent right after etcd's return may outlast the keepers' 800 ms deadline;
    // such a lease just runs out, which is not what this test is about.
    for k in keepers {
        let _ = k.shutdown().await;
    }

    // A standby whose etcd session ends (as a partition longer than its TTL ends it) stops
    // serving, joins again by itself, and follows the writer again.
    let c = start_node("c", &dir.path().join("c"), &urls, "5s", &[]);
    wait_for(&c.lines, "standby: b writes");
    let url = etcd.client_urls()[0].clone();
    tokio::task::spawn_blocking(move || {
        revoke_lease_of(&url, "/courier/t/nodes/c", Duration::from_secs(5))
    })
    .await
    .unwrap()
    .expect("end node c's session");
    wait_for(&c.lines, "standby: b writes");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let at_writer = find_echo(b.addr, b.pin).await.map(|f| f.len());
            let here = find_echo(c.addr, c.pin).await.map(|f| f.len());
            if matches!((at_writer, here), (Ok(w), Ok(h)) if w == h && w > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the standby that joined again answers for every registration");

    // `courier cluster status` shows the writer, and the standby's lag behind etcd once
    // it has said how far it is (every 5 s).
    let said = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let out = run_ok(
                courier()
                    .args(["cluster", "status", "--json", "--cluster", "t", "--etcd"])
                    .arg(urls.join(",")),
            );
            let st: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(st["writer"], "b", "{st}");
            let c = st["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == "c")
                .cloned();
            if let Some(lag) = c.and_then(|c| c["lag_revisions"].as_i64()) {
                return lag;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the standby says how far it has applied");
    assert!(
        said < 50,
        "a standby that keeps up is a few revisions behind at most: {said}"
    );
}
