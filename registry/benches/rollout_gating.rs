//! Matching with rollout gating on, against matching with none, in one sitting: 100,000
//! registrations over 1,000 interfaces; then 1,000 versions staged (one in every
//! interface's bucket), each under a rollout whose waves (a canary group, 10%, 50%, 100%)
//! take 10,000 registered clients, two waves open. The matcher in-process (as `lookup.rs`
//! measures it), the same 20,000 queries each way: first with no staged registration at
//! all (the anchor), then asked as each client in turn (its wave decides what it sees),
//! then anonymously; and, on the same catalog, interleaved query by query, matching with no
//! rollout asked (staged slots skipped) against matching as each client, so that the
//! machine's drift falls on both alike. Prints p50/p99 of each and the ratios.
#![allow(clippy::unwrap_used)]

mod support;

use courier_protocol::{
    AdminAction, ClientProfile, Export, Manifest, RolloutSpec, SignedManifest, SigningKey, SpkiPin,
    VendorKey,
};
use courier_registry::{PreparedQuery, Registry};
use std::time::{Duration, Instant};
use support::*;

const REGISTRATIONS: u32 = 100_000;
const INTERFACES: u32 = 1_000;
const CLIENTS: u32 = 10_000;
const HOUR: u64 = 3_600_000;

/// Synthetic registration `i` again, as version 9.0.0 (its service's staged next version).
fn staged(i: u32, keys: &[SigningKey]) -> SignedManifest {
    let key = &keys[(i as usize) % keys.len()];
    let now = wall_now();
    let m = Manifest {
        name: format!("vendor{}/svc{i}", (i as usize) % keys.len()),
        version: "9.0.0".into(),
        exports: vec![Export {
            interface: format!("bench:pkg{}/api@0.{}.0", i % INTERFACES, 1 + i % 3),
            functions: vec!["call".into(), "ping".into()],
        }],
        imports: vec!["courier:proxy/provider@0.1.0".into()],
        attributes: [("region".to_string(), "eu".to_string())].into(),
        endpoints: vec!["10.9.0.1:7901".into()],
        provider_pin: SpkiPin([3; 32]),
        issued_at_ms: now - 60_000,
        not_after_ms: now + 30 * 24 * HOUR,
        component_hash: courier_protocol::ContentHash::of(&(i + 1_000_000).to_le_bytes()),
        component_size: 50_000,
        vendor_key: VendorKey::of(key),
    };
    SignedManifest::sign(&m, key)
}

