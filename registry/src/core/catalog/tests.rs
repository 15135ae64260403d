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
    assert!(std::mem::size_of::<NameEntry>() <= 24);
}
