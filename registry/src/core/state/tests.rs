//! The state machine alone, with time and ids chosen here: what each change plans, what
//! applying it does, and the restart rule, all without a store or a clock.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::core::catalog::tests::manifest;
use crate::store::{LeaseRow, Removal, StoredLease, StoredMeta};
use courier_protocol::{KeyStatement, LeaseFilter, ServiceQuery, SignedManifest, SigningKey};

pub(super) const WALL: u64 = 1_764_000_000_000;
const ECHO: &str = "courier:echo/echo@0.1.0";

pub(super) fn config() -> StateConfig {
    StateConfig {
        policy: LeasePolicy {
            min_ttl_ms: 100,
            max_ttl_ms: 60_000,
            grace_ms: 2_000,
        },
        event_ring: 64,
        seq_block: 1024,
        mirror_grace_ms: 5_000,
    }
}

/// A state with event numbers reserved, as a start leaves it.
fn started() -> RegistryState {
    let (mut st, restart, _) = Restorer::new(config(), WALL, StoredMeta::default())
        .unwrap()
        .finish(Vec::new());
    st.apply(Millis(0), restart);
    st
}

pub(super) fn signing(seed: u8) -> (SigningKey, VendorKey) {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let vendor = VendorKey::of(&key);
    (key, vendor)
}

/// A signed echo manifest of `name` by `key`.
pub(super) fn echo(key: &SigningKey, name: &str) -> (SignedManifest, courier_protocol::Manifest) {
    let mut m = manifest(name, 0, "1.0.0", &[(ECHO, &["say"])]);
    m.vendor_key = VendorKey::of(key);
    (SignedManifest::sign(&m, key), m)
}

pub(super) fn lease(n: u8) -> LeaseId {
    LeaseId([n; 16])
}

fn register(
    st: &mut RegistryState,
    now: u64,
    id: u8,
    key: &SigningKey,
    name: &str,
    ttl: u64,
) -> LeaseGrant {
    let (signed, m) = echo(key, name);
    let planned = st
        .plan_register(Millis(now), lease(id), &VendorKey::of(key), signed, m, ttl)
        .unwrap();
    st.apply(Millis(now), planned).unwrap()
}

fn found(st: &RegistryState, now: u64) -> Vec<LeaseId> {
    let q = PreparedQuery::new(
        &ServiceQuery {
            interface: "courier:echo/echo".into(),
            ..Default::default()
        },
        100,
    )
    .unwrap();
    st.find(Millis(now), &q)
        .into_iter()
        .map(|m| m.lease)
        .collect()
}

fn kinds_since(st: &RegistryState, seq: u64) -> Vec<EventKind> {
    st.events().records_from(seq).map(|r| r.kind).collect()
}

#[test]
fn a_registration_is_planned_as_a_batch_and_changes_nothing_until_applied() {
    let mut st = started();
    let (key, vendor) = signing(1);
    let (signed, m) = echo(&key, "acme/echo");
    let planned = st
        .plan_register(Millis(10), lease(1), &vendor, signed.clone(), m, 999_999)
        .unwrap();
    let batch = planned.batch();
    assert_eq!(batch.registrations, vec![(lease(1), signed)]);
    assert_eq!(
        batch.leases,
        vec![(
            lease(1),
            LeaseRow {
                expires_at_ms: WALL + 10 + 60_000,
                ttl_ms: 60_000,
                renewals: 0,
                in_grace: false
            }
        )]
    );
    assert_eq!(batch.names, vec![("acme/echo".to_string(), vendor)]);
    assert!(found(&st, 10).is_empty(), "nothing applied yet");
    let seq = st.events().next_seq();
    let grant = st.apply(Millis(10), planned).unwrap();
    assert_eq!(
        (grant.lease, grant.ttl_ms, grant.replaced),
        (lease(1), 60_000, None)
    );
    assert_eq!(found(&st, 10), vec![lease(1)]);
    assert_eq!(kinds_since(&st, seq), vec![EventKind::Registered]);
    assert_eq!(st.next_deadline(), Some(Millis(60_010)));
}

