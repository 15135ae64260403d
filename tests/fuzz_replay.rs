//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`) and every crash
//! artifact found so far (`fuzz/artifacts/<target>/`) through the same function the fuzzer
//! runs, so that `cargo test` on stable keeps each finding fixed. No nightly needed. (It
//! lives in the root package, not in fuzz-harness, so that plain `cargo test` runs it while
//! `cargo build` leaves the harness out.)

use std::path::{Path, PathBuf};

/// libFuzzer stops a target whose memory passes 2 GiB; on stable nothing would. This
/// allocator refuses any single allocation above [`capped::MAX_ALLOCATION`], which aborts the
/// replay, so an input that makes a decoder reserve gigabytes (like the `bundles`
/// out-of-memory artifact before its fix) fails here too.
#[allow(unsafe_code)]
mod capped {
    use std::alloc::{GlobalAlloc, Layout, System};

    /// The largest single allocation a replayed input may cause.
    pub const MAX_ALLOCATION: usize = 1 << 30;

    pub struct Capped;

    // SAFETY: every call is forwarded unchanged to the system allocator, except that
    // requests above the cap get a null pointer, which `GlobalAlloc` allows.
    unsafe impl GlobalAlloc for Capped {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.size() > MAX_ALLOCATION {
                return std::ptr::null_mut();
            }
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.size() > MAX_ALLOCATION {
                return std::ptr::null_mut();
            }
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if new_size > MAX_ALLOCATION {
                return std::ptr::null_mut();
            }
            // SAFETY: the caller's contract is passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract is passed on.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: capped::Capped = capped::Capped;

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
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
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
    let here: Vec<&str> = vec![
        "frames",
        "manifests",
        "bundles",
        "lease_table",
        "registry_state",
        "client_vm",
        "roots",
        "freshness",
        "identity_rotations",
    ];
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
fn registry_state() {
    replay("registry_state");
}

#[test]
fn client_vm() {
    replay("client_vm");
}

#[test]
fn roots() {
    replay("roots");
}

#[test]
fn freshness() {
    replay("freshness");
}

#[test]
fn identity_rotations() {
    replay("identity_rotations");
}
