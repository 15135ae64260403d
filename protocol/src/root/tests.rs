//! Unit tests of root statements, thresholds, rotation, rollback and delegation.

use super::*;
use crate::signing::{DELEGATION_DOMAIN, MANIFEST_DOMAIN};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pattern(s: &str) -> NamePattern {
    NamePattern::new(s).unwrap()
}

/// Root keys 1, 2, 3 with threshold 2.
fn two_of_three() -> RootKeys {
    RootKeys::new([1, 2, 3].map(|s| VendorKey::of(&key(s))), 2).unwrap()
}

fn delegation(seed: u8, names: &[&str], not_after_ms: u64) -> Delegation {
    Delegation {
        key: VendorKey::of(&key(seed)),
        names: names.iter().map(|n| pattern(n)).collect(),
        not_after_ms,
    }
}

/// Version 1 of the 2-of-3 root, delegating `acme/*` to key 10 until 1000.
fn first() -> RootStatement {
    let mut s = RootStatement::genesis(two_of_three()).next(1);
    s.delegations.push(delegation(10, &["acme/*"], 1000));
    s
}

#[test]
fn first_statement_needs_the_threshold_of_distinct_keys() {
    let s = first();
    let ok = SignedRootStatement::sign(&s, &[&key(1), &key(3)]);
    assert_eq!(ok.verify_first().unwrap().get(), &s);
    let again = SignedRootStatement::from_hex(&ok.to_hex()).unwrap();
    assert_eq!(again, ok);
    // One key, the same key twice, or a key outside the root: not enough.
    let one = SignedRootStatement::sign(&s, &[&key(1)]);
    let mut twice = one.clone();
    twice.signatures.push(twice.signatures[0].clone());
    let stranger = SignedRootStatement::sign(&s, &[&key(1), &key(9)]);
    for refused in [one, twice, stranger] {
        assert_eq!(
            refused.verify_first(),
            Err(RootError::PreviousThreshold {
                signed: 1,
                threshold: 2
            })
        );
    }
    // A signature for another domain does not count.
    let mut other = SignedRootStatement::sign(&s, &[&key(1)]);
    other.signatures.push(RootSignature {
        key: VendorKey::of(&key(2)),
        signature: sign(&key(2), MANIFEST_DOMAIN, &other.bytes),
    });
    assert!(other.verify_first().is_err());
}

#[test]
fn rotation_needs_the_old_and_the_new_threshold() {
    let v1 = first();
    let new_keys = RootKeys::new([4, 5, 6].map(|s| VendorKey::of(&key(s))), 2).unwrap();
    let mut v2 = v1.next(2);
    v2.keys = new_keys;
    let (k1, k2, k4, k5) = (key(1), key(2), key(4), key(5));
    let full = SignedRootStatement::sign(&v2, &[&k1, &k2, &k4, &k5]);
    assert_eq!(full.verify_after(&v1).unwrap().get(), &v2);
    // Only one old root key: too few signatures of the root being rotated.
    let few_old = SignedRootStatement::sign(&v2, &[&k1, &k4, &k5]);
    assert_eq!(
        few_old.verify_after(&v1),
        Err(RootError::PreviousThreshold {
            signed: 1,
            threshold: 2
        })
    );
    // The old keys alone cannot hand the root to keys that did not sign.
    let no_new = SignedRootStatement::sign(&v2, &[&k1, &k2, &k4]);
    assert_eq!(
        no_new.verify_after(&v1),
        Err(RootError::OwnThreshold {
            signed: 1,
            threshold: 2
        })
    );
    // After the rotation, the old keys sign nothing more.
    let v3 = v2.next(3);
    let by_old = SignedRootStatement::sign(&v3, &[&k1, &k2]);
    assert!(by_old.verify_after(&v2).is_err());
    assert!(
        SignedRootStatement::sign(&v3, &[&k4, &k5])
            .verify_after(&v2)
            .is_ok()
    );
    // A first statement must keep the keys the root is named by.
    let mut moved = RootStatement::genesis(two_of_three()).next(1);
    moved.keys = v2.keys.clone();
    assert_eq!(
        SignedRootStatement::sign(&moved, &[&k4, &k5]).verify_first(),
        Err(RootError::FirstKeys)
    );
}

#[test]
fn an_older_or_equal_version_or_another_root_is_refused() {
    let v1 = first();
    let v2 = v1.next(2);
    let signed_v1 = SignedRootStatement::sign(&v1, &[&key(1), &key(2)]);
    assert_eq!(
        signed_v1.verify_after(&v2),
        Err(RootError::Rollback {
            known: 2,
            offered: 1
        })
    );
    let signed_v2 = SignedRootStatement::sign(&v2, &[&key(1), &key(2)]);
    assert!(matches!(
        signed_v2.verify_after(&v2),
        Err(RootError::Rollback { .. })
    ));
    let other = RootStatement::genesis(RootKeys::new([VendorKey::of(&key(1))], 1).unwrap());
    assert!(matches!(
        signed_v2.verify_after(&other),
        Err(RootError::OtherRoot { .. })
    ));
}