#[test]
fn registering_again_replaces_through_the_one_way_out() {
    let mut st = started();
    let (key, _) = signing(1);
    register(&mut st, 0, 1, &key, "acme/echo", 1_000);
    let seq = st.events().next_seq();
    let (signed, m) = echo(&key, "acme/echo");
    let planned = st
        .plan_register(Millis(5), lease(2), &VendorKey::of(&key), signed, m, 1_000)
        .unwrap();
    assert_eq!(planned.batch().delete, vec![(lease(1), Removal::Replaced)]);
    assert!(
        planned.batch().names.is_empty(),
        "the name is owned already"
    );
    let grant = st.apply(Millis(5), planned).unwrap();
    assert_eq!(grant.replaced, Some(lease(1)));
    assert_eq!(
        kinds_since(&st, seq),
        vec![EventKind::Replaced, EventKind::Registered]
    );
    assert_eq!(found(&st, 5), vec![lease(2)]);
    assert_eq!(st.counts().0, 1, "the replaced lease left the table");
}

#[test]
fn another_key_cannot_take_a_name_nor_renew_nor_cancel() {
    let mut st = started();
    let ((acme, _), (other, other_v)) = (signing(1), signing(2));
    register(&mut st, 0, 1, &acme, "acme/echo", 1_000);
    let (signed, m) = echo(&other, "acme/echo");
    assert!(matches!(
        st.plan_register(Millis(1), lease(2), &other_v, signed, m, 1_000),
        Err(crate::errors::RegisterError::Catalog(_))
    ));
    assert!(matches!(
        st.renew(Millis(1), &other_v, lease(1), 1_000),
        Err(LeaseError::NotOwner(_))
    ));
    assert!(matches!(
        st.plan_cancel(Millis(1), &other_v, lease(1)),
        Err(LeaseError::NotOwner(_))
    ));
}

#[test]
fn renewal_works_in_memory_and_marks_the_lease_for_the_next_flush() {
    let mut st = started();
    let (key, vendor) = signing(1);
    register(&mut st, 0, 1, &key, "acme/echo", 1_000);
    let grant = st.renew(Millis(900), &vendor, lease(1), 5_000).unwrap();
    assert_eq!(grant.ttl_ms, 5_000);
    assert_eq!(st.next_deadline(), Some(Millis(5_900)));
    let flush = st.plan_flush(Millis(950), 5_000).unwrap();
    let row = flush.batch().leases[0];
    assert_eq!(row.0, lease(1));
    assert_eq!((row.1.expires_at_ms, row.1.renewals), (WALL + 5_900, 1));
    assert_eq!(flush.batch().last_alive_ms, Some(WALL + 950));
    // A failed commit keeps the work for the next flush.
    st.abandon(flush);
    let again = st.plan_flush(Millis(960), 5_000).unwrap();
    assert_eq!(again.batch().leases.len(), 1);
    assert!(st.apply(Millis(960), again).committed);
    assert!(
        st.plan_flush(Millis(970), 5_000).is_none(),
        "nothing new, recent"
    );
    assert!(
        st.plan_flush(Millis(5_960), 5_000).is_some(),
        "stale: alive again"
    );
    // Past its deadline a lease is dead for renewals at once, before it is collected.
    assert!(matches!(
        st.renew(Millis(5_900), &vendor, lease(1), 1_000),
        Err(LeaseError::Unknown(_))
    ));
}

#[test]
fn expiry_collects_due_leases_and_queues_their_deletion() {
    let mut st = started();
    let (key, _) = signing(1);
    register(&mut st, 0, 1, &key, "acme/a", 100);
    register(&mut st, 0, 2, &key, "acme/b", 200);
    register(&mut st, 0, 3, &key, "acme/c", 60_000);
    assert_eq!(found(&st, 150), vec![lease(3), lease(2)]);
    let seq = st.events().next_seq();
    assert_eq!(st.expire(Millis(99)).unwrap(), Vec::<LeaseId>::new());
    assert_eq!(st.expire(Millis(200)).unwrap(), vec![lease(1), lease(2)]);
    assert_eq!(
        kinds_since(&st, seq),
        vec![EventKind::Expired, EventKind::Expired]
    );
    let flush = st.plan_flush(Millis(201), 5_000).unwrap();
    assert_eq!(
        flush.batch().delete,
        vec![(lease(1), Removal::Expired), (lease(2), Removal::Expired)]
    );
}

