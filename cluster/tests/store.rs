//! The etcd store against a real etcd: what the registry commits comes back after a
//! reopen (registrations, lease rows, names, grants, operators' records, usage, audit,
//! history with its cap), components stay on the node's disk and go with their last
//! registration, a batch larger than one etcd transaction commits whole, a store whose
//! fence is gone writes nothing, and a standby writes the rows of the leases it renewed
//! only while their registrations and its membership last.
#![allow(clippy::unwrap_used)]

use courier_cluster::{Etcd, EtcdStore, Fence, layout::Layout};
use courier_protocol::{
    AdminAction, AuditEntry, ContentHash, HistoryEntry, LeaseId, Outcome, VendorKey,
};
use courier_registry::{Batch, LeaseRow, Removal, Storage, StoreError, UsageRecord};
use courier_test_support::etcd::{EtcdMember, SKIP_LINE, etcd_binary};
use courier_test_support::signed_manifest_for;
use std::sync::Arc;
use std::time::Duration;

fn row(expires_at_ms: u64) -> LeaseRow {
    LeaseRow {
        expires_at_ms,
        ttl_ms: 10,
        renewals: 2,
        in_grace: true,
    }
}

fn entry(at_ms: u64) -> HistoryEntry {
    HistoryEntry {
        at_ms,
        outcome: Outcome {
            client: "c1".into(),
            name: "acme/svc1".into(),
            version: "1.0.0".into(),
            component: ContentHash::of(b"component"),
            function: "say".into(),
            ok: true,
            detail: "fine".into(),
            duration_us: 3,
            facts: Default::default(),
        },
    }
}

struct Setup {
    _etcd: EtcdMember,
    client: Arc<Etcd>,
    dir: tempfile::TempDir,
}

fn setup() -> Option<Setup> {
    if etcd_binary().is_none() {
        eprintln!("{SKIP_LINE}");
        return None;
    }
    courier_test_support::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdMember::start(&dir.path().join("etcd")).unwrap();
    let client = Arc::new(Etcd::connect(&[etcd.client_url()], Duration::from_secs(5)).unwrap());
    Some(Setup {
        _etcd: etcd,
        client,
        dir,
    })
}

fn open(s: &Setup, fence: Option<Fence>) -> EtcdStore {
    EtcdStore::open(
        s.client.clone(),
        Layout::new("test"),
        fence,
        &s.dir.path().join("node"),
        None,
    )
    .unwrap()
}

