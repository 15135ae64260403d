//! Staged rollouts over 1,000 simulated clients, in simulated time (the driver takes `now`
//! from the caller): a version registered staged is seen by no one; waves open on time and
//! only with their reports; clients see what their wave lets them see, whatever they ask;
//! a failure spike in wave 2 halts the rollout, once (the notification too), across a
//! restart; clients that ran the version are asked to undo it and report back; a rollout
//! that completes shows its version to everyone.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{
    AdminAction, ClientProfile, ContentHash, LeaseId, Outcome, RolloutRecord, RolloutSpec,
    RolloutState, ServiceQuery, SigningKey, UndoReport, VendorKey,
};
use courier_registry::{AdminError, Registry, RegistryConfig};
use std::path::Path;
use std::time::Duration;

const HOUR: u64 = 3_600_000;
const UNDO: &str = "say(\"undo\")";

fn registry_config(dir: &Path) -> RegistryConfig {
    let mut c = RegistryConfig::new(dir);
    c.max_ttl = Duration::from_secs(7 * 24 * 3600);
    c.operators = vec![VendorKey::of(&key(9))];
    c
}

fn clients() -> Vec<VendorKey> {
    (0..1_000u32)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            VendorKey::of(&SigningKey::from_bytes(&seed))
        })
        .collect()
}

fn register(
    r: &Registry,
    now: Millis,
    vendor: &SigningKey,
    version: &str,
    staged: bool,
) -> LeaseId {
    let mut m = echo_manifest(vendor, "acme/echo");
    m.version = version.into();
    // Valid for the whole simulated week; a staged version signs how to undo it.
    m.not_after_ms = wall_now() + 7 * 24 * HOUR;
    if staged {
        m.attributes.insert("undo".into(), UNDO.into());
    }
    let mut req = signed(&m, vendor, courier_proxy_artifacts::ECHO, 6 * 24 * HOUR);
    req.staged = staged;
    r.register(now, &VendorKey::of(vendor), req).unwrap().lease
}

fn seen(r: &Registry, now: Millis, client: Option<&VendorKey>) -> String {
    let q = ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    };
    let c = r.find_as(now, &q, client).unwrap();
    c[0].manifest.peek().unwrap().version
}

fn outcome(version: &str, ok: bool) -> Outcome {
    Outcome {
        client: String::new(),
        name: "acme/echo".into(),
        version: version.into(),
        component: ContentHash::of(courier_proxy_artifacts::ECHO),
        function: "courier:echo/echo@0.1.0.say".into(),
        ok,
        detail: if ok { "ok" } else { "broken" }.into(),
        duration_us: 10,
        facts: Default::default(),
    }
}

fn spec(waves: &str) -> RolloutSpec {
    RolloutSpec {
        name: "acme/echo".into(),
        version: "2.0.0".into(),
        waves: waves.split(',').map(|w| w.parse().unwrap()).collect(),
        delay_ms: HOUR,
        max_failure_ppm: 50_000,
        min_reports: 5,
    }
}

fn admin(r: &Registry, now: Millis, action: AdminAction) -> Result<(), AdminError> {
    r.admin(now, Some(VendorKey::of(&key(9))), action)
        .map(|_| ())
}

use courier_registry::Millis;

