//! The oracle of `registry_state`: a case played on the state machine and on the models,
//! compared after every step.

use super::*;

/// How many steps of each kind took effect in a case (for tests that want to know the
/// random cases they make reach everything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reached {
    /// Registrations committed.
    pub registered: usize,
    /// Renewals granted.
    pub renewed: usize,
    /// Cancellations committed.
    pub cancelled: usize,
    /// Leases collected by expiry.
    pub expired: usize,
    /// Flushes committed.
    pub flushed: usize,
    /// Revocations committed.
    pub revoked: usize,
    /// Commits that failed (and changed nothing).
    pub failed: usize,
    /// Restarts.
    pub restarts: usize,
    /// Operators' actions committed.
    pub operator: usize,
    /// Leases that came back from a restart in a grace period.
    pub graced: usize,
}

/// Plays a case on the state machine and the models, comparing after every step; says how
/// much of it took effect.
pub fn check(case: &Case) -> Reached {
    let mut reached = Reached::default();
    let mut model = Model {
        policy: Some(LeasePolicy {
            min_ttl_ms: u64::from(case.min_ttl.max(1)),
            max_ttl_ms: 60_000,
            grace_ms: u64::from(case.grace),
        }),
        wall: WALL,
        ..Default::default()
    };
    let mut disk = Disk::default();
    let mut st = start(&mut model, &mut disk);
    let query = PreparedQuery::new(
        &ServiceQuery {
            interface: "fuzz:pkg/api".into(),
            limit: 100,
            ..Default::default()
        },
        100,
    )
    .expect("a valid query");
    for (i, step) in case.steps.iter().enumerate() {
        let now = model.now();
        let seq = st.events().next_seq();
        let mut events = 0u64;
        match *step {
            Step::Advance(d) => model.wall += u64::from(d),
            Step::Register(v, name, ttl, fail) => {
                let (v, name) = (v % VENDORS, name % NAMES);
                let (signed, m) = fixtures().manifests[&(v, name)].clone();
                let id = model.fresh_id();
                let planned = st.plan_register(now, id, &vendor(v), signed, m, u64::from(ttl));
                let revoked = model.revoked.contains_key(&v);
                let banned = !revoked && model.bans.contains(&(name, v));
                let draining = !revoked && !banned && model.drains.contains(&name);
                let allowed = !revoked && !banned && !draining && model.may_use(name, v);
                match planned {
                    Err(RegisterError::Key(_)) => assert!(revoked, "step {i}"),
                    Err(RegisterError::Banned { .. }) => assert!(banned, "step {i}"),
                    Err(RegisterError::Draining { .. }) => assert!(draining, "step {i}"),
                    Err(RegisterError::Catalog(_)) => {
                        assert!(!allowed && !revoked && !banned && !draining, "step {i}")
                    }
                    Err(e) => panic!("step {i}: {e}"),
                    Ok(planned) => {
                        assert!(allowed, "step {i}: {step:?} was admitted");
                        let grant = commit!(st, disk, now, planned, fail, reached);
                        if let Some(grant) = grant {
                            let grant = grant.expect("entering a checked manifest");
                            let old = model
                                .leases
                                .iter()
                                .find(|(_, l)| l.name == name && l.vendor == v)
                                .map(|(id, _)| *id);
                            assert_eq!(grant.replaced, old, "step {i}: what it replaced");
                            if let Some(old) = old {
                                model.leases.remove(&old);
                                events += 1;
                            }
                            model.owners.entry(name).or_insert(v);
                            let policy = model.policy();
                            let ttl = u64::from(ttl).clamp(policy.min_ttl_ms, policy.max_ttl_ms);
                            assert_eq!(grant.ttl_ms, ttl, "step {i}");
                            model.leases.insert(
                                id,
                                Lease {
                                    name,
                                    vendor: v,
                                    deadline: model.wall + ttl,
                                    ttl,
                                    renewals: 0,
                                    in_grace: false,
                                },
                            );
                            model.granted.push(id);
                            events += 1;
                            reached.registered += 1;
                        }
                    }
                }
            }
            Step::Renew(v, slot, ttl) => {
                let Some(id) = model.nth_granted(slot) else {
                    continue;
                };
                let v = model.acting(v, &id);
                let headroom = st.events().headroom();
                let got = st.renew(now, &vendor(v), id, u64::from(ttl));
                let want = match model.live(&id).copied() {
                    _ if model.stopped.contains_key(&id) => Err("revoked"),
                    None => Err("unknown"),
                    Some(l) if l.vendor != v || model.revoked.contains_key(&v) => Err("not owner"),
                    Some(l) if model.drains.contains(&l.name) => Err("draining"),
                    Some(_) if headroom == 0 => Err("no headroom"),
                    Some(l) => Ok(l),
                };
                match (got, want) {
                    (Ok(grant), Ok(mut l)) => {
                        let policy = model.policy();
                        l.ttl = u64::from(ttl).clamp(policy.min_ttl_ms, policy.max_ttl_ms);
                        assert_eq!(grant.ttl_ms, l.ttl, "step {i}");
                        l.deadline = model.wall + l.ttl;
                        l.renewals += 1;
                        l.in_grace = false;
                        model.leases.insert(id, l);
                        events += 1;
                        reached.renewed += 1;
                    }
                    (Err(LeaseError::Unknown(_)), Err("unknown"))
                    | (Err(LeaseError::NotOwner(_)), Err("not owner"))
                    | (Err(LeaseError::Revoked { .. }), Err("revoked"))
                    | (Err(LeaseError::Draining { .. }), Err("draining"))
                    | (Err(LeaseError::NoHeadroom), Err("no headroom")) => {}
                    (got, want) => panic!("step {i}: {step:?}: got {got:?}, want {want:?}"),
                }
            }
            Step::Cancel(v, slot, fail) => {
                let Some(id) = model.nth_granted(slot) else {
                    continue;
                };
                let v = model.acting(v, &id);
                let got = st.plan_cancel(now, &vendor(v), id);
                match (got, model.live(&id).copied()) {
                    (Ok(planned), Some(l)) if l.vendor == v && !model.revoked.contains_key(&v) => {
                        if commit!(st, disk, now, planned, fail, reached).is_some() {
                            model.leases.remove(&id);
                            events += 1;
                            reached.cancelled += 1;
                        }
                    }
                    (Err(LeaseError::Unknown(_)), None) => {}
                    (Err(LeaseError::NotOwner(_)), Some(l))
                        if l.vendor != v || model.revoked.contains_key(&v) => {}
                    (got, want) => panic!("step {i}: {step:?}: got {got:?}, want {want:?}"),
                }
            }
            Step::Expire(slice) => {
                let max = slice.map_or(usize::MAX, usize::from);
                let due: Vec<(u64, LeaseId)> = {
                    let mut d: Vec<_> = model
                        .leases
                        .iter()
                        .filter(|(_, l)| l.deadline <= model.wall)
                        .map(|(id, l)| (l.deadline, *id))
                        .collect();
                    d.sort();
                    d.truncate(max);
                    d
                };
                let enough = st.events().headroom() >= st.counts().0 as u64;
                let expired = match slice {
                    None => st.expire(now),
                    Some(_) => st.expire_at_most(now, max),
                };
                match expired {
                    Ok(ids) => {
                        assert!(enough || due.is_empty(), "step {i}: expired without room");
                        let want: Vec<LeaseId> = due.iter().map(|(_, id)| *id).collect();
                        assert_eq!(ids, want, "step {i}: expired");
                        for id in &ids {
                            model.leases.remove(id);
                        }
                        events += ids.len() as u64;
                        reached.expired += ids.len();
                    }
                    Err(_) => assert!(!enough && !due.is_empty(), "step {i}: refused with room"),
                }
            }
            Step::Flush(fail) => {
                // Revoked leases past their time are forgotten when a flush is planned.
                let wall = model.wall;
                model.stopped.retain(|_, until| *until > wall);
                if let Some(planned) = st.plan_flush(now, STALE_MS) {
                    let stats = commit!(st, disk, now, planned, fail, reached);
                    if let Some(stats) = stats {
                        assert!(stats.committed, "step {i}");
                        reached.flushed += 1;
                        // Written behind: every lease as it is now, and none collected.
                        let want: BTreeMap<LeaseId, LeaseRow> = model
                            .leases
                            .iter()
                            .map(|(id, l)| {
                                (
                                    *id,
                                    LeaseRow {
                                        expires_at_ms: l.deadline,
                                        ttl_ms: l.ttl,
                                        renewals: l.renewals,
                                        in_grace: l.in_grace,
                                    },
                                )
                            })
                            .collect();
                        assert_eq!(disk.rows, want, "step {i}: the disk after a flush");
                    }
                }
            }
            Step::Revoke(v, signed, fail) => {
                let v = v % VENDORS;
                let key = vendor(v);
                let statement = KeyStatement::revoke(key, model.wall);
                let signed = signed.then(|| {
                    SignedKeyStatement::sign(&statement, &fixtures().keys[usize::from(v)])
                });
                // New: never revoked, or revoked by the operator and now with a statement.
                let fresh = match model.revoked.get(&v) {
                    None => true,
                    Some(false) => signed.is_some(),
                    Some(true) => false,
                };
                let with_statement = signed.is_some();
                match st
                    .plan_key_change(statement, signed)
                    .expect("a revocation is always admitted")
                {
                    None => assert!(!fresh, "step {i}: {step:?} refused"),
                    Some(planned) => {
                        assert!(fresh, "step {i}: {step:?} planned again");
                        if commit!(st, disk, now, planned, fail, reached).is_some() {
                            model.revoked.insert(v, with_statement);
                            reached.revoked += 1;
                            let gone: Vec<LeaseId> = model
                                .leases
                                .iter()
                                .filter(|(_, l)| l.vendor == v)
                                .map(|(id, _)| *id)
                                .collect();
                            for id in gone {
                                model.leases.remove(&id);
                                events += 1;
                            }
                        }
                    }
                }
            }
            Step::Grant(v, name) => {
                let (v, name) = (v % VENDORS, name % NAMES);
                let planned = st
                    .plan_grant(&format!("svc/{name}"), &vendor(v))
                    .expect("a valid name");
                disk.commit(planned.batch());
                st.apply(now, planned);
                if let std::collections::btree_map::Entry::Vacant(e) = model.owners.entry(name) {
                    e.insert(v);
                } else {
                    model.grants.insert((name, v));
                }
            }
            Step::RevokeLease(slot, fail) => {
                let Some(id) = model.nth_granted(slot) else {
                    continue;
                };
                let action = AdminAction::RevokeLease {
                    lease: id,
                    reason: "fuzz".into(),
                };
                match (st.plan_admin(now, None, action), model.live(&id).is_some()) {
                    (Ok(planned), true) => {
                        if commit!(st, disk, now, planned, fail, reached).is_some() {
                            model.leases.remove(&id);
                            let until = model.wall + model.policy().max_ttl_ms;
                            model.stopped.insert(id, until);
                            model.audit += 1;
                            events += 1;
                            reached.operator += 1;
                        }
                    }
                    (Err(AdminError::UnknownLease(_)), false) => {}
                    (got, live) => panic!("step {i}: {step:?}: got {got:?}, live {live}"),
                }
            }
            Step::Ban(v, name, ban) => {
                let (v, name) = (v % VENDORS, name % NAMES);
                let (svc, key) = (format!("svc/{name}"), vendor(v));
                let action = if ban {
                    AdminAction::Ban {
                        name: svc,
                        key,
                        reason: "fuzz".into(),
                    }
                } else {
                    AdminAction::Allow { name: svc, key }
                };
                let planned = st.plan_admin(now, None, action).expect("a valid action");
                disk.commit(planned.batch());
                st.apply(now, planned);
                model.audit += 1;
                reached.operator += 1;
                if ban {
                    model.bans.insert((name, v));
                    let until = model.wall + model.policy().max_ttl_ms;
                    let gone: Vec<LeaseId> = model
                        .leases
                        .iter()
                        .filter(|(_, l)| l.name == name && l.vendor == v)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in gone {
                        model.leases.remove(&id);
                        model.stopped.insert(id, until);
                        events += 1;
                    }
                } else {
                    model.bans.remove(&(name, v));
                }
            }
            Step::Drain(name, on) => {
                let name = name % NAMES;
                let svc = format!("svc/{name}");
                let action = if on {
                    AdminAction::Drain {
                        name: svc,
                        reason: "fuzz".into(),
                    }
                } else {
                    AdminAction::Undrain { name: svc }
                };
                let planned = st.plan_admin(now, None, action).expect("a valid action");
                disk.commit(planned.batch());
                st.apply(now, planned);
                model.audit += 1;
                reached.operator += 1;
                if on {
                    model.drains.insert(name);
                } else {
                    model.drains.remove(&name);
                }
            }
            Step::Restart(down) => {
                model.wall += u64::from(down);
                st = start(&mut model, &mut disk);
                compare(&st, &model, i, "after a restart");
                reached.restarts += 1;
                reached.graced += model.leases.values().filter(|l| l.in_grace).count();
                continue;
            }
        }
        assert_eq!(
            st.events().next_seq() - seq,
            events,
            "step {i}: {step:?}: events numbered"
        );
        compare(&st, &model, i, &format!("{step:?}"));
        let found: BTreeSet<LeaseId> = st
            .find(model.now(), &query)
            .into_iter()
            .map(|m| m.lease)
            .collect();
        let live: BTreeSet<LeaseId> = model
            .leases
            .iter()
            .filter(|(_, l)| l.deadline > model.wall)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(found, live, "step {i}: {step:?}: found");
    }
    reached
}

/// The table's leases, their time left and grace, and the earliest deadline, as modelled.
fn compare(st: &RegistryState, model: &Model, i: usize, what: &str) {
    assert_eq!(
        st.counts().0,
        model.leases.len(),
        "step {i}: {what}: leases held"
    );
    let want_next = model
        .leases
        .values()
        .map(|l| Millis(l.deadline - model.base))
        .min();
    assert_eq!(
        st.next_deadline(),
        want_next,
        "step {i}: {what}: next deadline"
    );
    let rows = st
        .leases_page(
            model.now(),
            &courier_protocol::LeaseFilter::default(),
            None,
            1000,
        )
        .rows;
    let got: BTreeMap<LeaseId, (u64, bool)> = rows
        .iter()
        .map(|r| (r.lease, (r.remaining_ms, r.in_grace)))
        .collect();
    let want: BTreeMap<LeaseId, (u64, bool)> = model
        .leases
        .iter()
        .filter(|(_, l)| l.deadline > model.wall)
        .map(|(id, l)| (*id, (l.deadline - model.wall, l.in_grace)))
        .collect();
    assert_eq!(got, want, "step {i}: {what}: live leases");
}