#[test]
fn round_trip_through_a_reopen() {
    let Some(s) = setup() else { return };
    let store = open(&s, None);
    let fresh = store.load_meta().unwrap();
    assert_eq!(fresh.registry_id.len(), 32, "made on first use");
    let m = signed_manifest_for(b"component", 1);
    let hash = ContentHash::of(b"component");
    store.put_component(&hash, b"component").unwrap();
    let (a, b) = (LeaseId([1; 16]), LeaseId([2; 16]));
    let key = VendorKey([3; 32]);
    store
        .commit(&Batch {
            registrations: vec![(a, m.clone()), (b, m.clone())],
            leases: vec![(a, row(123)), (b, row(456))],
            names: vec![("a/b".into(), key)],
            grants: vec![("a/b".into(), VendorKey([4; 32]))],
            bans: vec![("a/b".into(), VendorKey([5; 32]), "spam".into())],
            drains: vec![("a/c".into(), "moving".into())],
            children: vec![
                (VendorKey([7; 32]), "site-a".into(), 77),
                (VendorKey([8; 32]), "site-b".into(), 78),
            ],
            lease_revocations: vec![(LeaseId([9; 16]), "abuse".into(), 999)],
            usage: vec![UsageRecord {
                hour_ms: 3_600_000,
                client: Some(VendorKey([6; 32])),
                service: "a/b".into(),
                handed_out: 2,
                bytes: 10,
                calls: 1,
                failed: 0,
            }],
            audit: vec![AuditEntry {
                seq: 4,
                at_ms: 1,
                operator: Some(key),
                action: AdminAction::RevokeLease {
                    lease: LeaseId([9; 16]),
                    reason: "abuse".into(),
                },
            }],
            seq_reserved: Some(77),
            last_alive_ms: Some(55),
            ..Default::default()
        })
        .unwrap();
    // A name keeps its first owner; usage adds up.
    store
        .commit(&Batch {
            delete: vec![(b, Removal::Expired)],
            names: vec![("a/b".into(), VendorKey([8; 32]))],
            usage: vec![UsageRecord {
                hour_ms: 3_600_000,
                client: Some(VendorKey([6; 32])),
                service: "a/b".into(),
                handed_out: 1,
                bytes: 5,
                calls: 2,
                failed: 1,
            }],
            ..Default::default()
        })
        .unwrap();
    store.append_history("c1", 1, &entry(5), 100).unwrap();
    store.append_history("c1", 2, &entry(6), 100).unwrap();
    store.append_history("c2", 3, &entry(5), 100).unwrap();
    drop(store);

    let store = open(&s, None);
    let meta = store.load_meta().unwrap();
    assert_eq!(meta.registry_id, fresh.registry_id, "kept");
    assert_eq!(
        (
            meta.seq_reserved,
            meta.last_alive_ms,
            meta.history_seq,
            meta.audit_seq
        ),
        (77, 55, 3, 4)
    );
    assert_eq!(meta.names, vec![("a/b".to_string(), key)]);
    assert_eq!(meta.grants, vec![("a/b".to_string(), VendorKey([4; 32]))]);
    assert_eq!(
        meta.bans,
        vec![("a/b".to_string(), VendorKey([5; 32]), "spam".to_string())]
    );
    assert_eq!(meta.drains, vec![("a/c".to_string(), "moving".to_string())]);
    assert_eq!(
        meta.children,
        vec![
            (VendorKey([7; 32]), "site-a".to_string(), 77),
            (VendorKey([8; 32]), "site-b".to_string(), 78)
        ]
    );
    assert_eq!(
        meta.lease_revocations,
        vec![(LeaseId([9; 16]), "abuse".to_string(), 999)]
    );
    assert_eq!(meta.served, vec![("a/b".to_string(), VendorKey([6; 32]))]);
    let usage = store.usage_since(0).unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(
        (
            usage[0].handed_out,
            usage[0].bytes,
            usage[0].calls,
            usage[0].failed
        ),
        (3, 15, 3, 1)
    );
    assert_eq!(store.audit(0, 10).unwrap().len(), 1);
    let mut loaded = Vec::new();
    assert!(
        store
            .load_leases(&mut |l| loaded.push(l))
            .unwrap()
            .is_empty()
    );
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        (loaded[0].lease, &loaded[0].manifest, loaded[0].row),
        (a, &m, row(123))
    );
    assert_eq!(store.manifests(&[a, b]).unwrap(), vec![Some(m), None]);
    let h: Vec<u64> = store
        .history("c1", 10, 1 << 20)
        .unwrap()
        .iter()
        .map(|e| e.at_ms)
        .collect();
    assert_eq!(h, vec![6, 5], "newest first");
    // A full history lets its oldest entries go, whichever client they belong to.
    store.append_history("c2", 4, &entry(7), 2).unwrap();
    assert!(store.history("c1", 10, 1 << 20).unwrap().is_empty());
    let c2: Vec<u64> = store
        .history("c2", 10, 1 << 20)
        .unwrap()
        .iter()
        .map(|e| e.at_ms)
        .collect();
    assert_eq!(c2, vec![7, 5]);
    // The component goes with its last registration.
    assert!(store.read_component(&hash).unwrap().is_some());
    store
        .commit(&Batch {
            delete: vec![(a, Removal::Expired)],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.read_component(&hash).unwrap(), None);
}

