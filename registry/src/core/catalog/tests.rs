//! The catalog's unit tests: ownership, replacement, buckets, compact layout.
#![allow(clippy::unwrap_used)]
use super::*;
use courier_protocol::{ContentHash, Export, SpkiPin};

pub(crate) fn manifest(
    name: &str,
    vendor: u8,
    version: &str,
    exports: &[(&str, &[&str])],
) -> Manifest {
    Manifest {
        name: name.into(),
        version: version.into(),
        exports: exports
            .iter()
            .map(|(i, fs)| Export {
                interface: (*i).into(),
                functions: fs.iter().map(|f| f.to_string()).collect(),
            })
            .collect(),
        imports: vec![],
        attributes: [("region".to_string(), "eu".to_string())].into(),
        endpoints: vec!["127.0.0.1:1".into()],
        provider_pin: SpkiPin([0; 32]),
        issued_at_ms: 0,
        not_after_ms: u64::MAX,
        component_hash: ContentHash([0; 32]),
        component_size: 1,
        vendor_key: VendorKey([vendor; 32]),
    }
}

#[test]
fn registration_and_slot_stay_compact() {
    // Arc counts (16) + the registration: 120 bytes, a 128-byte malloc chunk.
    assert_eq!(std::mem::size_of::<Registration>() + 16, 120);
    assert_eq!(std::mem::size_of::<Slot>(), 32);
}

#[test]
fn index_by_interface_and_remove_releases_strings() {
    let mut c = Catalog::new();
    let m = manifest(
        "acme/echo",
        1,
        "1.0.0",
        &[("courier:echo/echo@0.1.0", &["say"])],
    );
    c.insert(LeaseId([1; 16]), &m, Millis(10)).unwrap();
    let m2 = manifest(
        "acme/kv",
        1,
        "1.0.0",
        &[("courier:kv/store@0.1.0", &["get", "set"])],
    );
    let reg = c.insert(LeaseId([2; 16]), &m2, Millis(10)).unwrap();
    assert_eq!(c.deadline(&LeaseId([2; 16])), Some(Millis(10)));
    assert_eq!(
        reg.interface_names(),
        vec!["courier:kv/store@0.1.0".to_string()]
    );
    assert!(reg.first.is("courier:kv/store") && reg.first.is("courier:kv/store@0.1.0"));
    assert!(!reg.first.is("courier:kv/store@0.1.1"));
    drop(reg);
    assert_eq!(
        c.by_interface("courier:echo/echo").unwrap().1.slots.len(),
        1
    );
    assert_eq!(c.by_interface("courier:kv/store").unwrap().1.slots.len(), 1);
    assert!(c.by_interface("courier:kv/other").is_none());
    assert_eq!(c.interfaces(), 2);
    assert!(c.interned("get").is_some());
    c.remove(&LeaseId([2; 16])).unwrap();
    c.sweep();
    assert!(c.by_interface("courier:kv/store").is_none());
    assert!(
        c.interned("get").is_none(),
        "strings only kv used are released"
    );
    assert!(c.interned("say").is_some());
    assert_eq!(c.len(), 1);
    // Name ownership outlives the registration.
    assert_eq!(c.owner("acme/kv"), Some(VendorKey([1; 32])));
}

#[test]
fn ownership_and_replacement() {
    let mut c = Catalog::new();
    let a = VendorKey([1; 32]);
    let b = VendorKey([2; 32]);
    assert_eq!(
        c.admit("acme/echo", &a).unwrap(),
        Admission {
            claims_name: true,
            replaces: None
        }
    );
    let m = manifest(
        "acme/echo",
        1,
        "1.0.0",
        &[("courier:echo/echo@0.1.0", &["say"])],
    );
    c.insert(LeaseId([1; 16]), &m, Millis(10)).unwrap();
    assert_eq!(
        c.admit("acme/echo", &a).unwrap(),
        Admission {
            claims_name: false,
            replaces: Some(LeaseId([1; 16]))
        }
    );
    assert!(matches!(
        c.admit("acme/echo", &b),
        Err(CatalogError::NotOwner { .. })
    ));
    c.grant("acme/echo", &b);
    assert_eq!(
        c.admit("acme/echo", &b).unwrap(),
        Admission {
            claims_name: false,
            replaces: None
        }
    );
    assert_eq!(c.owner("acme/echo"), Some(a));
    c.grant("fresh/name", &b);
    assert_eq!(c.owner("fresh/name"), Some(b));
}

#[test]
fn slots_follow_renewals_and_removals() {
    let mut c = Catalog::new();
    for n in 1..=3u8 {
        let m = manifest(
            &format!("acme/s{n}"),
            1,
            "1.0.0",
            &[("courier:echo/echo@0.1.0", &["say"])],
        );
        c.insert(LeaseId([n; 16]), &m, Millis(u64::from(n)))
            .unwrap();
    }
    // Removing the first moves the last into its place; its recorded slot follows.
    c.remove(&LeaseId([1; 16])).unwrap();
    c.set_deadline(&LeaseId([3; 16]), Millis(30));
    c.set_deadline(&LeaseId([2; 16]), Millis(20));
    let (_, b) = c.by_interface("courier:echo/echo").unwrap();
    let mut got: Vec<(u8, u64)> = b
        .slots
        .iter()
        .map(|s| (s.reg.lease.0[0], s.deadline.0))
        .collect();
    got.sort();
    assert_eq!(got, vec![(2, 20), (3, 30)]);
    assert_eq!(c.deadline(&LeaseId([3; 16])), Some(Millis(30)));
    assert_eq!(b.unpacked, 0);
    let pre = manifest(
        "acme/pre",
        1,
        "1.0.0-rc.1",
        &[("courier:echo/echo@0.1.0", &["say"])],
    );
    c.insert(LeaseId([9; 16]), &pre, Millis(5)).unwrap();
    assert_eq!(c.by_interface("courier:echo/echo").unwrap().1.unpacked, 1);
    c.remove(&LeaseId([9; 16])).unwrap();
    assert_eq!(c.by_interface("courier:echo/echo").unwrap().1.unpacked, 0);
}