#[test]
fn a_rollout_opens_waves_on_time_halts_on_failures_once_and_is_undone() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let wall0 = wall_now();
    let r = Registry::open_at(registry_config(dir.path()), wall0).unwrap();
    let vendor = key(1);
    let old = register(&r, Millis(0), &vendor, "1.0.0", false);
    let staged = register(&r, Millis(1), &vendor, "2.0.0", true);
    assert_ne!(old, staged, "a staged version replaces nothing");
    let everyone = clients();
    for (i, c) in everyone.iter().enumerate() {
        let mut profile = ClientProfile::default();
        if i < 20 {
            profile.attributes.insert("ring".into(), "canary".into());
        }
        r.register_client(Millis(2), *c, profile).unwrap();
    }
    // Staged: no one sees it, and it is in no feed.
    assert_eq!(seen(&r, Millis(3), Some(&everyone[0])), "1.0.0");
    assert_eq!(seen(&r, Millis(3), None), "1.0.0");
    let (events, _) = r.events_since(0, None);
    assert!(events.events.iter().all(|e| e.lease != staged));

    // Refused: a version not staged, a bad spec; then started, and a second start refused.
    let mut unknown = spec("100%");
    unknown.version = "3.0.0".into();
    assert!(matches!(
        admin(&r, Millis(4), AdminAction::StartRollout(unknown)),
        Err(AdminError::NotStaged { .. })
    ));
    assert!(matches!(
        admin(&r, Millis(4), AdminAction::StartRollout(spec("5%,25%"))),
        Err(AdminError::RolloutSpec(_))
    ));
    let t0 = Millis(10);
    let undo = UNDO;
    admin(
        &r,
        t0,
        AdminAction::StartRollout(spec("ring=canary,10%,50%,100%")),
    )
    .unwrap();
    assert!(matches!(
        admin(&r, t0, AdminAction::StartRollout(spec("100%"))),
        Err(AdminError::RolloutUnderWay { .. })
    ));

    // The canaries see 2.0.0, nobody else does.
    for (i, c) in everyone.iter().enumerate() {
        let want = if i < 20 { "2.0.0" } else { "1.0.0" };
        assert_eq!(seen(&r, t0, Some(c)), want, "client {i}");
    }
    let mut halts = r.rollout_halts();
    // Not before the delay, and not without reports.
    assert!(r.rollout_tick(Millis(t0.0 + HOUR - 1)).unwrap().is_empty());
    assert!(r.rollout_tick(Millis(t0.0 + HOUR)).unwrap().is_empty());
    // A report of the old version, or from outside the wave, counts for nothing.
    r.report(Millis(20), &everyone[500], outcome("2.0.0", false))
        .unwrap();
    r.report(Millis(20), &everyone[0], outcome("1.0.0", false))
        .unwrap();
    for c in &everyone[..20] {
        r.report(Millis(20), c, outcome("2.0.0", true)).unwrap();
    }
    let t1 = Millis(t0.0 + HOUR);
    let opened = r.rollout_tick(t1).unwrap();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].opened_at_ms.len(), 2);
    assert!(r.rollout_tick(t1).unwrap().is_empty(), "a wave opens once");
    let wave1: Vec<VendorKey> = everyone[20..]
        .iter()
        .filter(|c| seen(&r, t1, Some(c)) == "2.0.0")
        .copied()
        .collect();
    assert!(
        (60..140).contains(&wave1.len()),
        "about 10% of 980: {}",
        wave1.len()
    );

    // A restart half an hour later: nothing opens early, nothing opens again.
    drop(r);
    let wall1 = wall0 + t1.0 + HOUR / 2;
    let r = Registry::open_at(registry_config(dir.path()), wall1).unwrap();
    let mut halts_after = r.rollout_halts();
    assert!(r.rollout_tick(Millis(HOUR / 2 - 1)).unwrap().is_empty());
    let status = &r.rollouts()[0];
    assert_eq!(status.state, RolloutState::Running);
    assert_eq!(status.waves[0].clients, 20);
    assert_eq!(status.waves[0].succeeded, 20);
    assert!(status.waves[1].opened_at_ms.is_some() && status.waves[2].opened_at_ms.is_none());
    assert_eq!(seen(&r, Millis(0), Some(&wave1[0])), "2.0.0");

    // A failure spike in wave 2: 8 of 40 reports fail, more than 5%: halted.
    for (i, c) in wave1.iter().take(20).enumerate() {
        r.report(Millis(10), c, outcome("2.0.0", i % 5 != 0))
            .unwrap();
    }
    let halted = r.rollout_tick(Millis(20)).unwrap();
    assert_eq!(halted.len(), 1);
    let RolloutState::Halted { reason } = &halted[0].state else {
        panic!("{:?}", halted[0].state)
    };
    assert!(reason.contains("4 of 40"), "{reason}");
    // A report after the halt (a failed client's next run) leaves its failure as it was.
    r.report(Millis(21), &wave1[0], outcome("2.0.0", true))
        .unwrap();
    let notice: RolloutRecord = halts_after.try_recv().unwrap();
    assert_eq!(notice.id, halted[0].id);
    assert!(halts_after.try_recv().is_err() && halts.try_recv().is_err());
    assert!(
        r.rollout_tick(Millis(HOUR * 10)).unwrap().is_empty(),
        "halted once"
    );
    assert!(halts_after.try_recv().is_err(), "notified once");

    // The vendor takes the broken build away: those who ran it are told all the same,
    // from the manifest the rollout kept.
    r.cancel(Millis(25), &VendorKey::of(&vendor), staged)
        .unwrap();
    // Hidden from everyone again; the 40 clients that ran it are asked to undo it.
    for c in everyone.iter().step_by(37).chain(&wave1) {
        assert_eq!(seen(&r, Millis(30), Some(c)), "1.0.0");
    }
    let owing: Vec<&VendorKey> = everyone
        .iter()
        .filter(|c| !r.directives(Millis(30), c).unwrap().is_empty())
        .collect();
    assert_eq!(owing.len(), 40);
    let d = &r.directives(Millis(30), owing[0]).unwrap()[0];
    assert_eq!(d.call, Some(format!("{ECHO_IFACE}.{undo}")));
    assert_eq!(d.candidate.lease, staged);
    assert_eq!(d.candidate.manifest.peek().unwrap().version, "2.0.0");
    for (i, c) in owing.iter().enumerate() {
        let report = UndoReport {
            rollout: d.rollout,
            ok: i != 0,
            detail: "done".into(),
        };
        r.undo_report(Millis(40), c, report).unwrap();
        assert!(r.directives(Millis(40), c).unwrap().is_empty());
    }
    // A report of the version after its undo (the undo call's own) takes nothing back.
    r.report(Millis(41), owing[1], outcome("2.0.0", true))
        .unwrap();
    assert!(r.directives(Millis(41), owing[1]).unwrap().is_empty());
    // An undo nobody asked for is refused.
    let stray = UndoReport {
        rollout: d.rollout,
        ok: true,
        detail: String::new(),
    };
    assert!(r.undo_report(Millis(40), &everyone[900], stray).is_err());

    // All of it survives another restart.
    drop(r);
    let r = Registry::open_at(registry_config(dir.path()), wall1 + HOUR).unwrap();
    let status = &r.rollouts()[0];
    assert!(matches!(status.state, RolloutState::Halted { .. }));
    let failed: u32 = status.waves.iter().map(|w| w.failed).sum();
    assert_eq!(failed, 4, "the failures stay, undone or not");
    let undone: u32 = status.waves.iter().map(|w| w.undone).sum();
    let undo_failed: u32 = status.waves.iter().map(|w| w.undo_failed).sum();
    assert_eq!((undone, undo_failed), (39, 1));
    assert_eq!(status.waves[2].opened_at_ms, None);
    assert!(r.rollout_tick(Millis(HOUR)).unwrap().is_empty());
    assert_eq!(seen(&r, Millis(0), Some(&wave1[0])), "1.0.0");
}

