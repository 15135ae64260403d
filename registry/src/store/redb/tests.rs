//! The redb store's tests: a round trip through a reopen, and component counts that
//! disagree with the registrations.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::store::Removal;
use courier_protocol::Outcome;

#[test]
fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), 1 << 20).unwrap();
    let fresh = store.load_meta().unwrap();
    assert_eq!(fresh.registry_id.len(), 32, "made at creation");
    assert_eq!((fresh.seq_reserved, fresh.names.len()), (0, 0));
    let m = courier_test_support::signed_manifest_for(b"component", 1);
    let row = LeaseRow {
        expires_at_ms: 123,
        ttl_ms: 10,
        renewals: 2,
        in_grace: true,
    };
    store
        .commit(&Batch {
            registrations: vec![(LeaseId([1; 16]), m.clone()), (LeaseId([2; 16]), m.clone())],
            leases: vec![(LeaseId([1; 16]), row), (LeaseId([2; 16]), row)],
            names: vec![("a/b".into(), VendorKey([3; 32]))],
            grants: vec![("a/b".into(), VendorKey([4; 32]))],
            seq_reserved: Some(77),
            last_alive_ms: Some(55),
            ..Default::default()
        })
        .unwrap();
    store
        .commit(&Batch {
            delete: vec![(LeaseId([2; 16]), Removal::Expired)],
            ..Default::default()
        })
        .unwrap();
    let hash = ContentHash::of(b"component");
    store.put_component(&hash, b"component").unwrap();
    store.put_component(&hash, b"component").unwrap();
    let entry = HistoryEntry {
        at_ms: 5,
        outcome: Outcome {
            client: "c1".into(),
            name: "a/b".into(),
            version: "1.0.0".into(),
            component: hash,
            function: "f".into(),
            ok: true,
            detail: "fine".into(),
            duration_us: 3,
            facts: Default::default(),
        },
    };
    store.append_history("c1", 1, &entry, 100).unwrap();
    let mut second = entry.clone();
    second.at_ms = 6;
    store.append_history("c1", 2, &second, 100).unwrap();
    store.append_history("c2", 3, &entry, 100).unwrap();
    drop(store);

    let store = RedbStore::open(dir.path(), 1 << 20).unwrap();
    let meta = store.load_meta().unwrap();
    assert_eq!(meta.registry_id, fresh.registry_id, "kept across opens");
    assert_eq!(
        (meta.seq_reserved, meta.last_alive_ms, meta.history_seq),
        (77, 55, 3)
    );
    let mut loaded = Vec::new();
    assert!(
        store
            .load_leases(&mut |s| loaded.push(s))
            .unwrap()
            .is_empty()
    );
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].lease, LeaseId([1; 16]));
    assert_eq!(loaded[0].manifest, m);
    assert_eq!(loaded[0].row, row);
    assert_eq!(meta.names, vec![("a/b".to_string(), VendorKey([3; 32]))]);
    assert_eq!(meta.grants, vec![("a/b".to_string(), VendorKey([4; 32]))]);
    assert_eq!(store.read_component(&hash).unwrap().unwrap(), b"component");
    assert_eq!(store.read_component(&ContentHash([0; 32])).unwrap(), None);
    let h = store.history("c1", 10, 1 << 20).unwrap();
    assert_eq!(h.iter().map(|e| e.at_ms).collect::<Vec<_>>(), vec![6, 5]);
    assert_eq!(store.history("c1", 1, 1 << 20).unwrap().len(), 1);
    assert_eq!(store.history("c1", 10, 1).unwrap().len(), 1, "at least one");
    assert!(store.history("c3", 10, 1 << 20).unwrap().is_empty());
    // A full history lets its oldest entries go, whichever client they belong to.
    let mut third = entry.clone();
    third.at_ms = 7;
    store.append_history("c2", 4, &third, 2).unwrap();
    assert!(store.history("c1", 10, 1 << 20).unwrap().is_empty());
    let c2: Vec<u64> = store
        .history("c2", 10, 1 << 20)
        .unwrap()
        .iter()
        .map(|e| e.at_ms)
        .collect();
    assert_eq!(c2, vec![7, 5]);
    assert_eq!(
        store
            .manifests(&[LeaseId([1; 16]), LeaseId([2; 16])])
            .unwrap(),
        vec![Some(m), None]
    );
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join(BLOB_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(hash.to_hex())]);
}

#[test]
fn wrong_reference_counts_are_counted_again_before_anything_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path(), 1 << 20).unwrap();
    let hash = ContentHash::of(b"shared");
    let row = LeaseRow {
        expires_at_ms: 1,
        ttl_ms: 1,
        renewals: 0,
        in_grace: false,
    };
    store.put_component(&hash, b"shared").unwrap();
    store
        .commit(&Batch {
            registrations: vec![
                (
                    LeaseId([1; 16]),
                    courier_test_support::signed_manifest_for(b"shared", 1),
                ),
                (
                    LeaseId([2; 16]),
                    courier_test_support::signed_manifest_for(b"shared", 2),
                ),
            ],
            leases: vec![(LeaseId([1; 16]), row), (LeaseId([2; 16]), row)],
            ..Default::default()
        })
        .unwrap();
    // As a store written by a version that kept no counts, or wrong ones.
    let txn = store.db.begin_write().unwrap();
    txn.open_table(BLOB_REFS)
        .unwrap()
        .insert(&hash.0, 1)
        .unwrap();
    txn.commit().unwrap();
    drop(store);

    let store = RedbStore::open(dir.path(), 1 << 20).unwrap();
    // Reads do not wait for the open's recount and sweep; this one must come after them.
    store.recount.wait().unwrap();
    assert_eq!(store.read_component(&hash).unwrap().unwrap(), b"shared");
    store
        .commit(&Batch {
            delete: vec![(LeaseId([1; 16]), Removal::Expired)],
            ..Default::default()
        })
        .unwrap();
    assert!(
        store.read_component(&hash).unwrap().is_some(),
        "one reference left"
    );
    store
        .commit(&Batch {
            delete: vec![(LeaseId([2; 16]), Removal::Expired)],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.read_component(&hash).unwrap(), None);
}
