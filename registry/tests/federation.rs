//! A hierarchy of three registries on loopback (root, child, grandchild), each a real
//! registry with its own store, QUIC server and key: a child is refused until the parent's
//! operator allows it; what flows down is what each child's rules let in (automatically,
//! or once an operator approved the version); manifests and lease state come first and a
//! component crosses each link once, when a client first asks; renewals and revocations at
//! the root reach the grandchild; reports go up; a link stopped and started again, and a
//! child restarted on its store, resume from the anchor without copying the catalog again.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{
    AdminAction, ApprovalState, EventKind, LeaseId, MirrorRule, ServiceQuery, SigningKey, VendorKey,
};
use courier_registry::{ParentConfig, ParentLink, RegistryHandle, follow_parent};
use std::time::Duration;

const OPERATOR: u8 = 9;

fn setup(dir: &std::path::Path) -> Setup {
    let mut s = config(dir);
    s.registry.operators = vec![VendorKey::of(&key(OPERATOR))];
    s
}

/// A registry whose own key is `own`.
async fn registry(dir: &std::path::Path, own: &SigningKey) -> RegistryHandle {
    let h = start(setup(dir)).await;
    h.registry()
        .place_in_hierarchy(VendorKey::of(own), Vec::new());
    h
}

/// `child` (its own key `own`) follows `parent`.
fn link(child: &RegistryHandle, own: &SigningKey, parent: &RegistryHandle) -> ParentLink {
    follow_parent(
        child.registry().clone(),
        ParentConfig {
            addr: parent.local_addr(),
            pin: parent.pin(),
            key: own.clone(),
            report_every: Duration::from_millis(200),
            refresh_every: Duration::from_millis(300),
            prefetch: false,
            fetch_deadline: courier_registry::DEFAULT_FETCH_DEADLINE,
        },
    )
}

async fn admin(h: &RegistryHandle, action: AdminAction) {
    vendor(h, &key(OPERATOR)).await.admin(action).await.unwrap();
}

/// `parent`'s operator allows the child registry whose key is `child` as `name`.
async fn allow(parent: &RegistryHandle, child: &SigningKey, name: &str) {
    let key = VendorKey::of(child);
    let name = name.into();
    admin(parent, AdminAction::AllowChild { key, name }).await;
}

fn rule(name: &str, approval: bool) -> AdminAction {
    AdminAction::AddMirrorRule(MirrorRule {
        id: 0,
        name: name.into(),
        vendor: None,
        interface: None,
        version: None,
        approval,
    })
}

/// Every event `h` numbered so far, from its first, as (kind, lease).
async fn all_events(h: &RegistryHandle) -> Vec<(EventKind, LeaseId)> {
    let client = client(h).await;
    let mut feed = client.subscribe(None, 0).await.unwrap();
    let end = h.registry().next_seq();
    let mut out = Vec::new();
    let mut last = 0;
    while last + 1 < end {
        let batch = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.missed, None, "the test's feed holds every event");
        for e in batch.events {
            last = e.seq;
            out.push((e.kind, e.lease));
        }
    }
    out
}

