//! Unit tests of roots in the trust store: delegation accepted, revoked, expired,
//! widening, rotation with too few signatures, rollback, and the text form.
#![allow(clippy::unwrap_used)]

use super::{LearnError, TrustRefusal, TrustStore};
use courier_protocol::{
    AuthorityError, Delegation, DelegationStatement, NamePattern, RootKeys, RootStatement,
    SignedDelegation, SignedRootStatement, SigningKey, VendorKey,
};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn vk(seed: u8) -> VendorKey {
    VendorKey::of(&key(seed))
}

fn root_keys() -> RootKeys {
    RootKeys::new([vk(1), vk(2), vk(3)], 2).unwrap()
}

fn delegate(seed: u8, names: &[&str], not_after_ms: u64) -> Delegation {
    Delegation {
        key: vk(seed),
        names: names.iter().map(|n| NamePattern::new(n).unwrap()).collect(),
        not_after_ms,
    }
}

/// Version 1: `acme/*` to key 10 until 10_000.
fn v1() -> RootStatement {
    let mut s = RootStatement::genesis(root_keys()).next(1);
    s.delegations.push(delegate(10, &["acme/*"], 10_000));
    s
}

fn signed(s: &RootStatement, seeds: &[u8]) -> SignedRootStatement {
    let keys: Vec<SigningKey> = seeds.iter().map(|s| key(*s)).collect();
    SignedRootStatement::sign(s, &keys.iter().collect::<Vec<_>>())
}

fn store() -> TrustStore {
    let mut store = TrustStore::new();
    assert!(store.add_root(root_keys()).unwrap());
    store
}

#[test]
fn a_delegated_key_is_trusted_for_its_names_until_it_expires() {
    let mut store = store();
    assert_eq!(
        store.check_for(&vk(10), "acme/echo", 5),
        Err(TrustRefusal::Untrusted(vk(10)))
    );
    assert!(store.learn_root(&signed(&v1(), &[1, 2])).unwrap());
    assert!(store.check_for(&vk(10), "acme/echo", 5).is_ok());
    assert!(matches!(
        store.check_for(&vk(10), "other/echo", 5),
        Err(TrustRefusal::Delegation { reason, .. }) if matches!(*reason, AuthorityError::NotCovered { .. })
    ));
    assert!(matches!(
        store.check_for(&vk(10), "acme/echo", 10_001),
        Err(TrustRefusal::Delegation { reason, .. }) if matches!(*reason, AuthorityError::Expired { .. })
    ));
    // The delegated key is not trusted on its own (not for a single-key check).
    assert!(!store.is_trusted(&vk(10)));
    // Rollback memory treats the root as the vendor.
    assert_eq!(store.current(&vk(10)), VendorKey(root_keys().id().0));
}

#[test]
fn revoking_or_replacing_a_delegation_takes_effect_and_old_versions_are_refused() {
    let mut store = store();
    let first = signed(&v1(), &[1, 2]);
    store.learn_root(&first).unwrap();
    // Version 2 replaces key 10 with key 11 and revokes key 10.
    let mut v2 = v1().next(2);
    v2.delegations = vec![delegate(11, &["acme/*"], 10_000)];
    v2.revoked.push(vk(10));
    store.learn_root(&signed(&v2, &[2, 3])).unwrap();
    assert!(matches!(
        store.check_for(&vk(10), "acme/echo", 5),
        Err(TrustRefusal::Delegation { reason, .. }) if matches!(*reason, AuthorityError::Revoked(_))
    ));
    assert!(store.check_for(&vk(11), "acme/echo", 5).is_ok());
    // Version 1 again, or a different version 2: refused as rollback, nothing changes.
    let mut other_v2 = v1().next(2);
    other_v2.issued_at_ms = 99;
    for old in [signed(&v1(), &[1, 3]), signed(&other_v2, &[1, 2])] {
        assert!(
            matches!(store.learn_root(&old), Err(LearnError::Root(m)) if m.contains("rollback"))
        );
    }
    assert!(store.check_for(&vk(10), "acme/echo", 5).is_err());
    // The text form keeps it all; the learned part alone restores it under the root.
    let again = TrustStore::parse(&store.to_text()).unwrap();
    assert_eq!(again, store);
    let mut fresh = TrustStore::new();
    fresh.add_root(root_keys()).unwrap();
    assert_eq!(fresh.absorb(&store.learned_only()).unwrap(), 2);
    assert!(fresh.check_for(&vk(11), "acme/echo", 5).is_ok());
    assert!(fresh.check_for(&vk(10), "acme/echo", 5).is_err());
}

#[test]
fn root_rotation_with_too_few_old_signatures_is_refused() {
    let mut store = store();
    store.learn_root(&signed(&v1(), &[1, 2])).unwrap();
    let mut v2 = v1().next(2);
    v2.keys = RootKeys::new([vk(4), vk(5)], 2).unwrap();
    v2.delegations = vec![delegate(12, &["acme/*"], 10_000)];
    // One old key and both new ones: the old root's threshold (2) is not met.
    let refused = store.learn_root(&signed(&v2, &[1, 4, 5])).unwrap_err();
    assert!(
        refused.to_string().contains("previous root keys"),
        "{refused}"
    );
    assert!(store.check_for(&vk(12), "acme/echo", 5).is_err());
    assert!(store.learn_root(&signed(&v2, &[1, 2, 4, 5])).unwrap());
    assert!(store.check_for(&vk(12), "acme/echo", 5).is_ok());
    // From now on only the new keys sign.
    let v3 = v2.next(3);
    assert!(store.learn_root(&signed(&v3, &[1, 2])).is_err());
    assert!(store.learn_root(&signed(&v3, &[4, 5])).unwrap());
}

#[test]
fn a_further_delegation_counts_within_its_grant_and_a_widening_one_is_refused() {
    let mut store = store();
    store.learn_root(&signed(&v1(), &[1, 2])).unwrap();
    let further = |child: u8, names: &[&str]| {
        let statement = DelegationStatement {
            root: root_keys().id(),
            parent: vk(10),
            delegation: delegate(child, names, 9_000),
            issued_at_ms: 1,
        };
        SignedDelegation::sign(&statement, &key(10))
    };
    assert!(
        store
            .learn_delegation(&further(20, &["acme/echo"]))
            .unwrap()
    );
    assert!(store.check_for(&vk(20), "acme/echo", 5).is_ok());
    assert!(store.check_for(&vk(20), "acme/kv", 5).is_err());
    let widening = store.learn_delegation(&further(21, &["acme/*", "evil/*"]));
    assert!(matches!(widening, Err(LearnError::Root(m)) if m.contains("widens")));
    assert_eq!(
        store.check_for(&vk(21), "evil/x", 5),
        Err(TrustRefusal::Untrusted(vk(21)))
    );
}