#[test]
fn a_completed_rollout_shows_its_version_to_everyone_and_operators_steer_it() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open_at(registry_config(dir.path()), wall_now()).unwrap();
    let vendor = key(1);
    let old = register(&r, Millis(0), &vendor, "1.0.0", false);
    let staged = register(&r, Millis(1), &vendor, "2.0.0", true);
    // The same staged manifest again keeps its lease; another staged one replaces it.
    let mut m = echo_manifest(&vendor, "acme/echo");
    m.version = "2.0.0".into();
    let mut req = signed(&m, &vendor, courier_proxy_artifacts::ECHO, 6 * 24 * HOUR);
    req.staged = true;
    let auth = VendorKey::of(&vendor);
    let again = r.register(Millis(2), &auth, req.clone()).unwrap();
    assert_eq!(again.replaced, Some(staged));
    let staged = again.lease;
    assert_eq!(r.register(Millis(2), &auth, req).unwrap().lease, staged);
    let everyone = clients();
    for c in &everyone[..50] {
        r.register_client(Millis(2), *c, ClientProfile::default())
            .unwrap();
    }
    let mut s = spec("50%,100%");
    s.min_reports = 1;
    admin(&r, Millis(10), AdminAction::StartRollout(s)).unwrap();
    let seeing: Vec<&VendorKey> = everyone[..50]
        .iter()
        .filter(|c| seen(&r, Millis(10), Some(c)) == "2.0.0")
        .collect();
    assert!((10..40).contains(&seeing.len()), "{}", seeing.len());
    r.report(Millis(11), seeing[0], outcome("2.0.0", true))
        .unwrap();
    // Paused: the delay passes, nothing opens; resumed: the delay counts again.
    admin(
        &r,
        Millis(12),
        AdminAction::PauseRollout {
            name: "acme/echo".into(),
        },
    )
    .unwrap();
    assert!(r.rollout_tick(Millis(10 + 2 * HOUR)).unwrap().is_empty());
    assert!(matches!(
        admin(
            &r,
            Millis(13),
            AdminAction::PauseRollout {
                name: "acme/echo".into()
            }
        ),
        Err(AdminError::NoRollout { .. })
    ));
    let resumed = Millis(3 * HOUR);
    admin(
        &r,
        resumed,
        AdminAction::ResumeRollout {
            name: "acme/echo".into(),
        },
    )
    .unwrap();
    assert!(
        r.rollout_tick(Millis(resumed.0 + HOUR - 1))
            .unwrap()
            .is_empty()
    );
    let step = r.rollout_tick(Millis(resumed.0 + HOUR)).unwrap();
    assert_eq!(step[0].opened_at_ms.len(), 2);
    for c in &everyone[..50] {
        assert_eq!(seen(&r, Millis(resumed.0 + HOUR), Some(c)), "2.0.0");
    }
    assert_eq!(
        seen(&r, Millis(resumed.0 + HOUR), None),
        "1.0.0",
        "anonymous: not yet"
    );
    for c in &everyone[..5] {
        r.report(Millis(resumed.0 + HOUR), c, outcome("2.0.0", true))
            .unwrap();
    }
    let done = r.rollout_tick(Millis(resumed.0 + 2 * HOUR)).unwrap();
    assert_eq!(done[0].state, RolloutState::Complete);
    // Complete: every client sees 2.0.0, anonymous ones and keys no one registered too;
    // 1.0.0 stays registered below it until the vendor publishes 2.0.0 for good.
    let now = Millis(resumed.0 + 2 * HOUR);
    assert_eq!(seen(&r, now, None), "2.0.0");
    assert_eq!(seen(&r, now, Some(&everyone[999])), "2.0.0");
    let q = ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    };
    let leases: Vec<LeaseId> = r
        .find_as(now, &q, None)
        .unwrap()
        .iter()
        .map(|c| c.lease)
        .collect();
    assert_eq!(leases, vec![staged, old]);
    // Its keeper registering it again (staged, a restart) registers it for good: it
    // replaces 1.0.0 instead of going hidden.
    let again = register(&r, now, &vendor, "2.0.0", true);
    let leases: Vec<LeaseId> = r
        .find_as(now, &q, None)
        .unwrap()
        .iter()
        .map(|c| c.lease)
        .collect();
    assert!(
        leases.contains(&again) && !leases.contains(&old),
        "{leases:?}"
    );
    // A new rollout of the same name may start; an abort hides it again.
    let staged3 = register(&r, now, &vendor, "3.0.0", true);
    let mut s = spec("100%");
    s.version = "3.0.0".into();
    admin(&r, now, AdminAction::StartRollout(s)).unwrap();
    assert_eq!(seen(&r, now, Some(&everyone[0])), "3.0.0");
    admin(
        &r,
        now,
        AdminAction::AbortRollout {
            name: "acme/echo".into(),
        },
    )
    .unwrap();
    assert_eq!(seen(&r, now, Some(&everyone[0])), "2.0.0");
    assert_eq!(r.rollouts()[0].state, RolloutState::Aborted);
    assert_eq!(r.rollouts()[0].lease, staged3);
}