#[test]
fn compact_layouts() {
    // 120 + 16 bytes of Arc counts: one 144-byte allocation per registration.
    assert!(std::mem::size_of::<Registration>() <= 120);
    assert!(std::mem::size_of::<Slot>() <= 40);
    // A bare registration pointer or a boxed record: a name slot is 16 bytes.
    assert!(std::mem::size_of::<names::NameEntry>() <= 16);
    assert!(std::mem::size_of::<names::Record>() <= 40);
}

#[test]
fn a_name_is_a_bare_registration_only_while_nothing_else_is_known() {
    let mut c = Catalog::new();
    let key = |k: u8| VendorKey([k; 32]);
    let bare =
        |c: &Catalog, name: &str| matches!(c.names.get(name), Some(names::NameEntry::Live(_)));
    let echo = |vendor: u8| {
        manifest(
            "acme/echo",
            vendor,
            "1.0.0",
            &[("courier:echo/echo@0.1.0", &["say"])],
        )
    };
    let (l1, l2, l3) = (LeaseId([1; 16]), LeaseId([2; 16]), LeaseId([3; 16]));
    c.insert(l1, &echo(1), Millis(10)).unwrap();
    assert!(bare(&c, "acme/echo"));
    assert_eq!(c.admit("acme/echo", &key(1)).unwrap().replaces, Some(l1));

    // Its registration gone, the name is a record that remembers its owner.
    c.remove(&l1).unwrap();
    assert!(!bare(&c, "acme/echo"));
    assert_eq!(c.owner("acme/echo"), Some(key(1)));
    assert!(c.admit("acme/echo", &key(2)).is_err());
    assert_eq!(c.admit("acme/echo", &key(1)).unwrap().replaces, None);

    // Registered again, bare again, sharing the name's text.
    c.insert(l2, &echo(1), Millis(10)).unwrap();
    assert!(bare(&c, "acme/echo"));
    assert!(Arc::ptr_eq(
        &c.get(&l2).unwrap().name,
        c.names.get("acme/echo").unwrap().name()
    ));

    // A grant makes a record that keeps the owner's registration.
    c.grant("acme/echo", &key(2));
    assert!(!bare(&c, "acme/echo"));
    assert_eq!(c.admit("acme/echo", &key(1)).unwrap().replaces, Some(l2));
    let a = c.admit("acme/echo", &key(2)).unwrap();
    assert_eq!((a.claims_name, a.replaces), (false, None));
    c.insert(l3, &echo(2), Millis(10)).unwrap();
    assert_eq!(c.admit("acme/echo", &key(2)).unwrap().replaces, Some(l3));

    // A bare name of another owner stays bare through a rotation it has no part in.
    let other = manifest(
        "other/svc",
        4,
        "1.0.0",
        &[("courier:echo/echo@0.1.0", &["say"])],
    );
    c.insert(LeaseId([4; 16]), &other, Millis(10)).unwrap();
    c.transfer(&key(1), &key(3));
    assert!(bare(&c, "other/svc"));
    assert_eq!(c.owner("other/svc"), Some(key(4)));

    // The rotated name is the new key's; the registration made under the old key stays
    // the owner's, and the grant and the granted key's registration are untouched.
    assert_eq!(c.owner("acme/echo"), Some(key(3)));
    assert_eq!(c.admit("acme/echo", &key(3)).unwrap().replaces, Some(l2));
    assert!(c.admit("acme/echo", &key(1)).is_err());
    assert_eq!(c.admit("acme/echo", &key(2)).unwrap().replaces, Some(l3));

    // A bare name whose owner rotates becomes a record under the new key.
    c.transfer(&key(4), &key(5));
    assert!(!bare(&c, "other/svc"));
    assert_eq!(c.owner("other/svc"), Some(key(5)));
    assert_eq!(
        c.admit("other/svc", &key(5)).unwrap().replaces,
        Some(LeaseId([4; 16]))
    );
}

#[test]
fn a_rotation_leaves_the_new_keys_grants_elsewhere_as_the_store_does() {
    let mut c = Catalog::new();
    let key = |k: u8| VendorKey([k; 32]);
    // Key 3 was granted a name of key 1's; key 2 rotates to key 3.
    c.claim("acme/other", &key(1));
    c.grant("acme/other", &key(3));
    c.claim("acme/mine", &key(2));
    c.grant("acme/mine", &key(3));
    c.transfer(&key(2), &key(3));
    // The grant on a name key 2 had no part in stays (the store keeps its row, so a
    // restart would bring it back anyway).
    assert!(c.admit("acme/other", &key(3)).is_ok());
    // The rotated name is key 3's, and its grant to key 3 is moot.
    assert_eq!(c.owner("acme/mine"), Some(key(3)));
    assert!(!c.admit("acme/mine", &key(3)).unwrap().claims_name);
    assert!(c.admit("acme/mine", &key(2)).is_err());
}
