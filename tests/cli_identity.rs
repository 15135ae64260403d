//! `courier registry rotate-identity` end to end, through the real binary: the registry is
//! served, stopped, rotated and served again; a client given the old pin reaches it during
//! the overlap, moves its pin and keeps the move (`--registry-pins`), so the old pin keeps
//! working after the overlap; a client that first comes with the old pin after the overlap
//! is refused, naming both pins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, run_ok};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `courier find` at `registry`, given `pin` and keeping pin moves in `pins_file`.
fn find(registry: &ServedRegistry, pin: &str, pins_file: &Path) -> Output {
    courier()
        .args(["find", "courier:echo/echo", "--registry"])
        .arg(registry.addr.to_string())
        .args(["--registry-pin", pin, "--registry-pins"])
        .arg(pins_file)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value printed after `label` on a line of `out`.
fn printed<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("{label} printed in {out}"))
        .trim()
}

#[test]
fn old_pin_moves_during_the_overlap_and_keeps_working_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let registry = ServedRegistry::start(&data, &[]);
    let old = registry.pin.to_string();

    // Not while it serves: the overlap counts from the rotation, which takes effect at
    // the next start.
    let running = courier()
        .args(["registry", "rotate-identity", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!running.status.success());
    assert!(
        stderr(&running).contains("is it running?"),
        "{}",
        stderr(&running)
    );
    drop(registry);

    let out = run_ok(
        courier()
            .args([
                "registry",
                "rotate-identity",
                "--overlap",
                "10s",
                "--data-dir",
            ])
            .arg(&data),
    );
    assert_eq!(printed(&out, "old pin:"), old);
    let new = printed(&out, "new pin:").to_string();
    assert_ne!(new, old);

    let registry = ServedRegistry::start(&data, &[]);
    assert_eq!(registry.pin.to_string(), new, "the new key after a restart");

    // During the overlap: the old pin reaches the registry and the move is kept.
    let kept = dir.path().join("client").join("registry-pins");
    let during = find(&registry, &old, &kept);
    assert!(during.status.success(), "{}", stderr(&during));
    let book = std::fs::read_to_string(&kept).unwrap();
    let line = book
        .lines()
        .find(|l| l.starts_with(&format!("{old} {new} ")))
        .unwrap_or_else(|| panic!("the move is kept: {book}"));
    let ends: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();

    // After the overlap (its end is whole seconds, checked as "not after").
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::thread::sleep(Duration::from_secs(ends.saturating_sub(now) + 2));

    let after = find(&registry, &old, &kept);
    assert!(
        after.status.success(),
        "the kept move outlives the overlap: {}",
        stderr(&after)
    );
    let fresh = dir.path().join("fresh-pins");
    let refused = find(&registry, &old, &fresh);
    assert!(!refused.status.success());
    let why = stderr(&refused);
    assert!(
        why.contains(&old) && why.contains(&new) && why.contains("ended"),
        "refused naming both pins: {why}"
    );
    assert!(!fresh.exists(), "a refused move is not kept");
    let direct = find(&registry, &new, &fresh);
    assert!(direct.status.success(), "{}", stderr(&direct));
}