#[test]
fn who_sees_and_who_undoes_follow_the_waves_not_the_asking() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open_at(registry_config(dir.path()), wall_now()).unwrap();
    let vendor = key(1);
    register(&r, Millis(0), &vendor, "1.0.0", false);
    let staged = register(&r, Millis(1), &vendor, "2.0.0", true);
    let everyone = clients();
    for c in &everyone[..100] {
        r.register_client(Millis(2), *c, ClientProfile::default())
            .unwrap();
    }
    let mut s = spec("100%");
    s.min_reports = 10;
    admin(&r, Millis(10), AdminAction::StartRollout(s.clone())).unwrap();
    // A registered client in the 100% wave sees it; a key that never registered does not
    // (it could neither report nor be asked to undo).
    assert_eq!(seen(&r, Millis(10), Some(&everyone[0])), "2.0.0");
    assert_eq!(seen(&r, Millis(10), Some(&everyone[500])), "1.0.0");
    // Lease pages, open to anyone, do not tell of it.
    let page = r
        .leases_page(Millis(10), &Default::default(), None, 100)
        .unwrap();
    assert!(page.leases.iter().all(|l| l.lease != staged));
    // The operators' list of staged registrations does.
    let listed = r.staged(Millis(10)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].lease, listed[0].version.as_str()),
        (staged, "2.0.0")
    );
    // Paused, it still halts on failures.
    admin(
        &r,
        Millis(11),
        AdminAction::PauseRollout {
            name: "acme/echo".into(),
        },
    )
    .unwrap();
    for c in &everyone[..10] {
        r.report(Millis(12), c, outcome("2.0.0", false)).unwrap();
    }
    let halted = r.rollout_tick(Millis(13)).unwrap();
    assert!(matches!(
        halted[..],
        [RolloutRecord {
            state: RolloutState::Halted { .. },
            ..
        }]
    ));
    // A client that ran it and reports only after the halt owes its undo too.
    r.report(Millis(14), &everyone[50], outcome("2.0.0", true))
        .unwrap();
    assert_eq!(r.directives(Millis(14), &everyone[50]).unwrap().len(), 1);
    assert!(r.directives(Millis(14), &everyone[60]).unwrap().is_empty());
    // A later rollout of the same registration takes over: nothing is left to undo.
    admin(&r, Millis(15), AdminAction::StartRollout(s)).unwrap();
    assert!(r.directives(Millis(15), &everyone[50]).unwrap().is_empty());
    assert_eq!(seen(&r, Millis(15), Some(&everyone[50])), "2.0.0");
    // Re-registered after a completed rollout would be for good; an abort is not that.
    admin(
        &r,
        Millis(16),
        AdminAction::AbortRollout {
            name: "acme/echo".into(),
        },
    )
    .unwrap();
    assert_eq!(seen(&r, Millis(16), Some(&everyone[50])), "1.0.0");
}
