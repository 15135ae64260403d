//! Resident memory of a registry holding 100,000 leases (100,000 registrations over 1,000
//! interfaces, catalog and lease table included), two ways, each in a fresh process that
//! reads its own RSS from /proc/self/statm:
//! - reopened: the data directory is filled by this process, then a child opens it and
//!   starts serving (a registry after a restart);
//! - live: a child starts serving an empty directory and takes the registrations while it
//!   serves, 100 per durable commit (a registry that has run since they came; what the
//!   allocator keeps of the work of taking them is counted).
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

const N: u32 = 100_000;

/// The registrations to hold: `N`, or `COURIER_RSS_LEASES` (over a hundredth as many
/// interfaces), to look at other sizes.
fn leases() -> (u32, u32) {
    let n = std::env::var("COURIER_RSS_LEASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(N);
    (n, (n / 100).max(1))
}

/// Opens `dir` in this (fresh) process and serves it; with `take_live`, the directory is
/// empty and the registrations are taken while serving. Then prints the process's RSS.
fn measure(dir: &str, take_live: bool) {
    let rt = runtime();
    let base = rss_bytes();
    let t = std::time::Instant::now();
    let registry = courier_registry::Registry::open(config(std::path::Path::new(dir))).unwrap();
    let opened = t.elapsed();
    let h = rt.block_on(serve(registry));
    let t = std::time::Instant::now();
    if take_live {
        let (n, interfaces) = leases();
        bulk_load_in(h.registry(), n, interfaces, 100);
    }
    let took = t.elapsed();
    let (leases, regs, ifaces) = h.registry().counts();
    let rss = rss_bytes() as f64 / (1 << 20) as f64;
    let base = base as f64 / (1 << 20) as f64;
    let counts = format!("{regs} registrations, {ifaces} interfaces");
    if take_live {
        println!(
            "rss: registry that took {leases} leases live ({counts}, in {took:?}): {rss:.1} MiB resident (process before opening: {base:.1} MiB)"
        );
    } else {
        println!(
            "rss: registry serving {leases} leases ({counts}): {rss:.1} MiB resident (process before opening: {base:.1} MiB); reopened in {opened:?}"
        );
    }
    rt.block_on(h.shutdown());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--reopen") {
        measure(&args[i + 1], false);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--live") {
        measure(&args[i + 1], true);
        return;
    }
    // `--load DIR` only fills DIR (to profile `--reopen DIR` on its own).
    let keep = args
        .iter()
        .position(|a| a == "--load")
        .map(|i| args[i + 1].clone());
    let dir = tempfile::tempdir().unwrap();
    let path = keep
        .as_ref()
        .map_or_else(|| dir.path().to_path_buf(), std::path::PathBuf::from);
    {
        let registry = courier_registry::Registry::open(config(&path)).unwrap();
        let t = std::time::Instant::now();
        let (n, interfaces) = leases();
        bulk_load(&registry, n, interfaces);
        println!(
            "rss: loaded {n} registrations in {:?}; loading process at {:.1} MiB",
            t.elapsed(),
            rss_bytes() as f64 / (1 << 20) as f64
        );
        registry.flush(registry.now()).unwrap();
    }
    if keep.is_some() {
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--reopen")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--live")
        .arg(fresh.path())
        .status()
        .unwrap();
    assert!(status.success());
}
