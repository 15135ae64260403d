//! Killing the cluster's writer under load, then checking what everyone saw. Three
//! `courier registry serve --etcd` nodes on a real three-member etcd cluster; 64 vendors
//! renew through lease keepers that know every node, each at the node it was given first
//! (a third at the writer); 8 more vendors register once and go
//! away; clients call the echo service through the registry (a real provider, real
//! proxies run in wasmtime); observers look the service up at every node ten times a
//! second. The writer is killed with -9 in the middle of it. Afterwards a checker goes over
//! the recorded history, in the spirit of etcd's robustness tests:
//!
//! - every acknowledged registration of a live vendor is served by every node, under the
//!   lease it was acknowledged with, before the kill and again once the keepers have
//!   reattached, and every keeper renews (at its own node, a standby, or at another node
//!   if it renewed at the writer) within two renewal intervals of the kill;
//! - every registration whose vendor went away is served until its lease ends and never
//!   after the restart rule allows (its end, or the takeover if that came later, plus one
//!   grace);
//! - every client's calls succeed before the kill and again after it (they move to another
//!   node by themselves);
//! - one event sequence: a subscriber at each node, moving on to another node from the next
//!   number when its node goes (or restarts as the writer), is never told it missed
//!   anything, never gets an event twice, sees the registration of every acknowledged
//!   lease, and any two subscribers agree on every number both saw and got the same events
//!   over the stretch both covered.
//!
//! Built with `--features cluster`; skips with one line when etcd is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cluster::{NodeProc, etcd_here, find_echo, keeper, start_node};
use common::wait_for;
use courier_client::{Answer, Client, ClientConfig, Policy, ReportMode, TrustStore};
use courier_protocol::{EventKind, LeaseId, SigningKey, SpkiPin, VendorKey};
use courier_provider::{Bundle, BundleBuilder, LeaseKeeper, LeaseState};

use courier_test_support::etcd_cluster::EtcdCluster;
use courier_transport::{Identity, RegistryClient};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Vendors whose keepers renew through the kill.
const VENDORS: usize = 64;
/// Vendors that register once and go away (half long before the kill, half just before).
const GONE: usize = 8;
/// Clients calling the echo service.
const CLIENTS: usize = 3;
/// The keepers' lease: renewed every half of it, which is longer than a takeover takes (the
/// writer's session, 2 s, and a little more).
const TTL: Duration = Duration::from_secs(6);
/// The lease of the vendors that go away.
const GONE_TTL: Duration = Duration::from_secs(3);
/// The nodes' grace after a takeover (`--grace`): as long as a lease, so that a vendor
/// whose last renewal the writer had not yet written to etcd when it died finds the new
/// writer in time (its next renewal, then a failed attempt at the dead node).
const GRACE: Duration = Duration::from_secs(6);
/// How long a change may take to reach every node, and an observation to be taken.
const SETTLE: Duration = Duration::from_millis(1_000);

/// An acknowledged registration: asked for at `asked`, acknowledged at `at` (its lease
/// starts in between).
#[derive(Debug, Clone, Copy)]
struct Ack {
    lease: LeaseId,
    asked: Instant,
    at: Instant,
    ttl: Duration,
}

/// One lookup at one node: sent at `sent`, answered at `got`.
#[derive(Debug)]
struct Seen {
    node: usize,
    sent: Instant,
    got: Instant,
    leases: HashSet<LeaseId>,
}

/// One call by one client.
#[derive(Debug)]
struct Called {
    client: usize,
    at: Instant,
    ok: bool,
}

/// One subscriber's record: every event it was sent and by which node, what it was told it
/// missed after its first batch, and how often it moved to another node.
#[derive(Debug, Default)]
struct Subscriber {
    events: Vec<(usize, u64, EventKind, LeaseId)>,
    missed: Vec<(usize, u64, u64)>,
    moves: usize,
}

/// Everything recorded during the run.
#[derive(Debug, Default)]
struct History {
    live: Vec<Ack>,
    gone: Vec<Ack>,
    seen: Vec<Seen>,
    calls: Vec<Called>,
    subscribers: Vec<Subscriber>,
}

/// When the faults happened.
#[derive(Debug)]
struct Timeline {
    killed: Instant,
    took_over: Instant,
    /// When every keeper had renewed after the kill.
    reattached: Instant,
    end: Instant,
    /// The node killed.
    dead: usize,
}

