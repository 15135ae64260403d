//! Restarts on the same data directory: a graceful restart over QUIC keeps registrations
//! and their remaining time; the grace rule for leases that ran out while the registry was
//! down (simulated wall clock); and a real `kill -9` of a registry process after an ack.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{ServiceQuery, VendorKey};
use courier_registry::{Millis, OfflineRegistry, Registry};
use std::io::{BufRead, BufReader};
use std::time::Duration;

fn echo_query() -> ServiceQuery {
    ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_registrations_remaining_time_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let (pin, id) = (h.pin(), h.registry().registry_id().to_string());
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let grant = v.register(echo(&acme, "acme/echo", 30_000)).await.unwrap();
    v.renew(grant.lease, 40_000).await.unwrap();
    let last_seq = h.registry().next_seq() - 1;
    v.close();
    h.shutdown().await;

    let h = start(config(dir.path())).await;
    assert_eq!(h.pin(), pin, "the TLS identity is kept");
    assert_eq!(h.registry().registry_id(), id);
    let c = client(&h).await;
    let found = c.find(echo_query()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].lease, grant.lease);
    assert!(
        found[0].remaining_ms > 35_000 && found[0].remaining_ms <= 40_000,
        "{}",
        found[0].remaining_ms
    );
    let rows = c.leases().await.unwrap();
    assert_eq!(rows[0].renewals, 1);
    assert!(!rows[0].in_grace);
    assert_eq!(h.registry().owner("acme/echo"), Some(VendorKey::of(&acme)));
    // The component is still there, and the vendor carries on with the same lease.
    let m = found[0].manifest.verify().unwrap();
    assert_eq!(
        c.fetch(m.component_hash, m.component_size, Duration::from_secs(5))
            .await
            .unwrap(),
        courier_proxy_artifacts::ECHO
    );
    let v = vendor(&h, &acme).await;
    v.renew(grant.lease, 40_000).await.unwrap();
    // Sequence numbers go on strictly increasing; the past is reported missed.
    let (batch, _) = h.registry().events_since(1, None);
    assert_eq!(batch.missed.map(|m| m.0), Some(1));
    assert!(batch.events[0].seq > last_seq);
    h.shutdown().await;
}

#[test]
fn lapsed_leases_get_one_grace_period() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path()).registry;
    cfg.grace = Duration::from_millis(2_000);
    let t0 = wall_now();
    let acme = key(1);
    let auth = VendorKey::of(&acme);
    let r = Registry::open_at(cfg.clone(), t0).unwrap();
    let a = r
        .register(Millis(0), &auth, echo(&acme, "acme/a", 1_000))
        .unwrap()
        .lease;
    let b = r
        .register(Millis(0), &auth, echo(&acme, "acme/b", 1_000))
        .unwrap()
        .lease;
    let c = r
        .register(Millis(0), &auth, echo(&acme, "acme/c", 100))
        .unwrap()
        .lease;
    let d = r
        .register(Millis(0), &auth, echo(&acme, "acme/d", 60_000))
        .unwrap()
        .lease;
    // The last flush at t0+500 (it writes d's renewal) proves c was dead while the registry
    // still ran (its expiry was not collected yet: a crash now would leave its row behind).
    r.renew(Millis(400), &auth, d, 60_400).unwrap();
    assert!(r.flush(Millis(500)).unwrap().committed);
    let seq_before = r.next_seq();
    drop(r);

    // Back 5 s later: a and b ran out while it was down; d has 55.4 s left; c stays dead.
    let r = Registry::open_at(cfg, t0 + 5_000).unwrap();
    let now = Millis(0);
    let rows = r.leases(now).unwrap();
    let row = |l| rows.iter().find(|x| x.lease == l);
    assert!(row(a).unwrap().in_grace && row(a).unwrap().remaining_ms == 2_000);
    assert!(row(b).unwrap().in_grace);
    assert!(row(c).is_none(), "expired before the last flush: no grace");
    let dr = row(d).unwrap();
    assert!(!dr.in_grace);
    assert_eq!(
        dr.remaining_ms, 55_400,
        "remaining time kept exactly, not reset"
    );
    let found: Vec<_> = r
        .find(now, &echo_query())
        .unwrap()
        .into_iter()
        .map(|c| c.lease)
        .collect();
    assert_eq!(found.len(), 3);
    assert!(!found.contains(&c));

    // a renews during grace and is normal again; b does not and expires when grace ends.
    r.renew(Millis(1_000), &auth, a, 10_000).unwrap();
    assert!(
        !r.leases(Millis(1_000))
            .unwrap()
            .iter()
            .find(|x| x.lease == a)
            .unwrap()
            .in_grace
    );
    assert_eq!(r.expire(Millis(1_999)), Ok(0));
    assert_eq!(r.expire(Millis(2_000)), Ok(1));
    let found: Vec<_> = r
        .find(Millis(2_000), &echo_query())
        .unwrap()
        .into_iter()
        .map(|c| c.lease)
        .collect();
    assert_eq!(found.len(), 2);
    assert!(found.contains(&a) && found.contains(&d));
    let (batch, _) = r.events_since(seq_before, None);
    assert!(batch.events.iter().all(|e| e.seq >= seq_before));
    assert_eq!(
        batch.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![
            courier_protocol::EventKind::Renewed,
            courier_protocol::EventKind::Expired
        ]
    );
}