fn measure(
    reg: &Registry,
    prepared: &[PreparedQuery],
    asker: impl Fn(usize) -> Option<VendorKey>,
) -> (Duration, Duration, f64) {
    let mut lat = Vec::with_capacity(2 * prepared.len());
    let mut hits = 0usize;
    for (i, p) in prepared.iter().chain(prepared.iter()).enumerate() {
        let who = asker(i);
        let now = reg.now();
        let t = Instant::now();
        hits += reg.match_leases_as(now, p, who.as_ref()).len();
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let (p50, p99, _) = percentiles(lat);
    (p50, p99, hits as f64 / (2 * prepared.len()) as f64)
}

/// The same queries matched two ways, interleaved (the order alternating), so that the
/// machine's drift falls on both alike: without gating (`match_leases`: staged slots are
/// skipped, no rollout is asked) and asked as each client in turn.
fn interleaved(
    reg: &Registry,
    prepared: &[PreparedQuery],
    clients: &[VendorKey],
) -> ((Duration, Duration), (Duration, Duration)) {
    let (mut plain, mut gated) = (Vec::new(), Vec::new());
    for (i, p) in prepared.iter().chain(prepared.iter()).enumerate() {
        let who = clients[i % clients.len()];
        let now = reg.now();
        let time_plain = || {
            let t = Instant::now();
            std::hint::black_box(reg.match_leases(now, p).len());
            t.elapsed().as_nanos() as u64
        };
        let time_gated = || {
            let t = Instant::now();
            std::hint::black_box(reg.match_leases_as(now, p, Some(&who)).len());
            t.elapsed().as_nanos() as u64
        };
        if i % 2 == 0 {
            plain.push(time_plain());
            gated.push(time_gated());
        } else {
            gated.push(time_gated());
            plain.push(time_plain());
        }
    }
    let (p50, p99, _) = percentiles(plain);
    let (g50, g99, _) = percentiles(gated);
    ((p50, p99), (g50, g99))
}

fn main() {
    // Fsyncs of 10,000 client registrations and 1,000 rollouts on a memory file system
    // where there is one: the set-up, not what is measured.
    let base = std::path::Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let mut c = config(dir.path());
    c.max_ttl = Duration::from_secs(24 * 3600);
    let reg = Registry::open(c).unwrap();
    bulk_load(&reg, REGISTRATIONS, INTERFACES);
    let prepared: Vec<PreparedQuery> = queries(20_000, INTERFACES)
        .iter()
        .map(|q| PreparedQuery::new(q, 100).unwrap())
        .collect();
    let clients: Vec<VendorKey> = (0..CLIENTS)
        .map(|i| VendorKey::of(&key(1_000_000 + i)))
        .collect();
    let asking = |i: usize| Some(clients[i % clients.len()]);

    // Warm-up, then the anchor: no staged registration anywhere.
    measure(&reg, &prepared, asking);
    let (a50, a99, a_hits) = measure(&reg, &prepared, asking);

    let t = Instant::now();
    for (i, c) in clients.iter().enumerate() {
        let mut profile = ClientProfile::default();
        if i % 100 == 0 {
            profile.attributes.insert("ring".into(), "canary".into());
        }
        reg.register_client(reg.now(), *c, profile).unwrap();
    }
    let keys: Vec<SigningKey> = (0..100).map(key).collect();
    for i in 0..INTERFACES {
        reg.load_staged(reg.now(), staged(i, &keys), 20 * HOUR)
            .unwrap();
        let spec = RolloutSpec {
            name: format!("vendor{}/svc{i}", i % 100),
            version: "9.0.0".into(),
            waves: ["ring=canary", "10%", "50%", "100%"]
                .iter()
                .map(|w| w.parse().unwrap())
                .collect(),
            delay_ms: HOUR,
            max_failure_ppm: 20_000,
            min_reports: 0,
        };
        reg.admin(reg.now(), None, AdminAction::StartRollout(spec))
            .unwrap();
    }
    // Past the first wave's delay (simulated): the 10% wave opens everywhere.
    let opened = reg
        .rollout_tick(courier_registry::Millis(reg.now().0 + HOUR))
        .unwrap();
    assert_eq!(opened.len(), INTERFACES as usize);
    println!(
        "set up {CLIENTS} clients and {INTERFACES} staged versions under rollouts (2 waves open) in {:?}",
        t.elapsed()
    );

    measure(&reg, &prepared, asking);
    let ((i50, i99), (j50, j99)) = interleaved(&reg, &prepared, &clients);
    let (g50, g99, g_hits) = measure(&reg, &prepared, asking);
    let (n50, n99, _) = measure(&reg, &prepared, |_| None);
    println!(
        "match, {REGISTRATIONS} registrations, no rollouts (anchor): p50 {a50:?}, p99 {a99:?} ({a_hits:.1} candidates/query)"
    );
    println!(
        "match as each of {CLIENTS} clients, a staged version in every bucket: p50 {g50:?}, p99 {g99:?} ({g_hits:.1} candidates/query)"
    );
    println!("match anonymously, same: p50 {n50:?}, p99 {n99:?}");
    println!(
        "ratio gated/anchor before staging: p50 {:.2}x, p99 {:.2}x; anonymous p50 {:.2}x",
        g50.as_secs_f64() / a50.as_secs_f64(),
        g99.as_secs_f64() / a99.as_secs_f64(),
        n50.as_secs_f64() / a50.as_secs_f64()
    );
    println!(
        "interleaved on the same catalog: without gating p50 {i50:?}, p99 {i99:?}; gated p50 {j50:?}, p99 {j99:?}"
    );
    println!(
        "ratio gated/without, interleaved: p50 {:.2}x, p99 {:.2}x (target <= 1.5x)",
        j50.as_secs_f64() / i50.as_secs_f64(),
        j99.as_secs_f64() / i99.as_secs_f64()
    );
}