fn bundle(key: &SigningKey, name: &str, provider: (SocketAddr, SpkiPin)) -> Bundle {
    BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name(name)
        .version("0.1.0")
        .endpoint(provider.0.to_string())
        .provider_pin(provider.1)
        .sign(key)
        .unwrap()
}

fn vendor_key(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    SigningKey::from_bytes(&seed)
}

/// A vendor of `name` that registers once at `node` for `ttl` and never renews.
async fn register_once(node: &NodeProc, i: usize, provider: (SocketAddr, SpkiPin)) -> Ack {
    let key = vendor_key(i);
    let asked = Instant::now();
    let c = RegistryClient::connect(node.addr, node.pin, "gone-vendor")
        .await
        .unwrap();
    c.authenticate(&key).await.unwrap();
    let grant = bundle(&key, &format!("acme/gone-{i}"), provider)
        .register_once(&c, &key, GONE_TTL)
        .await
        .unwrap();
    c.close();
    Ack {
        lease: grant.lease,
        asked,
        at: Instant::now(),
        ttl: Duration::from_millis(grant.ttl_ms),
    }
}

/// Looks the service up at every node until `stop`.
fn observe(nodes: Vec<(SocketAddr, SpkiPin)>, history: Arc<Mutex<History>>, stop: Arc<AtomicBool>) {
    for (node, (addr, pin)) in nodes.into_iter().enumerate() {
        let (history, stop) = (history.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let found =
                    tokio::time::timeout(Duration::from_secs(1), find_echo(addr, pin)).await;
                if let Ok(Ok(found)) = found {
                    history.lock().unwrap().seen.push(Seen {
                        node,
                        sent,
                        got: Instant::now(),
                        leases: found.iter().map(|c| c.lease).collect(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// Subscribes to the cluster's events at node `start` until `stop`, from the first event
/// the node keeps; when its stream ends it subscribes again at the same node (a standby
/// elected writer serves again), and when its node is the one killed (`dead`), or cannot be
/// reached, at the next node, each time from the number after the last event it had.
fn subscribe(
    nodes: Vec<(SocketAddr, SpkiPin)>,
    start: usize,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
    dead: Arc<AtomicUsize>,
) {
    let me = {
        let mut h = history.lock().unwrap();
        h.subscribers.push(Subscriber::default());
        h.subscribers.len() - 1
    };
    tokio::spawn(async move {
        let (mut node, mut from, mut first) = (start, 1, true);
        let record =
            |f: &mut dyn FnMut(&mut Subscriber)| f(&mut history.lock().unwrap().subscribers[me]);
        while !stop.load(Ordering::Relaxed) {
            if dead.load(Ordering::Relaxed) == node {
                node = (node + 1) % nodes.len();
                record(&mut |s| s.moves += 1);
            }
            let (addr, pin) = nodes[node];
            let connected = tokio::time::timeout(
                Duration::from_secs(2),
                RegistryClient::connect(addr, pin, "watch"),
            )
            .await;
            let Ok(Ok(c)) = connected else {
                node = (node + 1) % nodes.len();
                record(&mut |s| s.moves += 1);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if let Ok(mut stream) = c.subscribe(None, from).await {
                loop {
                    match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                        Ok(Ok(Some(batch))) => record(&mut |s| {
                            if let (Some((a, b)), false) = (batch.missed, first) {
                                s.missed.push((node, a, b));
                            }
                            for e in &batch.events {
                                s.events.push((node, e.seq, e.kind, e.lease));
                                from = e.seq + 1;
                            }
                            first = false;
                        }),
                        Ok(_) => break,
                        Err(_) if stop.load(Ordering::Relaxed) => break,
                        Err(_) if dead.load(Ordering::Relaxed) == node => break,
                        Err(_) => {}
                    }
                }
            }
            c.close();
        }
    });
}

/// Calls the echo service from `CLIENTS` clients until `stop`, client `i` starting at node
/// `i % 3` and knowing the others.
async fn call(
    nodes: &[(SocketAddr, SpkiPin)],
    trusted: Vec<VendorKey>,
    history: Arc<Mutex<History>>,
    stop: Arc<AtomicBool>,
) {
    for i in 0..CLIENTS {
        let first = nodes[i % nodes.len()];
        let others = nodes.iter().copied().filter(|n| *n != first).collect();
        let mut config = ClientConfig::new(TrustStore::from_keys(trusted.clone()));
        config.policy = Policy::default();
        config.report = ReportMode::Off;
        config.lookup_ttl = Duration::from_millis(500);
        config.other_nodes = others;
        let registry = RegistryClient::connect(first.0, first.1, "caller")
            .await
            .unwrap();
        let client = Client::new(registry, config).unwrap();
        let (history, stop) = (history.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let called = tokio::time::timeout(
                    Duration::from_secs(5),
                    client.call_str(r#"courier:echo/echo.say("hi")"#),
                )
                .await;
                let ok = matches!(called, Ok(Ok(r)) if r.answer == Answer::Ok(r#"ok("echo: hi")"#.into()));
                history.lock().unwrap().calls.push(Called {
                    client: i,
                    at: Instant::now(),
                    ok,
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// What the history shows against the rules; empty when all hold.
fn check(h: &History, t: &Timeline) -> Vec<String> {
    let mut wrong = Vec::new();
    let live_nodes = |at: Instant, node: usize| node != t.dead || at < t.killed;
    // Live vendors' registrations: served everywhere before the kill and after the keepers
    // reattached.
    for ack in &h.live {
        for s in &h.seen {
            let due =
                (s.sent >= ack.at + SETTLE && s.got < t.killed) || s.sent >= t.reattached + SETTLE;
            if due && live_nodes(s.got, s.node) && !s.leases.contains(&ack.lease) {
                wrong.push(format!(
                    "node {} did not serve live lease {} {:?} after its acknowledgement ({}; it served {} leases)",
                    s.node,
                    ack.lease,
                    s.sent - ack.at,
                    since_kill(s.sent, t),
                    s.leases.len()
                ));
                let known: HashSet<LeaseId> =
                    h.live.iter().chain(&h.gone).map(|a| a.lease).collect();
                let extra: Vec<_> = s.leases.iter().filter(|l| !known.contains(l)).collect();
                wrong.push(format!("  and served {extra:?}"));
            }
        }
    }
    // Registrations whose vendors went: served until their end, gone by the rule.
    for ack in &h.gone {
        let (earliest_end, end) = (ack.asked + ack.ttl, ack.at + ack.ttl);
        let latest = end.max(t.took_over) + GRACE + SETTLE / 2;
        assert!(
            t.end > latest + SETTLE,
            "the run lasts past every gone lease"
        );
        for s in &h.seen {
            let present = s.leases.contains(&ack.lease);
            if present && s.sent > latest {
                wrong.push(format!(
                    "node {} served lease {} {:?} past its end, beyond the grace",
                    s.node,
                    ack.lease,
                    s.sent - end
                ));
            }
            let due = s.sent >= ack.at + SETTLE && s.got < earliest_end && s.got < t.killed;
            if due && !present {
                wrong.push(format!(
                    "node {} lost lease {} {:?} before its end",
                    s.node,
                    ack.lease,
                    earliest_end - s.got
                ));
            }
        }
    }
    check_events(h, &mut wrong);
    // Calls: every client succeeds before the kill and again after the takeover.
    for client in 0..CLIENTS {
        let mine = || h.calls.iter().filter(move |c| c.client == client);
        if !mine().any(|c| c.ok && c.at < t.killed) {
            wrong.push(format!("client {client} never called before the kill"));
        }
        if !mine().any(|c| c.ok && c.at > t.reattached) {
            wrong.push(format!("client {client} never called after the takeover"));
        }
    }
    wrong
}

/// One event sequence across the nodes, as the subscribers saw it.
fn check_events(h: &History, wrong: &mut Vec<String>) {
    let mut numbered: std::collections::HashMap<u64, (EventKind, LeaseId)> = Default::default();
    for (i, s) in h.subscribers.iter().enumerate() {
        for (node, from, to) in &s.missed {
            wrong.push(format!(
                "subscriber {i} missed events {from}..{to} at node {node}"
            ));
        }
        if let Some(p) = s.events.windows(2).find(|p| p[0].1 >= p[1].1) {
            wrong.push(format!("subscriber {i} got {:?} after {:?}", p[1], p[0]));
        }
        for (node, seq, kind, lease) in &s.events {
            match numbered.insert(*seq, (*kind, *lease)) {
                Some(other) if other != (*kind, *lease) => wrong.push(format!(
                    "event {seq} is {kind} {lease} at node {node} and {other:?} elsewhere"
                )),
                _ => {}
            }
        }
        let registered: HashSet<LeaseId> = s
            .events
            .iter()
            .filter(|e| e.2 == EventKind::Registered)
            .map(|e| e.3)
            .collect();
        for ack in &h.live {
            if !registered.contains(&ack.lease) {
                wrong.push(format!(
                    "subscriber {i} has no registration of {}",
                    ack.lease
                ));
            }
        }
    }
    for (i, a) in h.subscribers.iter().enumerate() {
        for (j, b) in h.subscribers.iter().enumerate().skip(i + 1) {
            let (Some(af), Some(al), Some(bf), Some(bl)) = (
                a.events.first(),
                a.events.last(),
                b.events.first(),
                b.events.last(),
            ) else {
                wrong.push(format!("subscriber {i} or {j} got no events"));
                continue;
            };
            let (lo, hi) = (af.1.max(bf.1), al.1.min(bl.1));
            let range = |s: &Subscriber| -> Vec<u64> {
                s.events
                    .iter()
                    .map(|e| e.1)
                    .filter(|q| (lo..=hi).contains(q))
                    .collect()
            };
            if range(a) != range(b) {
                wrong.push(format!(
                    "subscribers {i} and {j} got different events between {lo} and {hi}"
                ));
            }
        }
    }
    if !h.subscribers.iter().any(|s| s.moves > 0) {
        wrong.push("no subscriber moved to another node".into());
    }
}

/// When `at` was, relative to the kill.
fn since_kill(at: Instant, t: &Timeline) -> String {
    match at.checked_duration_since(t.killed) {
        Some(d) => format!("{d:?} after the kill"),
        None => format!("{:?} before the kill", t.killed - at),
    }
}

/// The index of the first of `nodes` (but `skip`) that prints a line with `needle`.
fn first_saying(nodes: &[&NodeProc], skip: usize, needle: &str, within: Duration) -> usize {
    let start = Instant::now();
    while start.elapsed() < within {
        for (i, n) in nodes.iter().enumerate() {
            if i == skip {
                continue;
            }
            while let Ok(line) = n.lines.try_recv() {
                if line.contains(needle) {
                    return i;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no node said {needle:?} within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_loses_no_acknowledged_lease_and_callers_move_on() {
    // `COURIER_TEST_NODE_LOG=info` shows what the keepers, the clients and the nodes log.
    if !etcd_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(&dir.path().join("etcd"), 3).unwrap();
    let urls = etcd.client_urls();
    let grace = format!("{}s", GRACE.as_secs());
    // Every vendor, client and observer of this test comes from 127.0.0.1.
    let extra = [
        "--grace",
        grace.as_str(),
        "--max-connections-per-peer",
        "256",
    ];
    // The writer's session is short, so that a standby takes over soon after the kill.
    let a = start_node("a", &dir.path().join("a"), &urls, "2s", &extra);
    tokio::task::block_in_place(|| wait_for(&a.lines, "(the writer)"));
    let b = start_node("b", &dir.path().join("b"), &urls, "2s", &extra);
    let c = start_node("c", &dir.path().join("c"), &urls, "2s", &extra);
    let nodes: Vec<(SocketAddr, SpkiPin)> = [&a, &b, &c].iter().map(|n| (n.addr, n.pin)).collect();

    let (identity, provider) = {
        let id = Identity::generate().unwrap();
        let served = courier_example_services::echo_service()
            .serve("127.0.0.1:0".parse().unwrap(), &id)
            .await
            .unwrap();
        (id, served)
    };
    let echo = (provider.local_addr(), identity.pin());
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    observe(nodes.clone(), history.clone(), stop.clone());
    let dead_node = Arc::new(AtomicUsize::new(usize::MAX));
    for start in 0..nodes.len() {
        subscribe(
            nodes.clone(),
            start,
            history.clone(),
            stop.clone(),
            dead_node.clone(),
        );
    }

    // Half the vendors that go away register now, and their leases run out before the
    // kill, at the writer.
    for i in 0..GONE / 2 {
        let ack = register_once(&a, VENDORS + i, echo).await;
        history.lock().unwrap().gone.push(ack);
    }
    let started = Instant::now();
    // Keeper `i` is given node `i % 3` first, and renews there: a third of them at the
    // writer that is killed, the others at the standbys.
    let keepers: Vec<LeaseKeeper> = (0..VENDORS)
        .map(|i| {
            let key = vendor_key(i);
            let home = nodes[i % nodes.len()];
            keeper(
                home,
                nodes.iter().copied().filter(|n| *n != home).collect(),
                key.clone(),
                bundle(&key, &format!("acme/echo-{i}"), echo),
                TTL,
            )
        })
        .collect();
    for k in &keepers {
        let lease = tokio::time::timeout(Duration::from_secs(30), k.wait_active())
            .await
            .expect("registered in time")
            .unwrap();
        let ttl = match &*k.state().borrow() {
            LeaseState::Active { ttl, .. } => *ttl,
            other => panic!("{other:?}"),
        };
        history.lock().unwrap().live.push(Ack {
            lease,
            asked: started,
            at: Instant::now(),
            ttl,
        });
    }
    let trusted = (0..VENDORS + GONE)
        .map(|i| VendorKey::of(&vendor_key(i)))
        .collect();
    call(&nodes, trusted, history.clone(), stop.clone()).await;
    tokio::time::sleep(GONE_TTL).await;

    // The other half register just before the kill: their leases end during the takeover.
    for i in GONE / 2..GONE {
        let ack = register_once(&a, VENDORS + i, echo).await;
        history.lock().unwrap().gone.push(ack);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let renewed_before: Vec<u64> = keepers
        .iter()
        .map(|k| k.state().borrow().renewals())
        .collect();
    let killed = Instant::now();
    let dead = 0;
    drop(a);
    dead_node.store(dead, Ordering::Relaxed);
    let writer = tokio::task::block_in_place(|| {
        first_saying(
            &[&b, &c],
            usize::MAX,
            "(the writer)",
            Duration::from_secs(20),
        )
    }) + 1;
    let took_over = Instant::now();
    // Every keeper renews the lease it had: at its standby, or, if it renewed at the
    // killed writer, at another node.
    let mut last = killed;
    for (k, before) in keepers.iter().zip(&renewed_before) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while k.state().borrow().renewals() <= *before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("every keeper renews after the kill");
        last = last.max(Instant::now());
    }
    let reattached = last;
    let after = reattached - killed;
    let renew_every = TTL / 2;
    eprintln!(
        "node {writer} took over {:?} after the kill; every keeper had renewed {after:?} after it",
        took_over - killed
    );
    assert!(
        after <= 2 * renew_every,
        "every keeper reattaches within two renewal intervals of the kill: {after:?}"
    );
    // Long enough for every gone lease to end by the rule, and the callers to move on.
    tokio::time::sleep(GONE_TTL.max(GRACE) + 2 * SETTLE).await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (k, ack) in keepers.iter().zip(history.lock().unwrap().live.iter()) {
        let state = k.state().borrow().clone();
        assert!(
            matches!(state, LeaseState::Active { lease, .. } if lease == ack.lease),
            "every live vendor keeps the lease it was acknowledged with: {state:?}"
        );
    }
    let t = Timeline {
        killed,
        took_over,
        reattached,
        end: Instant::now(),
        dead,
    };
    let wrong = {
        let h = history.lock().unwrap();
        let failed = h.calls.iter().filter(|c| !c.ok).count();
        eprintln!(
            "{} lookups and {} calls recorded ({failed} failed, around the kill)",
            h.seen.len(),
            h.calls.len()
        );
        for (i, s) in h.subscribers.iter().enumerate() {
            eprintln!(
                "subscriber {i}: {} events, moved {} times",
                s.events.len(),
                s.moves
            );
        }
        check(&h, &t)
    };
    assert!(
        wrong.is_empty(),
        "{} violations:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // Each cancel may first try the dead node: all at once, not one after another.
    let mut stopping = tokio::task::JoinSet::new();
    for k in keepers {
        stopping.spawn(k.shutdown());
    }
    while stopping.join_next().await.is_some() {}
    provider.shutdown().await;
    drop((b, c, etcd));
}