#[test]
fn a_batch_larger_than_a_transaction_commits_whole() {
    let Some(s) = setup() else { return };
    let store = open(&s, None);
    let m = signed_manifest_for(b"many", 2);
    let n = courier_cluster::MAX_TXN_OPS * 5 + 7;
    let leases: Vec<LeaseId> = (0..n)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            LeaseId(id)
        })
        .collect();
    store
        .commit(&Batch {
            registrations: leases.iter().map(|l| (*l, m.clone())).collect(),
            leases: leases.iter().map(|l| (*l, row(1))).collect(),
            seq_reserved: Some(5),
            ..Default::default()
        })
        .unwrap();
    store
        .commit(&Batch {
            leases: leases.iter().map(|l| (*l, row(2))).collect(),
            ..Default::default()
        })
        .unwrap();
    let mut loaded = Vec::new();
    let bad = open(&s, None).load_leases(&mut |l| loaded.push(l)).unwrap();
    // No component is on this node and no peer is given: every one is reported.
    assert_eq!(bad.len(), n);
    store
        .put_component(&ContentHash::of(b"many"), b"many")
        .unwrap();
    loaded.clear();
    let bad = open(&s, None).load_leases(&mut |l| loaded.push(l)).unwrap();
    assert!(bad.is_empty());
    assert_eq!(loaded.len(), n);
    assert!(loaded.iter().all(|l| l.row == row(2)));
}

#[test]
fn a_store_whose_fence_is_gone_writes_nothing() {
    let Some(s) = setup() else { return };
    let fence = Fence {
        key: b"/courier/test/leader/gone".to_vec(),
        revision: 1,
    };
    let store = open(&s, Some(fence));
    let err = store
        .commit(&Batch {
            names: vec![("x/y".into(), VendorKey([1; 32]))],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().contains("no longer the cluster's writer"),
        "{err}"
    );
    assert!(open(&s, None).load_meta().unwrap().names.is_empty());
}

#[test]
fn a_standby_writes_rows_of_live_registrations_only_and_only_while_a_member() {
    let Some(s) = setup() else { return };
    let writer = open(&s, None);
    let m = signed_manifest_for(b"component", 1);
    writer
        .put_component(&ContentHash::of(b"component"), b"component")
        .unwrap();
    let (a, b) = (LeaseId([1; 16]), LeaseId([2; 16]));
    writer
        .commit(&Batch {
            registrations: vec![(a, m.clone()), (b, m)],
            leases: vec![(a, row(100)), (b, row(100))],
            ..Default::default()
        })
        .unwrap();
    let member = b"/courier/test/nodes/s".to_vec();
    let key = member.clone();
    let revision = s
        .client
        .run(
            "join",
            move |mut c| async move { c.put(key, "", None).await },
        )
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let standby = open(&s, None).held_by("s").standby(Fence {
        key: member.clone(),
        revision,
    });
    // The writer removes `b` before the standby's flush of both.
    writer
        .commit(&Batch {
            delete: vec![(b, Removal::Expired)],
            ..Default::default()
        })
        .unwrap();
    standby
        .commit(&Batch {
            leases: vec![(a, row(900)), (b, row(900))],
            ..Default::default()
        })
        .unwrap();
    let mut rows = Vec::new();
    open(&s, None)
        .load_leases(&mut |l| rows.push((l.lease, l.row)))
        .unwrap();
    assert_eq!(rows, vec![(a, row(900))], "b is not brought back");
    let b_row = format!("/courier/test/lease/{}", hex::encode(b.0));
    let left = s
        .client
        .run("read", move |mut c| async move { c.get(b_row, None).await })
        .unwrap();
    assert!(left.kvs().is_empty(), "no row without its registration");
    // Anything but lease rows is the writer's.
    let err = standby
        .commit(&Batch {
            names: vec![("x/y".into(), VendorKey([1; 32]))],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    // A node whose membership is gone (its session ended) writes nothing more.
    s.client
        .run(
            "leave",
            move |mut c| async move { c.delete(member, None).await },
        )
        .unwrap();
    let err = standby
        .commit(&Batch {
            leases: vec![(a, row(1_000))],
            ..Default::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("session ended"), "{err}");
}
