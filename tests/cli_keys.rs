//! `courier keys rotate`, `courier keys revoke` and `courier registry revoke` as a vendor and
//! an operator run them against a `courier registry serve` process; the keys a client keeps
//! across `courier call` processes (its version memory, its compiled code's key).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, run_ok as ok};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run courier")
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

/// Registers `acme/echo` at `version` with `key` through the library (the vendor side is
/// not under test here), pointing at `provider`.
async fn register(
    registry: &ServedRegistry,
    key: &courier_protocol::SigningKey,
    version: &str,
    provider: &courier_provider::ServiceHandle,
) {
    let bundle = courier_provider::BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name("acme/echo")
        .version(version)
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(key)
        .unwrap();
    let vendor = courier_transport::RegistryClient::connect(registry.addr, registry.pin, "test")
        .await
        .unwrap();
    vendor.authenticate(key).await.unwrap();
    bundle
        .register_once(&vendor, key, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    vendor.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_refuses_a_replayed_older_version_across_processes_unless_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("client-state");
    let registry = ServedRegistry::start(&dir.path().join("registry"), &[]);
    let provider = common::echo_provider().await;
    let key = courier_protocol::SigningKey::from_bytes(&[5; 32]);
    let trust = courier_protocol::VendorKey::of(&key).to_string();
    let call = |extra: &[&str]| {
        let mut c = courier();
        registry.env(&mut c);
        c.args(["call", "--trust", &trust, "--state-dir"])
            .arg(&state)
            .args(extra)
            .arg(r#"courier:echo/echo.say("hi")"#);
        c
    };

    register(&registry, &key, "1.1.0", &provider).await;
    assert!(ok(&mut call(&[])).contains("echo: hi"));
    register(&registry, &key, "1.0.0", &provider).await;
    // Another process, the same state directory: the replayed 1.0.0 is refused.
    let err = fails(&mut call(&[]));
    assert!(
        err.contains("rollback") && err.contains("--pin-version acme/echo@1.0.0"),
        "{err}"
    );
    assert!(ok(&mut call(&["--pin-version", "acme/echo@1.0.0"])).contains("echo: hi"));
    // A corrupt memory stops the client with one clear line.
    std::fs::write(state.join("versions"), "garbage\n").unwrap();
    let err = fails(&mut call(&[]));
    assert!(err.contains("versions line 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_loads_the_code_the_first_compiled_from_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("client-state");
    let registry = ServedRegistry::start(&dir.path().join("registry"), &[]);
    let provider = common::echo_provider().await;
    let key = courier_protocol::SigningKey::from_bytes(&[6; 32]);
    let trust = courier_protocol::VendorKey::of(&key).to_string();
    register(&registry, &key, "1.0.0", &provider).await;
    let call = || {
        let mut c = courier();
        registry.env(&mut c);
        c.args(["call", "--timings", "--trust", &trust, "--state-dir"])
            .arg(&state)
            .arg(r#"courier:echo/echo.say("hi")"#);
        let out = run(&mut c);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("echo: hi"));
        String::from_utf8(out.stderr).unwrap()
    };
    let first = call();
    assert!(
        first.contains("compile") && !first.contains("(from disk)"),
        "{first}"
    );
    // A new process: the code the first compiled is loaded, not compiled again.
    let second = call();
    assert!(second.contains("(from disk)"), "{second}");
    // Without a client key, the compiled code's key was made for it, readable by it only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state.join("compiled.key")), 0o600);
        assert_eq!(mode(&state.join("compiled")), 0o700);
    }
}
