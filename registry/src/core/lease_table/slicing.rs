//! Expiry in slices ([`LeaseTable::expire_at_most`]): a slice never passes its bound, the
//! slices together take every due lease once and in deadline order, and a lease renewed
//! between two slices stays.
#![allow(clippy::unwrap_used)]

use super::*;

const POLICY: LeasePolicy = LeasePolicy {
    min_ttl_ms: 1_000,
    max_ttl_ms: 60_000,
    grace_ms: 11_000,
};

fn id(n: u32) -> LeaseId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    LeaseId(b)
}

/// A table with `n` leases granted at 0 for 5 s (due at 5,000), and one granted at 0 for
/// 8 s (`id(n)`, due at 8,000).
fn storm(n: u32) -> LeaseTable {
    let mut t = LeaseTable::new(POLICY);
    for i in 0..n {
        t.handle(
            Millis(0),
            LeaseOp::Grant {
                id: id(i),
                ttl_ms: 5_000,
            },
        );
    }
    t.handle(
        Millis(0),
        LeaseOp::Grant {
            id: id(n),
            ttl_ms: 8_000,
        },
    );
    t
}

#[test]
fn a_slice_never_passes_its_bound_and_the_slices_take_every_due_lease() {
    let mut t = storm(1_000);
    let mut gone = Vec::new();
    let mut slices = 0;
    loop {
        let slice = t.expire_at_most(Millis(5_000), 64);
        assert!(slice.len() <= 64, "a slice of {}", slice.len());
        if slice.is_empty() {
            break;
        }
        slices += 1;
        gone.extend(slice);
    }
    // 1,000 in slices of 64: 15 full ones and one of 40.
    assert_eq!(slices, 16);
    // Each due lease once, in the order of the deadline index (all due at 5,000: by id).
    assert_eq!(gone, (0..1_000).map(id).collect::<Vec<_>>());
    // The one not due stays, and is next.
    assert_eq!(t.len(), 1);
    assert_eq!(t.next_deadline(), Some(Millis(8_000)));
    assert!(t.expire_at_most(Millis(7_999), 64).is_empty());
    assert_eq!(t.expire_at_most(Millis(8_000), 64), vec![id(1_000)]);
}

#[test]
fn slices_go_earliest_deadline_first_and_stop_at_now() {
    let mut t = LeaseTable::new(POLICY);
    for (n, ttl_ms) in [(1, 3_000), (2, 1_000), (3, 2_000), (4, 9_000)] {
        t.handle(Millis(0), LeaseOp::Grant { id: id(n), ttl_ms });
    }
    assert_eq!(t.expire_at_most(Millis(5_000), 2), vec![id(2), id(3)]);
    assert_eq!(t.expire_at_most(Millis(5_000), 2), vec![id(1)]);
    assert!(t.expire_at_most(Millis(5_000), 2).is_empty());
    // A bound of zero takes nothing.
    assert!(t.expire_at_most(Millis(9_000), 0).is_empty());
    assert_eq!(t.len(), 1);
}

#[test]
fn a_lease_renewed_between_slices_is_not_expired() {
    let mut t = storm(10);
    // The first slice at 5,000 takes 4 of the 10 due leases.
    assert_eq!(t.expire_at_most(Millis(5_000), 4).len(), 4);
    // Before the next slice, the lease due at 8,000 is renewed (still live at 7,000).
    assert!(matches!(
        t.handle(
            Millis(7_000),
            LeaseOp::Renew {
                id: id(10),
                ttl_ms: 5_000
            }
        ),
        LeaseChange::Renewed {
            deadline: Millis(12_000),
            ..
        }
    ));
    // The next slices run at 8,000, the renewed lease's old deadline: they take the six
    // left, and not the renewed one.
    let mut rest = Vec::new();
    loop {
        let slice = t.expire_at_most(Millis(8_000), 4);
        if slice.is_empty() {
            break;
        }
        rest.extend(slice);
    }
    assert_eq!(rest, (4..10).map(id).collect::<Vec<_>>());
    assert_eq!(t.remaining(&id(10), Millis(8_000)), Some(4_000));
    assert_eq!(t.next_deadline(), Some(Millis(12_000)));
}

#[test]
fn a_lease_already_due_cannot_be_renewed_between_slices() {
    let mut t = storm(10);
    assert_eq!(t.expire_at_most(Millis(5_000), 4).len(), 4);
    // A lease left for the next slice is past its deadline: dead for renewals already.
    assert_eq!(
        t.handle(
            Millis(5_001),
            LeaseOp::Renew {
                id: id(7),
                ttl_ms: 5_000
            }
        ),
        LeaseChange::Unknown { id: id(7) }
    );
    assert_eq!(t.remaining(&id(7), Millis(5_001)), None);
    assert_eq!(t.expire_at_most(Millis(5_001), 100).len(), 6);
}
