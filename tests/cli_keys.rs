//! `courier keys rotate`, `courier keys revoke` and `courier registry revoke` as a vendor and
//! an operator run them against a `courier registry serve` process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run courier")
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "command failed: {:?}\nstdout: {}\nstderr: {}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "expected {cmd:?} to fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

fn public(key: &std::path::Path) -> String {
    ok(courier().args(["keys", "show"]).arg(key))
        .trim()
        .to_string()
}

#[test]
fn rotate_then_revoke_as_a_vendor_and_revoke_as_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let registry = ServedRegistry::start(&data, &[]);
    let old = dir.path().join("vendor.key");
    let new = dir.path().join("vendor-next.key");
    ok(courier().args(["keys", "generate", "--out"]).arg(&old));

    let help = ok(courier().args(["keys", "rotate", "--help"]));
    assert!(help.contains("--new-key") && help.contains("--registry-pin"));

    let mut rotate = courier();
    registry.env(&mut rotate);
    let out = ok(rotate
        .args(["keys", "rotate", "--key"])
        .arg(&old)
        .arg("--out")
        .arg(&new));
    assert!(out.contains(&format!("to {}", public(&new))), "{out}");
    // A rotated key cannot rotate again.
    let third = dir.path().join("third.key");
    let mut again = courier();
    registry.env(&mut again);
    let err = fails(
        again
            .args(["keys", "rotate", "--key"])
            .arg(&old)
            .arg("--out")
            .arg(&third),
    );
    assert!(err.contains("key rotated"), "{err}");

    // Revocation needs --yes, then refuses the key from then on.
    let mut revoke = courier();
    registry.env(&mut revoke);
    let err = fails(revoke.args(["keys", "revoke", "--key"]).arg(&new));
    assert!(err.contains("--yes"), "{err}");
    let mut revoke = courier();
    registry.env(&mut revoke);
    ok(revoke.args(["keys", "revoke", "--yes", "--key"]).arg(&new));
    drop(registry);

    // The operator revokes a key offline (the registry stopped), once.
    // (The refused rotation above still wrote its new key: it could be retried.)
    assert!(third.exists());
    let third_pub = public(&third);
    let out = ok(courier()
        .args(["registry", "revoke", "--data-dir"])
        .arg(&data)
        .arg(&third_pub));
    assert!(out.contains("revoked"), "{out}");
    let out = ok(courier()
        .args(["registry", "revoke", "--data-dir"])
        .arg(&data)
        .arg(&third_pub));
    assert!(out.contains("already revoked"), "{out}");
}
