//! Recommendations for this machine's own inventory against its full apt lists: (a) the
//! first answer, reading the status file and loading every index included, and (b) each
//! later answer with the indexes loaded once; then `apt list --upgradable` timed on the
//! same machine in the same run (median of a few runs), printed beside (a) with the ratio.
//! The targets (issue 10): (a) faster than apt, (b) under 10 ms.

use std::path::Path;
use std::time::{Duration, Instant};

use courier_debian::apt_list::{self, median};
use courier_debian::{Catalog, Inventory, Upgrade, sources, status};
use criterion::Criterion;

/// Runs of apt (and of the first answer) whose median is printed.
const RUNS: usize = 5;

fn load() -> Option<(Inventory, Vec<sources::AptList>)> {
    let inventory = status::read_dpkg_status(Path::new(status::DPKG_STATUS)).ok()?;
    let native = inventory.native_arch()?.to_owned();
    let lists = sources::machine_lists(Path::new("/"), &native);
    (!lists.is_empty()).then_some((inventory, lists))
}

/// Everything a provider does for a first request: read, load, choose.
fn first_answer() -> Vec<Upgrade> {
    let Some((inventory, lists)) = load() else {
        return Vec::new();
    };
    let (catalog, _) = Catalog::load(&lists);
    catalog.upgrades(&inventory)
}

fn bench(c: &mut Criterion) {
    let Some((inventory, lists)) = load() else {
        eprintln!("no dpkg status or apt lists on this machine: nothing to measure");
        return;
    };
    let (catalog, report) = Catalog::load(&lists);
    let upgrades = catalog.upgrades(&inventory);
    let packages: usize = report.read.iter().map(|r| r.packages).sum();
    eprintln!(
        "{} installed packages, {} lists ({packages} packages, {} failed), {} upgrades",
        inventory.packages.len(),
        lists.len(),
        report.failed.len(),
        upgrades.len()
    );

    let mut group = c.benchmark_group("upgrades");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("first answer, indexes loaded", |b| b.iter(first_answer));
    group.finish();
    c.bench_function("upgrades/later answer, indexes loaded once", |b| {
        b.iter(|| catalog.upgrades(&inventory))
    });

    let first = median((0..RUNS).map(|_| timed(first_answer)).collect());
    let later = median(
        (0..100)
            .map(|_| timed(|| catalog.upgrades(&inventory)))
            .collect(),
    );
    eprintln!("(a) first answer, loading included: median {first:.1?} of {RUNS}");
    eprintln!("(b) later answer, indexes loaded once: median {later:.1?} of 100 (target < 10 ms)");
    match apt_list::time_upgradable(RUNS) {
        Some(apt) => eprintln!(
            "apt list --upgradable: median {apt:.1?} of {RUNS}; apt / (a) = {:.1}x",
            apt.as_secs_f64() / first.as_secs_f64()
        ),
        None => eprintln!("apt list --upgradable could not run: no comparison"),
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