#[test]
fn shape_rules() {
    assert!(matches!(
        RootKeys::new([VendorKey::of(&key(1))], 2),
        Err(RootError::Threshold { .. })
    ));
    assert!(matches!(RootKeys::new([], 1), Err(RootError::Keys(0))));
    let keys = two_of_three();
    assert_eq!(RootKeys::from_text(&keys.to_text()).unwrap(), keys);
    let mut s = first();
    s.delegations.push(delegation(10, &["other/*"], 5));
    assert!(matches!(
        SignedRootStatement::sign(&s, &[&key(1), &key(2)]).verify_first(),
        Err(RootError::DuplicateDelegation(_))
    ));
    // A non-canonical encoding (a padded varint) is refused.
    let mut signed = SignedRootStatement::sign(&first(), &[&key(1), &key(2)]);
    let n = signed.bytes.len();
    signed.bytes[n - 1] |= 0x80;
    signed.bytes.push(0);
    assert!(signed.verify_first().is_err());
}

fn further(parent: u8, child: u8, names: &[&str], not_after_ms: u64) -> SignedDelegation {
    let statement = DelegationStatement {
        root: two_of_three().id(),
        parent: VendorKey::of(&key(parent)),
        delegation: delegation(child, names, not_after_ms),
        issued_at_ms: 1,
    };
    SignedDelegation::sign(&statement, &key(parent))
}

#[test]
fn authority_follows_delegations_and_refuses_widening() {
    let root = first();
    let narrow = further(10, 11, &["acme/echo"], 900)
        .verify()
        .unwrap()
        .into_inner();
    let wide_names = further(10, 12, &["acme/*", "evil/*"], 900)
        .verify()
        .unwrap()
        .into_inner();
    let wide_time = further(10, 13, &["acme/kv"], 2000)
        .verify()
        .unwrap()
        .into_inner();
    let all = [narrow.clone(), wide_names.clone(), wide_time.clone()];
    let auth = Authority {
        root: &root,
        further: &all,
    };
    let (k10, k11, k12, k13) = [10, 11, 12, 13].map(|s| VendorKey::of(&key(s))).into();
    assert!(auth.authorize(&k10, "acme/echo", 500).is_ok());
    assert!(auth.authorize(&k11, "acme/echo", 500).is_ok());
    assert!(matches!(
        auth.authorize(&k11, "acme/kv", 500),
        Err(AuthorityError::NotCovered { .. })
    ));
    assert!(matches!(
        auth.admit(&wide_names),
        Err(AuthorityError::Widens { .. })
    ));
    assert!(matches!(
        auth.authorize(&k12, "acme/echo", 500),
        Err(AuthorityError::Widens { .. })
    ));
    assert!(matches!(
        auth.authorize(&k13, "acme/kv", 500),
        Err(AuthorityError::Widens { .. })
    ));
    // Expiry.
    assert!(matches!(
        auth.authorize(&k10, "acme/echo", 1001),
        Err(AuthorityError::Expired { .. })
    ));
    // Revoking the parent in a new version voids what it handed on.
    let mut v2 = root.next(2);
    v2.revoked.push(k10);
    let auth = Authority {
        root: &v2,
        further: &all,
    };
    assert_eq!(
        auth.authorize(&k10, "acme/echo", 1),
        Err(AuthorityError::Revoked(k10))
    );
    assert_eq!(
        auth.authorize(&k11, "acme/echo", 1),
        Err(AuthorityError::Revoked(k10))
    );
    // A key never delegated to.
    let stranger = VendorKey::of(&key(20));
    assert_eq!(
        auth.authorize(&stranger, "acme/echo", 1),
        Err(AuthorityError::NotDelegated(stranger))
    );
}

#[test]
fn delegation_statements_verify_strictly() {
    let signed = further(10, 11, &["acme/echo"], 900);
    assert_eq!(
        SignedDelegation::from_hex(&signed.to_hex()).unwrap(),
        signed
    );
    let mut forged = signed.clone();
    forged.signature = sign(&key(11), DELEGATION_DOMAIN, &forged.bytes);
    assert!(matches!(
        forged.verify(),
        Err(DelegationError::Verify(VerifyError::BadSignature))
    ));
    let to_self = further(10, 10, &["acme/echo"], 900);
    assert!(matches!(
        to_self.verify(),
        Err(DelegationError::SelfDelegation(_))
    ));
}
