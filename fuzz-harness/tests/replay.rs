//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`) and every crash
//! artifact found so far (`fuzz/artifacts/<target>/`) through the same function the fuzzer
//! runs, so that `cargo test` on stable keeps each finding fixed. No nightly needed.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = files(&fuzz.join("corpus").join(target));
    let artifacts = files(&fuzz.join("artifacts").join(target));
    assert!(
        !corpus.is_empty(),
        "no committed corpus for {target} in {}",
        fuzz.join("corpus").join(target).display()
    );
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&artifacts) {
        let data = std::fs::read(path).expect("a corpus file is readable");
        let outcome = std::panic::catch_unwind(|| courier_fuzz_harness::run(target, &data));
        match outcome {
            Ok(known) => assert!(known, "no fuzz target named {target}"),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs break the oracle: {failed:#?}",
        failed.len(),
        corpus.len() + artifacts.len()
    );
}

#[test]
fn every_target_is_replayed() {
    let here: Vec<&str> = vec!["frames", "manifests", "bundles", "lease_table", "client_vm"];
    assert_eq!(courier_fuzz_harness::TARGETS, &here[..]);
}

#[test]
fn frames() {
    replay("frames");
}

#[test]
fn manifests() {
    replay("manifests");
}

#[test]
fn bundles() {
    replay("bundles");
}

#[test]
fn lease_table() {
    replay("lease_table");
}

#[test]
fn client_vm() {
    replay("client_vm");
}