#[test]
fn restarts_never_extend_a_grace_nor_evict_a_lease_alive_at_the_last_write() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path()).registry;
    cfg.grace = Duration::from_millis(2_000);
    let t0 = wall_now();
    let acme = key(1);
    let auth = VendorKey::of(&acme);
    let r = Registry::open_at(cfg.clone(), t0).unwrap();
    let a = r
        .register(Millis(0), &auth, echo(&acme, "acme/a", 1_000))
        .unwrap()
        .lease;
    drop(r);
    let in_grace = |r: &Registry| {
        r.leases(Millis(0))
            .unwrap()
            .iter()
            .find(|x| x.lease == a)
            .map(|x| (x.in_grace, x.remaining_ms))
    };

    // Stopped for a while; an operator grants a name meanwhile (offline): that open
    // neither starts the grace nor writes anything of the restart rule.
    let op = OfflineRegistry::open_at(cfg.clone(), t0 + 10_000).unwrap();
    // (Read at the real time since that open began: a few ms of the grace may be gone.)
    let row = op
        .leases()
        .unwrap()
        .into_iter()
        .find(|x| x.lease == a)
        .map(|x| (x.in_grace, x.remaining_ms));
    assert!(
        matches!(row, Some((true, ms)) if (1_900..=2_000).contains(&ms)),
        "{row:?}"
    );
    op.grant("acme/other", &VendorKey::of(&key(2))).unwrap();
    drop(op);

    // The real start, much later than the offline open: a gets its one grace now.
    let r = Registry::open_at(cfg.clone(), t0 + 60_000).unwrap();
    assert_eq!(in_grace(&r), Some((true, 2_000)));
    assert_eq!(r.owner("acme/other"), Some(VendorKey::of(&key(2))));
    drop(r);

    // A crash and restart 500 ms into the grace: still in grace, with only what is left
    // of it (a restart does not extend it).
    let r = Registry::open_at(cfg.clone(), t0 + 60_500).unwrap();
    assert_eq!(in_grace(&r), Some((true, 1_500)));
    drop(r);

    // The registry was down again when that grace ran out: the lease was alive at its
    // last write (a renewal in the unflushed window may have been lost), so it gets a
    // grace again rather than being evicted.
    let r = Registry::open_at(cfg.clone(), t0 + 63_000).unwrap();
    assert_eq!(in_grace(&r), Some((true, 2_000)));
    // Left to run out while the registry runs, it is gone, and stays gone after a restart.
    assert_eq!(r.expire(Millis(2_000)), Ok(1));
    r.flush(Millis(2_000)).unwrap();
    drop(r);
    let r = Registry::open_at(cfg.clone(), t0 + 70_000).unwrap();
    assert_eq!(in_grace(&r), None);
    assert!(r.find(Millis(0), &echo_query()).unwrap().is_empty());
}

const CHILD_ENV: &str = "COURIER_REGISTRY_CRASH_CHILD_DIR";

/// Not a test of its own: the registry process that `kill_9_after_ack` starts and kills.
/// Without the environment variable it returns at once.
#[test]
fn crash_child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let h = start(config(std::path::Path::new(&dir))).await;
        println!("READY {} {}", h.local_addr(), h.pin());
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_ack_keeps_the_registration() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.split_once("READY ").map(|(_, rest)| rest.to_string()))
    });
    let line = tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (addr, pin) = line.split_once(' ').unwrap();
    let (addr, pin) = (addr.parse().unwrap(), pin.parse().unwrap());

    let acme = key(1);
    let v = courier_transport::RegistryClient::connect(addr, pin, "crash")
        .await
        .unwrap();
    v.authenticate(&acme).await.unwrap();
    let grant = v.register(echo(&acme, "acme/echo", 30_000)).await.unwrap();
    let registered_at = wall_now();
    // Acknowledged: now kill -9, with no chance to flush or close anything.
    child.kill().unwrap();
    child.wait().unwrap();

    let r = Registry::open(config(dir.path()).registry).unwrap();
    let rows = r.leases(r.now()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].lease, grant.lease);
    assert_eq!(rows[0].name, "acme/echo");
    let elapsed = wall_now() - registered_at;
    assert!(
        rows[0].remaining_ms <= 30_000 && rows[0].remaining_ms + elapsed + 1_000 >= 30_000,
        "{}",
        rows[0].remaining_ms
    );
    let found = r.find(r.now(), &echo_query()).unwrap();
    assert_eq!(found.len(), 1);
    let m = found[0].manifest.verify().unwrap();
    assert_eq!(
        r.fetch(&m.component_hash, None, None).unwrap(),
        courier_proxy_artifacts::ECHO
    );
}
