//! A start claims each stored name as its first grant or registration comes back: who
//! owns what afterwards must be exactly what the store says, whatever order the
//! registrations come back in.
#![allow(clippy::unwrap_used)]

use super::tests::{WALL, config, echo, lease, signing};
use super::*;
use crate::store::{LeaseRow, StoredLease, StoredMeta};
use courier_protocol::SigningKey;

/// A stored registration of `name` by `key` under lease `id`, with time left.
fn live(id: u8, key: &SigningKey, name: &str) -> StoredLease {
    StoredLease {
        lease: lease(id),
        manifest: echo(key, name).0,
        row: LeaseRow {
            expires_at_ms: WALL + 5_000,
            ttl_ms: 10_000,
            renewals: 0,
            in_grace: false,
        },
    }
}

#[test]
fn stored_owners_hold_whatever_order_the_registrations_come_back_in() {
    let (k1, v1) = signing(1);
    let (k2, v2) = signing(2);
    let (k3, v3) = signing(3);
    let (_, v4) = signing(4);
    let (_, v5) = signing(5);
    let meta = StoredMeta {
        seq_reserved: 5_000,
        last_alive_ms: WALL - 1_000,
        names: vec![
            ("acme/shared".into(), v1),
            ("acme/moved".into(), v1),
            ("acme/idle".into(), v5),
        ],
        grants: vec![("acme/shared".into(), v2), ("acme/granted".into(), v4)],
        ..Default::default()
    };
    let mut restorer = Restorer::new(config(), WALL, meta).unwrap();
    // The granted key's registration comes back before the owner's.
    restorer.restore(live(1, &k2, "acme/shared"));
    restorer.restore(live(2, &k1, "acme/shared"));
    // A registration by a key that does not own the name (the store says another does).
    restorer.restore(live(3, &k3, "acme/moved"));
    let (st, _, counts) = restorer.finish(Vec::new());
    assert_eq!(counts.kept, 3);

    let c = &st.catalog;
    assert_eq!(c.owner("acme/shared"), Some(v1));
    assert_eq!(
        c.admit("acme/shared", &v1).unwrap().replaces,
        Some(lease(2))
    );
    let granted = c.admit("acme/shared", &v2).unwrap();
    assert_eq!(
        (granted.claims_name, granted.replaces),
        (false, Some(lease(1)))
    );
    assert!(c.admit("acme/shared", &v3).is_err());

    assert_eq!(c.owner("acme/moved"), Some(v1));
    assert!(c.admit("acme/moved", &v3).is_err());

    // A grant of a name nobody owned made its key the owner; a name with no registration
    // kept its stored owner.
    assert_eq!(c.owner("acme/granted"), Some(v4));
    assert_eq!(c.owner("acme/idle"), Some(v5));
    assert!(c.admit("acme/idle", &v1).is_err());
}
