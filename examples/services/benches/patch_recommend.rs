//! The patch provider's recommendations for this machine's own inventory, provider side,
//! against this machine's full apt lists and the example catalog, through the `recommend`
//! method's work (decode the inventory, store it, choose, encode): (a) the first answer,
//! opening the provider (every index loaded) included, and (b) each later answer with the
//! indexes loaded once; then `apt list --upgradable` timed in the same run, with the ratio.
//! Targets (issue 10): (a) faster than apt, (b) under 10 ms.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use courier_debian::apt_list::{self, median};
use courier_example_services::patch::{IndexSource, PatchConfig, PatchProvider, machine_inventory};
use courier_patch_api::messages::{decode, encode};
use courier_patch_api::{Inventory, Recommendation};
use criterion::Criterion;

/// Runs of apt and of the first answer whose median is printed.
const RUNS: usize = 5;

fn config(store: &Path) -> PatchConfig {
    PatchConfig {
        catalog: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../patch-catalog"
        ))),
        indexes: IndexSource::Machine(PathBuf::from("/")),
        store: Some(store.join("patch.redb")),
        ..PatchConfig::default()
    }
}

/// What the `recommend` handler does with a request.
fn answer(provider: &PatchProvider, request: &[u8]) -> Vec<u8> {
    let inventory: Inventory = decode("inventory", request).expect("inventory");
    encode(&provider.recommend(&inventory, 1).expect("recommend"))
}

fn first_answer(request: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = PatchProvider::open(&config(dir.path())).expect("provider");
    answer(&provider, request)
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let Ok(inventory) = machine_inventory(Path::new("/"), "bench") else {
        eprintln!("no dpkg status on this machine: nothing to measure");
        return;
    };
    let request = encode(&inventory);
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = PatchProvider::open(&config(dir.path())).expect("provider");
    let recommendation: Recommendation =
        decode("recommendation", &answer(&provider, &request)).expect("answer");
    let (lists, packages) = provider.packages().size();
    eprintln!(
        "{} installed packages, {lists} lists ({packages} packages), {} upgrades, {} request bytes",
        inventory.packages.len(),
        recommendation.upgrades.len(),
        request.len()
    );

    let mut group = c.benchmark_group("patch recommend");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("first answer, provider opened", |b| {
        b.iter(|| first_answer(&request))
    });
    group.finish();
    c.bench_function("patch recommend/later answer, indexes loaded once", |b| {
        b.iter(|| answer(&provider, &request))
    });

    let first = median(
        (0..RUNS)
            .map(|_| timed(|| first_answer(&request)))
            .collect(),
    );
    let later = median(
        (0..100)
            .map(|_| timed(|| answer(&provider, &request)))
            .collect(),
    );
    eprintln!("(a) first answer, provider opened and indexes loaded: median {first:.1?} of {RUNS}");
    eprintln!(
        "(b) later answer (inventory stored durably): median {later:.1?} of 100 (target < 10 ms)"
    );
    match apt_list::time_upgradable(RUNS) {
        Some(apt) => eprintln!(
            "apt list --upgradable: median {apt:.1?} of {RUNS}; apt / (a) = {:.1}x",
            apt.as_secs_f64() / first.as_secs_f64()
        ),
        None => eprintln!("apt list --upgradable could not run: no comparison"),
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
