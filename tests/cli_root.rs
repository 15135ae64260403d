//! `courier root init`, `delegate`, `revoke`, `rotate` and `publish` as a vendor runs them
//! against a `courier registry serve` process, with m of n root key files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, run_ok as ok};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run courier");
    assert!(!out.status.success(), "expected {cmd:?} to fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

fn generate(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    ok(courier().args(["keys", "generate", "--out"]).arg(&path));
    path
}

/// `courier root <args>` on `file` against `registry`.
fn root(registry: &ServedRegistry, file: &Path, args: &[&str], keys: &[&PathBuf]) -> Command {
    let mut cmd = courier();
    registry.env(&mut cmd);
    cmd.arg("root").args(args).arg("--file").arg(file);
    for k in keys {
        cmd.arg("--sign").arg(k);
    }
    cmd
}

#[test]
fn a_root_delegates_revokes_and_rotates_with_m_of_n_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let registry = ServedRegistry::start(&data, &[]);
    let [a, b, c, online, d, e] =
        ["a", "b", "c", "online", "d", "e"].map(|n| generate(dir.path(), &format!("{n}.key")));
    let file = dir.path().join("root.txt");

    let out = ok(courier()
        .args(["root", "init", "--threshold", "2", "--file"])
        .arg(&file)
        .args(["--root-key"])
        .arg(&a)
        .arg("--root-key")
        .arg(&b)
        .arg("--root-key")
        .arg(&c));
    assert!(out.contains("--trust-root 2:ed25519:"), "{out}");
    let call_help = ok(courier().args(["call", "--help"]));
    assert!(call_help.contains("--trust-root"), "{call_help}");

    let online_arg = online.to_str().unwrap();
    let delegate = ["delegate", "--to", online_arg, "--name", "acme/*"];
    // One root key of a 2-of-3 root is not enough: nothing is written or pushed.
    let err = fails(&mut root(&registry, &file, &delegate, &[&a]));
    assert!(err.contains("sign with more root keys"), "{err}");
    ok(&mut root(&registry, &file, &delegate, &[&a, &c]));
    let out = ok(&mut root(
        &registry,
        &file,
        &["revoke", "--key", online_arg],
        &[&b, &c],
    ));
    assert!(
        out.contains("version 2") && out.contains("revoked"),
        "{out}"
    );

    // Rotation needs two of the old keys as well as the new ones.
    let rotate = |signers: &[&PathBuf]| {
        let mut cmd = root(&registry, &file, &["rotate", "--threshold", "2"], signers);
        cmd.arg("--new-key").arg(&d).arg("--new-key").arg(&e);
        cmd
    };
    let err = fails(&mut rotate(&[&a]));
    assert!(err.contains("sign with more root keys"), "{err}");
    ok(&mut rotate(&[&a, &b]));
    drop(registry);

    // The registry kept every version across a restart: the next one (version 4, signed
    // by the new keys only) follows the one it holds.
    let registry = ServedRegistry::start(&data, &[]);
    ok(&mut root(&registry, &file, &["publish"], &[]));
    ok(&mut root(&registry, &file, &delegate, &[&d, &e]));
    let err = fails(&mut root(&registry, &file, &delegate, &[&a, &b]));
    assert!(err.contains("sign with more root keys"), "{err}");
}
