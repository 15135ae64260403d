//! A root and a child registry as a new user runs them, each `courier registry serve` in a
//! process of its own: the root's operator allows the child, the child's operator adds a
//! rule, a vendor publishes at the root, a client calls the proxy through the child, and
//! the child's report is at the root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Killed, ServedRegistry, courier, generate_key, http_get, lines_of, run_ok, wait_for};
use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_published_at_the_root_is_called_through_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let root = ServedRegistry::start(&dir.path().join("root"), &[]);
    let child = ServedRegistry::start(
        &dir.path().join("child"),
        &[
            "--parent",
            &root.addr.to_string(),
            "--parent-pin",
            &root.pin.to_string(),
            "--report-every",
            "300ms",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let own = wait_for(&child.lines, "registry: ");
    let child_key = own.split_whitespace().nth(1).unwrap().to_string();
    assert!(child_key.starts_with("ed25519:"), "{own}");
    let metrics = wait_for(&child.lines, "metrics:");
    let metrics: std::net::SocketAddr = metrics
        .trim()
        .trim_start_matches("metrics:")
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let as_operator = |r: &ServedRegistry, data: &str, args: &[&str]| {
        let mut c = courier();
        r.env(&mut c);
        c.args(args)
            .arg("--operator-key")
            .arg(dir.path().join(data).join("operator.key"));
        run_ok(&mut c)
    };
    let out = as_operator(
        &root,
        "root",
        &[
            "registry", "children", "allow", &child_key, "--name", "site-a",
        ],
    );
    assert!(out.contains("allow child site-a"), "{out}");
    let out = as_operator(
        &child,
        "child",
        &["registry", "rules", "add", "--name", "acme/*"],
    );
    assert!(out.contains("add mirror rule 1 for acme/*"), "{out}");
    as_operator(
        &child,
        "child",
        &["registry", "rules", "add", "--name", "*", "--approval"],
    );

    // A vendor publishes two services at the root.
    let provider = common::echo_provider().await;
    let key_path = dir.path().join("vendor.key");
    let vendor = generate_key(&key_path);
    let publish = |name: &str| {
        let mut p = courier();
        root.env(&mut p);
        let mut p = p
            .arg("publish")
            .arg(courier_proxy_artifacts::path("echo"))
            .args(["--name", name, "--version", "1.0.0"])
            .args(["--endpoint", &provider.local_addr().to_string()])
            .args(["--provider-pin", &provider.pin().to_string(), "--ttl", "5s"])
            .arg("--key")
            .arg(&key_path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(&mut p);
        let p = Killed(p);
        wait_for(&lines, "registered: lease ");
        (p, lines)
    };
    let (_acme, _acme_lines) = publish("acme/echo");
    let (_other, _other_lines) = publish("other/echo");

    // The client calls through the child; the child mirrors acme/echo by its first rule
    // and holds other/echo for approval by its second.
    let call = || {
        let mut c = courier();
        child.env(&mut c);
        c.args([
            "call",
            "--trust",
            &vendor,
            r#"courier:echo/echo.say("via site-a")"#,
        ]);
        c.output().unwrap()
    };
    let mut out = call();
    for _ in 0..100 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = call();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"ok("echo: via site-a")"#
    );
    let mut leases = courier();
    child.env(&mut leases);
    let rows: serde_json::Value =
        serde_json::from_str(&run_ok(leases.args(["leases", "--json"]))).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["name"], "acme/echo");
    assert_eq!(rows[0]["mirrored"], "live");
    let out = as_operator(&child, "child", &["registry", "approvals"]);
    assert!(
        out.contains("other/echo@1.0.0") && out.contains("pending"),
        "{out}"
    );
    let out = as_operator(&child, "child", &["registry", "rules"]);
    assert!(
        out.contains("following") && out.contains("1 mirrored"),
        "{out}"
    );

    // Its metrics count what it mirrors and the link's state.
    let text = http_get(metrics, "/metrics", None);
    for line in [
        "courier_mirror_connected 1",
        "courier_mirror_registrations 1",
        "courier_mirror_past_end 0",
        "courier_mirror_pending_approvals 1",
        "courier_mirror_components_fetched_total 1",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }

    // The child's report at the root: its sync state and its client's fetch.
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        let out = as_operator(&root, "root", &["registry", "children", "--json"]);
        let all: serde_json::Value = serde_json::from_str(&out).unwrap();
        report = all[0]["report"].clone();
        if report["activity"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["service"] == "acme/echo"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(report["sync"]["connected"], true, "{report}");
    assert_eq!(report["sync"]["mirrored"], 1, "{report}");
    assert_eq!(report["sync"]["pending_approvals"], 1, "{report}");
    let served = report["activity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "acme/echo")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(served["handed_out"].as_u64().unwrap() >= 1, "{report}");
    // On demand: the root's operator asks for one now and gets it printed.
    let out = as_operator(
        &root,
        "root",
        &["registry", "children", "report", &child_key],
    );
    assert!(out.contains("site-a") && out.contains("lag"), "{out}");
}
