//! The README's rollout walkthrough as a new user runs it, each command a process: a
//! vendor publishes 1.0.0 and a broken 2.0.0 staged, two clients register (one a canary),
//! the operator starts a rollout, the canary's call fails and halts it, the other client
//! never sees 2.0.0, and the canary's next call goes back to 1.0.0; the rollout is still
//! halted after the registry is killed with -9 and started again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Killed, ServedRegistry, courier, generate_key, lines_of, run_ok, wait_for};
use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_halted_by_a_canary_is_withdrawn_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let registry = ServedRegistry::start(&data, &[]);
    let operator_key = data.join("operator.key");
    let as_operator = |r: &ServedRegistry, args: &[&str]| {
        let mut c = courier();
        r.env(&mut c);
        c.args(args).arg("--operator-key").arg(&operator_key);
        run_ok(&mut c)
    };
    let provider = common::echo_provider().await;
    let key_path = dir.path().join("vendor.key");
    let vendor = generate_key(&key_path);
    let publish = |version: &str, endpoint: &str, staged: bool| {
        let mut p = courier();
        registry.env(&mut p);
        p.arg("publish")
            .arg(courier_proxy_artifacts::path("echo"))
            .args(["--name", "acme/echo", "--version", version])
            .args(["--endpoint", endpoint])
            .args([
                "--provider-pin",
                &provider.pin().to_string(),
                "--ttl",
                "10s",
            ])
            .arg("--key")
            .arg(&key_path);
        if staged {
            p.arg("--staged");
        }
        let mut p = p.stdout(Stdio::piped()).spawn().unwrap();
        let lines = lines_of(&mut p);
        let p = Killed(p);
        let line = wait_for(&lines, "registered");
        (p, line)
    };
    let (_v1, _) = publish("1.0.0", &provider.local_addr().to_string(), false);
    // A broken build: nothing listens where its proxy calls.
    let (_v2, line) = publish("2.0.0", "127.0.0.1:9", true);
    assert!(line.contains("registered staged"), "{line}");

    let client = |name: &str, attrs: &[&str]| {
        let state = dir.path().join(name);
        let mut c = courier();
        c.args(["client", "init", "--state-dir"]).arg(&state);
        run_ok(&mut c);
        let mut c = courier();
        registry.env(&mut c);
        c.args(["client", "register", "--state-dir"])
            .arg(&state)
            .args(attrs);
        run_ok(&mut c);
        state
    };
    let canary = client("canary", &["--attr", "ring=canary"]);
    let other = client("other", &[]);
    let call = |state: &std::path::Path| {
        let mut c = courier();
        registry.env(&mut c);
        c.args(["call", "--trust", &vendor, "--state-dir"])
            .arg(state)
            .arg(r#"courier:echo/echo.say("hi")"#);
        c.output().unwrap()
    };

    // The operator sees what is staged (the lease table, open to anyone, does not).
    let out = as_operator(&registry, &["rollout", "staged"]);
    assert!(
        out.contains("acme/echo") && out.contains("2.0.0") && out.contains("courier rollout start"),
        "{out}"
    );
    let mut leases = courier();
    registry.env(&mut leases);
    let out = run_ok(leases.arg("leases"));
    assert!(out.contains("1.0.0") && !out.contains("2.0.0"), "{out}");
    let out = as_operator(
        &registry,
        &[
            "rollout",
            "start",
            "acme/echo@2.0.0",
            "--waves",
            "ring=canary,25%,100%",
            "--delay",
            "1h",
            "--max-failures",
            "10%",
            "--min-reports",
            "1",
        ],
    );
    assert!(out.contains("start rollout of acme/echo@2.0.0"), "{out}");
    // The canary runs 2.0.0, which fails; the other client runs 1.0.0.
    let failed = call(&canary);
    assert!(!failed.status.success());
    let ok = call(&other);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        r#"ok("echo: hi")"#
    );
    // The timer halts it soon after the failure report.
    let mut status = serde_json::Value::Null;
    for _ in 0..50 {
        let out = as_operator(&registry, &["rollout", "status", "--json"]);
        status = serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone();
        if status["state"] == "halted" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status["state"], "halted", "{status}");
    assert_eq!(status["waves"][0]["failed"], 1, "{status}");
    // The canary's next call: told, back to 1.0.0, and the call runs.
    let back = call(&canary);
    let stderr = String::from_utf8_lossy(&back.stderr);
    assert!(back.status.success(), "{stderr}");
    assert!(
        stderr.contains("acme/echo@2.0.0 (rollout 1) was withdrawn; back to 1.0.0"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&back.stdout).trim(),
        r#"ok("echo: hi")"#
    );

    // Killed with -9 and started again, the registry holds the same rollout, halted, with
    // the undo.
    registry.kill9();
    let registry = ServedRegistry::start(&data, &[]);
    let out = as_operator(&registry, &["rollout", "status", "--json"]);
    let status = &serde_json::from_str::<serde_json::Value>(&out).unwrap()[0];
    assert_eq!(status["state"], "halted", "{status}");
    assert_eq!(status["waves"][0]["undone"], 1, "{status}");
    assert!(status["waves"][1]["opened_at_ms"].is_null(), "{status}");
}