/// The names of the services a registry matches for `interface`.
async fn names(h: &RegistryHandle, interface: &str) -> Vec<String> {
    let found = client(h)
        .await
        .find(ServiceQuery {
            interface: interface.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut names: Vec<String> = found
        .iter()
        .map(|c| c.manifest.verify().unwrap().into_inner().name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_published_at_the_root_reaches_a_grandchild_by_its_rules() {
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let (root_key, child_key, grand_key) = (key(30), key(31), key(32));
    let root = registry(dirs[0].path(), &root_key).await;
    let child = registry(dirs[1].path(), &child_key).await;
    let grand = registry(dirs[2].path(), &grand_key).await;
    let acme_key = key(1);
    let acme = vendor(&root, &acme_key).await;
    let echo_lease = acme
        .register(echo(&acme_key, "acme/echo", 2_000))
        .await
        .unwrap()
        .lease;
    acme.register(kv(&acme_key, "acme/kv", 30_000))
        .await
        .unwrap();
    let other_key = key(2);
    vendor(&root, &other_key)
        .await
        .register(echo(&other_key, "other/echo", 30_000))
        .await
        .unwrap();

    // Refused until the root's operator allows the child: nothing is copied.
    let child_link = link(&child, &child_key, &root);
    admin(&child, rule("acme/*", false)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!child.registry().mirror_status().0.connected);
    assert!(names(&child, ECHO_IFACE).await.is_empty());
    allow(&root, &child_key, "site-a").await;
    // The child's rule lets in acme's services, not another vendor's.
    assert!(eventually(async || names(&child, ECHO_IFACE).await == ["acme/echo"]).await);
    assert_eq!(names(&child, KV_IFACE).await, ["acme/kv"]);
    assert_eq!(child.registry().above()[1..], [VendorKey::of(&root_key)]);

    // The grandchild's rule holds each version for approval.
    allow(&child, &grand_key, "branch-1").await;
    let _grand_link = link(&grand, &grand_key, &child);
    admin(&grand, rule("acme/echo", true)).await;
    assert!(
        eventually(async || grand
            .registry()
            .approvals()
            .iter()
            .any(|a| a.name == "acme/echo" && a.state == ApprovalState::Pending))
        .await
    );
    assert!(names(&grand, ECHO_IFACE).await.is_empty());
    assert_eq!(
        grand.registry().above()[1..],
        [VendorKey::of(&child_key), VendorKey::of(&root_key)]
    );
    admin(
        &grand,
        AdminAction::Approve {
            vendor: VendorKey::of(&acme_key),
            name: "acme/echo".into(),
            version: "1.0.0".into(),
        },
    )
    .await;
    assert!(eventually(async || names(&grand, ECHO_IFACE).await == ["acme/echo"]).await);
    assert!(
        names(&grand, KV_IFACE).await.is_empty(),
        "no rule lets kv in"
    );

    // A vendor of the child's own site registers there: served there, never sent up.
    let local_key = key(4);
    vendor(&child, &local_key)
        .await
        .register(kv(&local_key, "site/kv", 30_000))
        .await
        .unwrap();
    assert_eq!(names(&child, KV_IFACE).await, ["acme/kv", "site/kv"]);
    assert_eq!(names(&root, KV_IFACE).await, ["acme/kv"]);

    // A freshness statement the vendor publishes at the root later (as `courier publish`
    // does every few minutes) reaches the grandchild, whose clients are served it.
    let fresh = courier_protocol::SignedFreshness::sign(
        &courier_protocol::FreshnessStatement::new(
            VendorKey::of(&acme_key),
            [("acme/echo".to_string(), "1.0.0".to_string())],
            wall_now(),
            600_000,
        ),
        &acme_key,
    );
    acme.publish_freshness(fresh.clone()).await.unwrap();
    assert!(
        eventually(async || {
            let found = client(&grand)
                .await
                .find(ServiceQuery {
                    interface: ECHO_IFACE.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
            found
                .first()
                .is_some_and(|c| c.freshness.as_ref() == Some(&fresh))
        })
        .await
    );

    // Metadata first: no component has crossed a link yet. Two clients of the grandchild
    // fetch the proxy; its bytes cross each link once, and they are the vendor's.
    assert_eq!(child.registry().mirror_status().0.fetched, 0);
    let hash = courier_protocol::ContentHash::of(courier_proxy_artifacts::ECHO);
    let size = courier_proxy_artifacts::ECHO.len() as u64;
    for _ in 0..2 {
        let bytes = client(&grand)
            .await
            .fetch(hash, size, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(bytes, courier_proxy_artifacts::ECHO);
    }
    assert_eq!(grand.registry().mirror_status().0.fetched, 1);
    assert_eq!(child.registry().mirror_status().0.fetched, 1);
    // A component no mirrored registration names is never asked of the parent.
    let kv_hash = courier_protocol::ContentHash::of(courier_proxy_artifacts::KV);
    assert!(
        client(&grand)
            .await
            .fetch(kv_hash, 10, Duration::from_secs(2))
            .await
            .is_err()
    );

    // Renewals at the root keep the lease alive down the tree (its lease is 2 s).
    for _ in 0..6 {
        acme.renew(echo_lease, 2_000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = grand.registry();
    let row = r
        .leases(r.now())
        .unwrap()
        .into_iter()
        .find(|l| l.lease == echo_lease)
        .unwrap();
    assert!(
        row.renewals >= 5,
        "renewals reached the grandchild: {row:?}"
    );
    assert_eq!(row.mirrored, Some(courier_protocol::Mirrored::Live));
    // A vendor cannot renew a mirrored lease at a child: it keeps it at the root.
    assert_eq!(
        kind(
            vendor(&grand, &acme_key)
                .await
                .renew(echo_lease, 2_000)
                .await
                .unwrap_err()
        ),
        courier_protocol::ErrorKind::NotOwner
    );

    // Reports go up: the root sees its child's sync state.
    assert!(
        eventually(async || {
            let all = vendor(&root, &key(OPERATOR))
                .await
                .children()
                .await
                .unwrap();
            all.iter().any(|c| {
                c.report
                    .as_ref()
                    .is_some_and(|(_, r)| r.status.connected && r.status.mirrored == 2)
            })
        })
        .await
    );

    // The link stops; meanwhile the root changes. Started again, the child resumes from
    // its anchor: no second copy, nothing missed.
    child_link.stop();
    let later = acme
        .register(echo(&acme_key, "acme/later", 30_000))
        .await
        .unwrap()
        .lease;
    let r = child.registry();
    let kv_lease = r
        .leases(r.now())
        .unwrap()
        .into_iter()
        .find(|l| l.name == "acme/kv")
        .unwrap()
        .lease;
    acme.cancel(kv_lease).await.unwrap();
    let copies = child.registry().mirror_status().0.copies;
    let _child_link = link(&child, &child_key, &root);
    assert!(eventually(async || names(&child, KV_IFACE).await == ["site/kv"]).await);
    assert!(
        eventually(async || names(&child, ECHO_IFACE).await == ["acme/echo", "acme/later"]).await
    );
    assert_eq!(child.registry().mirror_status().0.copies, copies);
    assert!(child.registry().is_mirrored(&later));
    // Nothing missed, nothing twice: the child's own feed, from its first event, has each
    // registration once between its removals, and the two changes made while the link was
    // stopped once each.
    let events = all_events(&child).await;
    let mut live = std::collections::HashSet::new();
    for (kind, lease) in &events {
        match kind {
            EventKind::Registered => assert!(live.insert(*lease), "{lease} twice: {events:?}"),
            EventKind::Renewed => {}
            _ => assert!(live.remove(lease), "{lease} removed twice: {events:?}"),
        }
    }
    let count = |k: EventKind, l: LeaseId| events.iter().filter(|e| **e == (k, l)).count();
    assert_eq!(count(EventKind::Registered, later), 1, "{events:?}");
    assert_eq!(count(EventKind::Cancelled, kv_lease), 1, "{events:?}");

    // An operator at the root revokes the echo lease: it leaves the grandchild too.
    admin(
        &root,
        AdminAction::RevokeLease {
            lease: echo_lease,
            reason: "recalled".into(),
        },
    )
    .await;
    assert!(eventually(async || names(&grand, ECHO_IFACE).await.is_empty()).await);

    // The child's operator bans acme from acme/later: it goes, and a new copy of the
    // parent's catalog (which a rule change starts) does not bring it back.
    admin(
        &child,
        AdminAction::Ban {
            name: "acme/later".into(),
            key: VendorKey::of(&acme_key),
            reason: "not here".into(),
        },
    )
    .await;
    assert!(!child.registry().is_mirrored(&later));
    let copies = child.registry().mirror_status().0.copies;
    admin(&child, rule("nothing/*", false)).await;
    assert!(eventually(async || child.registry().mirror_status().0.copies > copies).await);
    assert!(!child.registry().is_mirrored(&later));
    assert!(names(&child, ECHO_IFACE).await.is_empty());
}

/// The lease of `name` at `h`, as its lease table lists it.
fn lease_of(h: &RegistryHandle, name: &str) -> Option<courier_protocol::LeaseInfo> {
    let r = h.registry();
    r.leases(r.now())
        .unwrap()
        .into_iter()
        .find(|l| l.name == name)
}

/// Copies a stopped registry's data directory (a backup).
fn backup(from: &std::path::Path, to: &std::path::Path) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&entry, dest).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The root again on `dir`, at the address it had.
async fn root_again(dir: &std::path::Path, addr: std::net::SocketAddr) -> RegistryHandle {
    let mut s = setup(dir);
    s.server.listen = addr;
    start(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_resumes_from_its_anchor_serves_its_grace_cut_off_and_copies_a_restored_parent() {
    let (root_dir, child_dir, saved) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (root_key, child_key, acme_key) = (key(30), key(31), key(1));
    let root = registry(root_dir.path(), &root_key).await;
    let root_addr = root.local_addr();
    allow(&root, &child_key, "site-a").await;
    let mut s = setup(child_dir.path());
    s.registry.mirror_grace = Duration::from_millis(1_500);
    let child = start(s.clone()).await;
    child
        .registry()
        .place_in_hierarchy(VendorKey::of(&child_key), Vec::new());
    admin(&child, rule("*", false)).await;
    let link1 = link(&child, &child_key, &root);
    let acme = vendor(&root, &acme_key).await;
    let first = acme
        .register(echo(&acme_key, "acme/first", 30_000))
        .await
        .unwrap()
        .lease;
    assert!(eventually(async || lease_of(&child, "acme/first").is_some()).await);

    // The child stops; the root changes; the child starts again on its store and resumes
    // from its anchor: the change arrives, no copy is made.
    link1.stop();
    child.shutdown().await;
    acme.cancel(first).await.unwrap();
    acme.register(echo(&acme_key, "acme/second", 30_000))
        .await
        .unwrap();
    let child = start(s.clone()).await;
    child
        .registry()
        .place_in_hierarchy(VendorKey::of(&child_key), Vec::new());
    assert!(
        child.registry().mirror_anchor().is_some(),
        "the anchor is durable"
    );
    assert!(lease_of(&child, "acme/first").is_some(), "as stored");
    let link2 = link(&child, &child_key, &root);
    assert!(eventually(async || lease_of(&child, "acme/second").is_some()).await);
    assert!(eventually(async || lease_of(&child, "acme/first").is_none()).await);
    assert_eq!(
        child.registry().mirror_status().0.copies,
        0,
        "resumed, not copied"
    );

    // A lease the vendor keeps renewing at the root, while the child's link is stopped
    // longer than its end plus the grace: it runs out at the child, and comes back with
    // the first renewal the child hears of once the link is back.
    let kept = acme
        .register(echo(&acme_key, "acme/kept", 1_000))
        .await
        .unwrap()
        .lease;
    assert!(eventually(async || lease_of(&child, "acme/kept").is_some()).await);
    let renewer = {
        let acme = acme.clone();
        tokio::spawn(async move {
            loop {
                let _ = acme.renew(kept, 1_000).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    link2.stop();
    assert!(eventually(async || lease_of(&child, "acme/kept").is_none()).await);
    let copies = child.registry().mirror_status().0.copies;
    let _link3 = link(&child, &child_key, &root);
    assert!(eventually(async || lease_of(&child, "acme/kept").is_some()).await);
    assert_eq!(
        child.registry().mirror_status().0.copies,
        copies,
        "back through its renewal, not a copy"
    );
    renewer.abort();
    acme.cancel(kept).await.unwrap();
    assert!(eventually(async || lease_of(&child, "acme/kept").is_none()).await);

    // A lease of 1 s; the root goes away. Cut off, the child serves the registration past
    // its last known end for the mirror grace, marked, then lets it go.
    acme.register(echo(&acme_key, "acme/short", 1_000))
        .await
        .unwrap();
    assert!(eventually(async || lease_of(&child, "acme/short").is_some()).await);
    acme.close();
    root.shutdown().await;
    assert!(
        eventually(async || lease_of(&child, "acme/short")
            .is_some_and(|l| l.mirrored == Some(courier_protocol::Mirrored::PastEnd)))
        .await
    );
    assert!(!child.registry().mirror_status().0.connected);
    assert!(
        names(&child, ECHO_IFACE)
            .await
            .contains(&"acme/short".to_string())
    );
    assert!(eventually(async || lease_of(&child, "acme/short").is_none()).await);
    assert!(
        lease_of(&child, "acme/second").is_some(),
        "its lease is 30 s"
    );

    // The root is restored from a backup taken now, then changed and restored again: its
    // feed no longer holds what the child's anchor points into, and the child copies its
    // catalog again rather than diverge.
    backup(root_dir.path(), saved.path());
    let root = root_again(root_dir.path(), root_addr).await;
    let acme = vendor(&root, &acme_key).await;
    acme.register(echo(&acme_key, "acme/lost", 30_000))
        .await
        .unwrap();
    assert!(eventually(async || lease_of(&child, "acme/lost").is_some()).await);
    acme.close();
    root.shutdown().await;
    std::fs::remove_dir_all(root_dir.path()).unwrap();
    backup(saved.path(), root_dir.path());
    let _root = root_again(root_dir.path(), root_addr).await;
    assert!(eventually(async || lease_of(&child, "acme/lost").is_none()).await);
    assert!(child.registry().mirror_status().0.copies >= 1);
    assert!(lease_of(&child, "acme/second").is_some());

    // Another vendor's service; then acme revokes its own key at the root. Its
    // registration leaves the child, and the child's clients learn the revocation from
    // the child.
    let (beta_key, root) = (key(3), _root);
    vendor(&root, &beta_key)
        .await
        .register(echo(&beta_key, "beta/one", 30_000))
        .await
        .unwrap();
    assert!(eventually(async || lease_of(&child, "beta/one").is_some()).await);
    let revoke = courier_protocol::SignedKeyStatement::sign(
        &courier_protocol::KeyStatement::revoke(VendorKey::of(&acme_key), wall_now()),
        &acme_key,
    );
    vendor(&root, &acme_key)
        .await
        .publish_statement(revoke.clone())
        .await
        .unwrap();
    assert!(eventually(async || lease_of(&child, "acme/second").is_none()).await);
    assert!(
        eventually(async || client(&child)
            .await
            .key_statements(vec![VendorKey::of(&acme_key)])
            .await
            .unwrap()
            .contains(&revoke))
        .await
    );

    // Without its rule, what it let in goes at once.
    admin(&child, AdminAction::RemoveMirrorRule { id: 1 }).await;
    assert!(lease_of(&child, "beta/one").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_that_stalls_mid_component_fails_the_fetch_and_a_later_one_gets_it() {
    let (root_dir, child_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (root_key, child_key, acme_key) = (key(30), key(31), key(1));
    let root = registry(root_dir.path(), &root_key).await;
    let child = registry(child_dir.path(), &child_key).await;
    allow(&root, &child_key, "site-a").await;
    admin(&child, rule("*", false)).await;
    // The child reaches its parent through a relay that can stop passing packets.
    let relay = courier_test_support::relay::Relay::start(root.local_addr()).await;
    let _link = follow_parent(
        child.registry().clone(),
        ParentConfig {
            addr: relay.addr,
            pin: root.pin(),
            key: child_key,
            report_every: Duration::from_secs(30),
            refresh_every: Duration::from_secs(60),
            prefetch: false,
            fetch_deadline: Duration::from_secs(2),
        },
    );
    vendor(&root, &acme_key)
        .await
        .register(echo(&acme_key, "acme/echo", 30_000))
        .await
        .unwrap();
    assert!(eventually(async || names(&child, ECHO_IFACE).await == ["acme/echo"]).await);

    // The parent stalls: the client's own deadline holds, and its fetch fails.
    relay.cut();
    let hash = courier_protocol::ContentHash::of(courier_proxy_artifacts::ECHO);
    let size = courier_proxy_artifacts::ECHO.len() as u64;
    let fetching = client(&child).await;
    assert!(
        fetching
            .fetch(hash, size, Duration::from_secs(1))
            .await
            .is_err()
    );
    // The parent is back: a later fetch gets the bytes (the child tries again once its
    // own fetch has timed out and the link is up).
    relay.restore();
    let mut got = None;
    for _ in 0..150 {
        if let Ok(bytes) = client(&child)
            .await
            .fetch(hash, size, Duration::from_secs(3))
            .await
        {
            got = Some(bytes);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.as_deref(), Some(courier_proxy_artifacts::ECHO));
    assert_eq!(child.registry().mirror_status().0.fetched, 1);

    // On demand: the root's operator asks for a report (the child reports every 30 s
    // here); it comes at the child's next hello.
    let operator = vendor(&root, &key(OPERATOR)).await;
    let last = async || {
        operator.children().await.unwrap()[0]
            .report
            .as_ref()
            .map(|(at, _)| *at)
    };
    let before = last().await;
    operator
        .ask_child_report(VendorKey::of(&key(31)))
        .await
        .unwrap();
    assert!(eventually(async || last().await > before).await);
}
