//! The CLI as a new user runs it: a registry in one process, a vendor publishing in another,
//! then find, call, leases (table, JSON, watch) and history from a third.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, generate_key, interrupt, lines_of, run_ok, wait_for};
use std::process::Stdio;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_find_call_leases_watch_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ServedRegistry::start(&dir.path().join("registry"), &[]);

    // The vendor's provider (in this process) and key.
    let provider = common::echo_provider().await;
    let key_path = dir.path().join("vendor.key");
    let vendor = generate_key(&key_path);
    // Generating again without --force refuses to overwrite.
    let again = courier()
        .args(["keys", "generate", "--out"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(!again.status.success());

    // An operator watches events from the start.
    let mut watch = courier();
    registry.env(&mut watch);
    let mut watch = watch
        .args(["leases", "--watch", "--json", "--from", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let watch_lines = lines_of(&mut watch);

    // Publish: holds the lease until interrupted.
    let mut publish = courier();
    registry.env(&mut publish);
    let mut publish = publish
        .arg("publish")
        .arg(courier_proxy_artifacts::path("echo"))
        .args([
            "--name",
            "acme/echo",
            "--version",
            "1.0.0",
            "--attr",
            "region=eu",
        ])
        .args(["--endpoint", &provider.local_addr().to_string()])
        .args(["--provider-pin", &provider.pin().to_string(), "--ttl", "5s"])
        .arg("--key")
        .arg(&key_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let publish_lines = lines_of(&mut publish);
    let registered = wait_for(&publish_lines, "registered: lease ");
    let lease = registered
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(',')
        .to_string();

    // find: the table names the service; attribute constraints filter.
    let mut find = courier();
    registry.env(&mut find);
    let out = run_ok(find.args([
        "find",
        "courier:echo/echo@^0.1",
        "--function",
        "say",
        "--attr",
        "region=eu",
    ]));
    assert!(out.contains("acme/echo") && out.contains(&lease), "{out}");
    let mut find = courier();
    registry.env(&mut find);
    let out = run_ok(find.args(["find", "courier:echo/echo", "--attr", "region=us"]));
    assert!(out.contains("no proxy matches"), "{out}");

    // The client makes its key and registers with the registry (its history is its own).
    let out = run_ok(courier().args(["client", "init"]));
    let client_key = out.split_whitespace().nth(2).unwrap().to_string();
    assert!(client_key.starts_with("ed25519:"), "{out}");
    let mut register = courier();
    registry.env(&mut register);
    let out = run_ok(register.args([
        "client",
        "register",
        "--attr",
        "site=test",
        "--share",
        "os,arch",
    ]));
    assert!(out.contains("shared: arch, os"), "{out}");

    // call: verified, run in the sandbox, answered by the provider.
    let mut call = courier();
    registry.env(&mut call);
    let out = run_ok(call.args(["call", "--trust", &vendor, r#"courier:echo/echo.say("hi")"#]));
    assert_eq!(out.trim(), r#"ok("echo: hi")"#);
    // An untrusted vendor is refused, with a clear one-line error.
    let mut call = courier();
    registry.env(&mut call);
    let other = "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    let out = call
        .args(["call", "--trust", other, r#"courier:echo/echo.say("hi")"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not trusted"), "{err}");

    // leases --json: one live lease, ours.
    let mut leases = courier();
    registry.env(&mut leases);
    let out = run_ok(leases.args(["leases", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["lease"], lease.as_str());
    assert_eq!(rows[0]["name"], "acme/echo");
    // The registry named first does not answer (a socket that never replies): the command
    // goes on at the other node it was given, as with a cluster whose node is down.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for args in [
        &["leases", "--json"][..],
        &[
            "call",
            "--trust",
            &vendor,
            r#"courier:echo/echo.say("elsewhere")"#,
        ][..],
    ] {
        let out = run_ok(
            courier()
                .env("COURIER_REGISTRY", silent.local_addr().unwrap().to_string())
                .env("COURIER_REGISTRY_PIN", registry.pin.to_string())
                .env(
                    "COURIER_OTHER_NODES",
                    format!("{}={}", registry.addr, registry.pin),
                )
                .args(args),
        );
        assert!(
            out.contains("acme/echo") || out.contains("echo: elsewhere"),
            "{out}"
        );
    }

    // history: the call was reported, under the client's key.
    let mut history = courier();
    registry.env(&mut history);
    let out = run_ok(history.args(["history", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["ok"] == true && r["name"] == "acme/echo"),
        "{out}"
    );

    // The operator (with the key the registry made in its data directory) sees the
    // client, drains the service, and finds the action in the audit log.
    let operator_key = dir.path().join("registry/operator.key");
    let operator = |args: &[&str]| {
        let mut c = courier();
        registry.env(&mut c);
        c.args(args).arg("--operator-key").arg(&operator_key);
        run_ok(&mut c)
    };
    let out = operator(&["clients", "--json"]);
    let clients: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(clients[0]["key"], client_key.as_str(), "{out}");
    assert!(clients[0]["last_outcome"]["ok"] == true, "{out}");
    let out = operator(&["clients", "show", &client_key]);
    assert!(
        out.contains("attribute   site=test") && out.contains("os:"),
        "{out}"
    );
    let out = operator(&["admin", "drain", "acme/echo", "--reason", "moving"]);
    assert!(
        out.contains("audit entry 1: drain acme/echo (moving)"),
        "{out}"
    );
    operator(&["admin", "undrain", "acme/echo"]);
    let out = operator(&["admin", "audit", "--json"]);
    let log: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 2, "{out}");
    // A child registry's key: allowed, listed, denied.
    let child =
        courier_protocol::VendorKey::of(&courier_protocol::SigningKey::from_bytes(&[42; 32]))
            .to_string();
    let out = operator(&["registry", "children", "allow", &child, "--name", "site-a"]);
    assert!(out.contains("allow child site-a"), "{out}");
    let out = operator(&["registry", "children", "--json"]);
    let children: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(children[0]["key"], child.as_str(), "{out}");
    assert_eq!(children[0]["name"], "site-a", "{out}");
    assert!(children[0]["last_seen_ms"].is_null(), "{out}");
    let out = operator(&["registry", "children", "list"]);
    assert!(out.contains("site-a") && out.contains("never"), "{out}");
    operator(&["registry", "children", "deny", &child]);
    let out = operator(&["registry", "children"]);
    assert!(out.contains("no child registries allowed"), "{out}");
    // Without the operator key, the same request is refused.
    let mut stranger = courier();
    registry.env(&mut stranger);
    let out = stranger
        .args(["clients", "--operator-key"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));

    // Ctrl-C on publish cancels the lease; the watcher saw registered then cancelled.
    interrupt(&publish);
    wait_for(&publish_lines, "cancelled lease");
    assert!(publish.wait().unwrap().success());
    let registered_event = wait_for(&watch_lines, "\"registered\"");
    assert!(registered_event.contains(&lease));
    let cancelled_event = wait_for(&watch_lines, "\"cancelled\"");
    assert!(cancelled_event.contains(&lease));
    let seq = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    assert!(seq(&cancelled_event) > seq(&registered_event));
    let _ = watch.kill();
    let _ = watch.wait();

    let mut find = courier();
    registry.env(&mut find);
    let out = run_ok(find.args(["find", "courier:echo/echo"]));
    assert!(out.contains("no proxy matches"), "{out}");
    provider.shutdown().await;
}

#[test]
fn errors_are_one_line_and_exit_non_zero() {
    // No registry pin: the error says how to get one.
    let out = courier()
        .args(["find", "courier:echo/echo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--registry-pin"), "{err}");
    // A malformed interface.
    let out = courier()
        .args(["find", "Not An Interface", "--registry-pin", "sha256:00"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );
    // A missing key file for publish.
    let out = courier()
        .args([
            "publish",
            "/nonexistent.wasm",
            "--name",
            "x",
            "--endpoint",
            "127.0.0.1:1",
        ])
        .args(["--provider-pin", "sha256:00", "--key", "/nonexistent.key"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("courier keys generate"), "{err}");
}