#[test]
fn expiry_in_slices_gives_each_lease_its_event_in_order_and_spares_a_renewal() {
    let mut st = started();
    let (key, vendor) = signing(1);
    for n in 1..=5 {
        register(&mut st, 0, n, &key, &format!("acme/s{n}"), 100);
    }
    register(&mut st, 0, 6, &key, "acme/late", 300);
    let seq = st.events().next_seq();
    assert_eq!(
        st.expire_at_most(Millis(100), 2).unwrap(),
        vec![lease(1), lease(2)]
    );
    assert!(st.is_due(Millis(100)));
    // Between slices: the lease due later is renewed; the due ones are dead to renewals.
    st.renew(Millis(150), &vendor, lease(6), 1_000).unwrap();
    assert!(matches!(
        st.renew(Millis(150), &vendor, lease(3), 1_000),
        Err(LeaseError::Unknown(_))
    ));
    assert_eq!(found(&st, 150), vec![lease(6)]);
    // The next slices (at 300, past the renewed lease's old deadline) take the rest.
    assert_eq!(
        st.expire_at_most(Millis(300), 2).unwrap(),
        vec![lease(3), lease(4)]
    );
    assert_eq!(st.expire_at_most(Millis(300), 2).unwrap(), vec![lease(5)]);
    assert!(!st.is_due(Millis(300)));
    assert_eq!(
        st.expire_at_most(Millis(300), 2).unwrap(),
        Vec::<LeaseId>::new()
    );
    assert_eq!(found(&st, 300), vec![lease(6)]);
    // One event each, in deadline order, with the renewal where it happened.
    let events: Vec<_> = st
        .events()
        .records_from(seq)
        .map(|r| (r.kind, r.reg.lease))
        .collect();
    assert_eq!(
        events,
        vec![
            (EventKind::Expired, lease(1)),
            (EventKind::Expired, lease(2)),
            (EventKind::Renewed, lease(6)),
            (EventKind::Expired, lease(3)),
            (EventKind::Expired, lease(4)),
            (EventKind::Expired, lease(5)),
        ]
    );
    // One flush deletes every slice's leases.
    let flush = st.plan_flush(Millis(301), 5_000).unwrap();
    assert_eq!(
        flush.batch().delete,
        (1..=5)
            .map(|i| (lease(i), Removal::Expired))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_cancellation_that_finds_its_lease_expired_reports_it_gone() {
    let mut st = started();
    let (key, vendor) = signing(1);
    register(&mut st, 0, 1, &key, "acme/echo", 100);
    let planned = st.plan_cancel(Millis(50), &vendor, lease(1)).unwrap();
    assert_eq!(planned.batch().delete, vec![(lease(1), Removal::Cancelled)]);
    // The lease ran out while the batch was being committed.
    let seq = st.events().next_seq();
    assert!(matches!(
        st.apply(Millis(150), planned),
        Err(LeaseError::Unknown(_))
    ));
    assert_eq!(kinds_since(&st, seq), vec![EventKind::Expired]);
    assert_eq!(st.counts(), (0, 0, 0));
}

#[test]
fn a_revocation_retires_every_registration_of_the_key() {
    let mut st = started();
    let ((acme, acme_v), (other, _)) = (signing(1), signing(2));
    register(&mut st, 0, 1, &acme, "acme/a", 1_000);
    register(&mut st, 0, 2, &acme, "acme/b", 1_000);
    register(&mut st, 0, 3, &other, "other/c", 1_000);
    let statement = KeyStatement::revoke(acme_v, WALL);
    let planned = st
        .plan_key_change(statement.clone(), None)
        .unwrap()
        .unwrap();
    let mut deleted = planned.batch().delete.clone();
    deleted.sort_by_key(|(l, _)| *l);
    assert_eq!(
        deleted,
        vec![(lease(1), Removal::Revoked), (lease(2), Removal::Revoked)]
    );
    let seq = st.events().next_seq();
    st.apply(Millis(1), planned);
    assert_eq!(
        kinds_since(&st, seq),
        vec![EventKind::Revoked, EventKind::Revoked]
    );
    assert_eq!(found(&st, 1), vec![lease(3)]);
    assert!(st.key_status(&acme_v).1);
    // The same revocation again changes nothing.
    assert!(st.plan_key_change(statement, None).unwrap().is_none());
    // A revoked key cannot register.
    let (signed, m) = echo(&acme, "acme/a");
    assert!(
        st.plan_register(Millis(2), lease(4), &acme_v, signed, m, 100)
            .is_err()
    );
}

#[test]
fn in_memory_changes_refuse_rather_than_number_events_past_the_reserved_mark() {
    // Nothing reserved: an offline open, before any change committed a reservation.
    let mut st = RegistryState::new(config(), WALL, 1);
    let (key, vendor) = signing(1);
    let (signed, m) = echo(&key, "acme/echo");
    let planned = st
        .plan_register(Millis(0), lease(1), &vendor, signed, m, 100)
        .unwrap();
    let mark = planned.batch().seq_reserved.unwrap();
    assert!(
        mark >= 1024,
        "a committed change reserves numbers for itself and more"
    );
    st.apply(Millis(0), planned).unwrap();
    assert_eq!(st.events().reserved(), mark);
    // Use the numbers up: renewals refuse, and so does an expiry, until a reservation.
    while st.events().headroom() > 0 {
        st.renew(Millis(1), &vendor, lease(1), 100).unwrap();
    }
    assert!(matches!(
        st.renew(Millis(1), &vendor, lease(1), 100),
        Err(LeaseError::NoHeadroom)
    ));
    assert_eq!(st.expire(Millis(500)), Err(NoHeadroom));
    let reserve = st.plan_reserve(1).unwrap();
    st.apply(Millis(2), reserve);
    assert_eq!(st.expire(Millis(500)).unwrap(), vec![lease(1)]);
}

#[test]
fn the_restart_rule_keeps_time_left_graces_once_and_drops_the_dead() {
    let (key, vendor) = signing(1);
    let row = |expires_at_ms, in_grace| LeaseRow {
        expires_at_ms,
        ttl_ms: 10_000,
        renewals: 3,
        in_grace,
    };
    let stored = |id: u8, name: &str, row| StoredLease {
        lease: lease(id),
        manifest: echo(&key, name).0,
        row,
    };
    let meta = StoredMeta {
        seq_reserved: 5_000,
        last_alive_ms: WALL - 1_000,
        names: vec![("acme/a".into(), vendor)],
        ..Default::default()
    };
    let mut restorer = Restorer::new(config(), WALL, meta).unwrap();
    // Ahead: keeps its 4 s exactly. Ran out after the last write: a grace of 2 s, written
    // down. Already in grace: only what is left (500 ms). Dead before the last write:
    // dropped. A stepped-back clock's 99 s left: cut to the lease's 10 s.
    restorer.restore(stored(1, "acme/a", row(WALL + 4_000, false)));
    restorer.restore(stored(2, "acme/b", row(WALL - 500, false)));
    restorer.restore(stored(3, "acme/c", row(WALL + 500, true)));
    restorer.restore(stored(4, "acme/d", row(WALL - 5_000, false)));
    restorer.restore(stored(5, "acme/e", row(WALL + 99_000, false)));
    let (mut st, restart, counts) = restorer.finish(vec![lease(9)]);
    assert_eq!(
        counts,
        RestartCounts {
            kept: 2,
            graced: 1,
            still_in_grace: 1,
            dropped: 2,
            start_seq: 5_000
        }
    );
    let batch = restart.batch();
    assert_eq!(
        batch.leases,
        vec![(lease(2), row(WALL + 2_000, true))],
        "the grace is written down"
    );
    assert_eq!(
        batch.delete,
        vec![(lease(4), Removal::Expired), (lease(9), Removal::Expired)]
    );
    assert_eq!(batch.last_alive_ms, Some(WALL));
    assert_eq!(batch.seq_reserved, Some(5_000 + 1024));
    assert_eq!(
        st.events().headroom(),
        0,
        "nothing reserved until the batch is committed"
    );
    st.apply(Millis(0), restart);
    assert_eq!(st.events().next_seq(), 5_000);
    let rows = st
        .leases_page(Millis(0), &LeaseFilter::default(), None, 100)
        .rows;
    let left: Vec<(LeaseId, u64, bool)> = rows
        .iter()
        .map(|r| (r.lease, r.remaining_ms, r.in_grace))
        .collect();
    assert_eq!(
        left,
        vec![
            (lease(1), 4_000, false),
            (lease(2), 2_000, true),
            (lease(3), 500, true),
            (lease(5), 10_000, false)
        ]
    );
    // A renewal ends the grace.
    st.renew(Millis(10), &vendor, lease(2), 1_000).unwrap();
    let rows = st
        .leases_page(Millis(10), &LeaseFilter::default(), None, 100)
        .rows;
    assert!(!rows.iter().any(|r| r.lease == lease(2) && r.in_grace));
}

#[test]
fn a_stored_statement_that_does_not_verify_stops_the_start() {
    let ((acme, acme_v), (_, other_v)) = (signing(1), signing(2));
    let signed =
        courier_protocol::SignedKeyStatement::sign(&KeyStatement::revoke(acme_v, 1), &acme);
    let meta = StoredMeta {
        revocations: vec![(other_v, Some(signed))],
        ..Default::default()
    };
    let err = Restorer::new(config(), WALL, meta).unwrap_err();
    assert_eq!(err.key, other_v);
}

#[test]
fn pages_of_the_lease_table_follow_name_then_lease() {
    let mut st = started();
    let (key, _) = signing(1);
    for (id, name) in [(4, "b/x"), (1, "a/x"), (3, "c/x"), (2, "a/y")] {
        register(&mut st, 0, id, &key, name, 10_000);
    }
    let first = st.leases_page(Millis(0), &LeaseFilter::default(), None, 2);
    let names: Vec<&str> = first.rows.iter().map(|r| &*r.name).collect();
    assert_eq!(names, vec!["a/x", "a/y"]);
    let next = first.next.clone().unwrap();
    let second = st.leases_page(Millis(0), &LeaseFilter::default(), Some(&next), 2);
    let names: Vec<&str> = second.rows.iter().map(|r| &*r.name).collect();
    assert_eq!(names, vec!["b/x", "c/x"]);
    assert!(second.next.is_none());
    let manifests = vec![Some(echo(&key, "b/x").0), None];
    let page = second.into_page(manifests);
    assert_eq!(
        page.leases.len(),
        1,
        "a registration gone since is not listed"
    );
}

fn stored(id: u8, key: &SigningKey, name: &str) -> StoredLease {
    StoredLease {
        lease: lease(id),
        manifest: echo(key, name).0,
        row: LeaseRow {
            expires_at_ms: 0,
            ttl_ms: 10_000,
            renewals: 0,
            in_grace: false,
        },
    }
}

#[test]
fn a_standby_applies_the_writers_changes_and_a_replay_changes_nothing() {
    let mut st = started();
    let (k, _) = signing(1);
    assert!(st.follow_put(Millis(0), stored(1, &k, "acme/a"), 5_000, "w"));
    assert!(st.follow_put(Millis(100), stored(1, &k, "acme/a"), 4_900, "w"));
    assert_eq!(found(&st, 200), [lease(1)]);
    assert_eq!(
        st.counts().1,
        1,
        "a registration applied twice is there once"
    );
    // Its time runs out by the writer's clock: it stops matching, and a standby never
    // expires it itself.
    assert!(found(&st, 5_000).is_empty());
    assert!(st.table.get(&lease(1)).is_some());
    // A flushed renewal moves its end.
    let row = stored(1, &k, "acme/a").row;
    assert!(st.follow_row(Millis(5_100), lease(1), &row, 10_000, "b"));
    assert_eq!(found(&st, 14_000), [lease(1)]);
    assert_eq!(
        st.holder(&lease(1)).map(|h| &**h),
        Some("b"),
        "renewed at b"
    );
    // The same key registers the name again: the new registration replaces the old one
    // even before the writer's removal of the old one arrives.
    assert!(st.follow_put(Millis(14_000), stored(2, &k, "acme/a"), 10_000, "w"));
    assert_eq!(found(&st, 14_001), [lease(2)]);
    assert!(!st.follow_delete(&lease(1)), "already gone");
    assert!(st.follow_delete(&lease(2)));
    assert!(found(&st, 14_002).is_empty());
    assert!(
        !st.follow_row(Millis(14_003), lease(3), &row, 10_000, "b"),
        "unknown lease"
    );
    assert_eq!(st.counts(), (0, 0, st.counts().2));
    assert!(
        st.holder(&lease(1)).is_none(),
        "a lease gone is held by nobody"
    );
}

#[test]
fn a_takeover_gives_a_lease_with_less_than_a_grace_left_the_grace() {
    let (key, _) = signing(1);
    let row = |expires_at_ms| LeaseRow {
        expires_at_ms,
        ttl_ms: 10_000,
        renewals: 1,
        in_grace: false,
    };
    let meta = StoredMeta {
        last_alive_ms: WALL - 100,
        ..Default::default()
    };
    let mut restorer = Restorer::new(config(), WALL, meta).unwrap().takeover();
    // 300 ms left (the grace is 2 s): the grace, written down. 4 s left: kept as it is.
    restorer.restore(StoredLease {
        lease: lease(1),
        manifest: echo(&key, "acme/a").0,
        row: row(WALL + 300),
    });
    restorer.restore(StoredLease {
        lease: lease(2),
        manifest: echo(&key, "acme/b").0,
        row: row(WALL + 4_000),
    });
    let (_, restart, counts) = restorer.finish(Vec::new());
    assert_eq!((counts.kept, counts.graced), (1, 1));
    assert_eq!(restart.batch().leases[0].0, lease(1));
    assert_eq!(restart.batch().leases[0].1.expires_at_ms, WALL + 2_000);
}

#[test]
fn a_standby_flush_writes_only_the_rows_it_renewed() {
    let mut st = started();
    let (key, vendor) = signing(1);
    register(&mut st, 0, 1, &key, "acme/echo", 1_000);
    assert!(st.plan_held_flush().is_none(), "nothing renewed here");
    st.set_here("s");
    st.renew(Millis(400), &vendor, lease(1), 1_000).unwrap();
    assert_eq!(st.holder(&lease(1)).map(|h| &**h), Some("s"), "held here");
    let flush = st.plan_held_flush().unwrap();
    assert!(flush.batch().is_lease_rows_only());
    assert_eq!(flush.batch().leases[0].1.expires_at_ms, WALL + 1_400);
    assert_eq!(flush.batch().last_alive_ms, None, "no marks");
    // A failed write keeps the row for the next flush.
    st.abandon(flush);
    assert_eq!(st.plan_held_flush().unwrap().batch().leases.len(), 1);
}

#[test]
fn a_renewal_taken_elsewhere_only_ever_moves_a_deadline_later() {
    let mut st = started();
    let (key, _) = signing(1);
    register(&mut st, 0, 1, &key, "acme/echo", 1_000);
    let next = st.events().next_seq();
    let row = |expires: u64| LeaseRow {
        expires_at_ms: WALL + expires,
        ttl_ms: 1_000,
        renewals: 3,
        in_grace: false,
    };
    assert!(st.renewed_elsewhere(Millis(500), lease(1), &row(1_500), "b"));
    assert_eq!(st.next_deadline(), Some(Millis(1_500)));
    assert_eq!(st.events().next_seq(), next + 1, "a Renewed event");
    assert_eq!(st.holder(&lease(1)).map(|h| &**h), Some("b"));
    assert!(
        !st.renewed_elsewhere(Millis(600), lease(1), &row(1_200), "c"),
        "an older row changes nothing"
    );
    assert_eq!(st.next_deadline(), Some(Millis(1_500)));
    assert!(
        !st.renewed_elsewhere(Millis(600), lease(9), &row(9_000), "c"),
        "unknown lease"
    );
    assert!(
        st.plan_flush(Millis(700), 60_000)
            .is_none_or(|f| f.batch().leases.is_empty()),
        "the row is in the store already"
    );
    assert_eq!(
        st.holder(&lease(1)).map(|h| &**h),
        Some("b"),
        "b renewed last"
    );
    // Renewed here, the writer holds it again.
    let vendor = VendorKey::of(&key);
    st.renew(Millis(700), &vendor, lease(1), 1_000).unwrap();
    assert!(st.holder(&lease(1)).is_none());
    // Past the moved deadline the lease expires as any other.
    assert_eq!(st.expire(Millis(1_700)).unwrap(), vec![lease(1)]);
}

#[test]
fn given_events_number_nothing_here_and_describe_what_already_left() {
    let mut st = started();
    st.number_events_from_store(1_000);
    let (key, vendor) = signing(1);
    register(&mut st, 0, 1, &key, "acme/echo", 1_000);
    st.renew(Millis(10), &vendor, lease(1), 1_000).unwrap();
    assert!(st.events().is_empty(), "the writer numbers none of its own");
    let given = |seq, kind| StoreEvent {
        seq,
        kind,
        at_ms: WALL,
        lease: lease(1),
        manifest: None,
    };
    assert!(st.given_event(given(1_000, EventKind::Registered)));
    assert!(
        !st.given_event(given(1_000, EventKind::Renewed)),
        "numbered"
    );
    // Expired here before the history delivers the renewal written before it: the
    // renewal is still described, though it carries no manifest.
    assert_eq!(st.expire(Millis(2_000)).unwrap(), vec![lease(1)]);
    assert!(st.given_event(given(1_005, EventKind::Renewed)));
    let (batch, _) = st.events_since(1_000, None, 10);
    let names: Vec<&str> = batch.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["acme/echo", "acme/echo"]);
    // Unknown everywhere and without a manifest: not kept.
    let other = StoreEvent {
        lease: lease(7),
        ..given(1_010, EventKind::Renewed)
    };
    assert!(!st.given_event(other));
}
