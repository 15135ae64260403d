//! `courier demo`, the README's first command, run as a user runs it: the whole flow on
//! loopback in one process, each step printed: the patch flow installs one patch, rolls
//! back the one that fails its health check and finds nothing to do the second time; the
//! run ends with the expired echo proxy no longer matching.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::courier;

#[test]
fn the_demo_runs_the_whole_flow() {
    let out = courier().arg("demo").output().expect("run courier demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "courier demo failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each step, in order.
    let steps = [
        "registry listening on 127.0.0.1:",
        "vendor key generated: ed25519:",
        "providers up: echo at",
        "published example/echo 0.1.0",
        "published example/kv 0.1.0",
        "registered; it trusts the vendor key only",
        "find courier:echo/echo with say → 1 candidate(s)",
        r#"→ ok("echo: hello from courier")"#,
        "µs (cached)",
        r#"call courier:kv/store.set("greeting", "hello") → ok"#,
        r#"call courier:kv/store.get("greeting") → ok(some("hello"))"#,
        r#"call courier:kv/store.keys() → ok(["greeting"])"#,
        "example/patch published",
        "patch(es) for the app",
        "patch hello-1.1 (important)",
        "patch hello-config-2 (low)",
        "apply → ",
        "hello-1.1        ok     applied",
        "hello-config-2   failed check failed, rolled back",
        "lease table:",
        "echo provider stopped; its lease is no longer renewed",
        "expired example/echo (lease ran out)",
        "no proxy offers courier:echo/echo with say any more",
        "service history of client ed25519:",
        "demo finished in",
    ];
    let mut rest: &str = &stdout;
    for step in steps {
        let at = rest
            .find(step)
            .unwrap_or_else(|| panic!("step {step:?} missing or out of order in:\n{stdout}"));
        rest = &rest[at + step.len()..];
    }
    // The second run installs nothing: at most the packages line comes back.
    let again = stdout
        .split("apply again → ")
        .nth(1)
        .expect("a second apply");
    let again = &again[..again.find("lease table:").unwrap()];
    assert!(
        !again.contains("hello-"),
        "the second apply did something:\n{again}"
    );
    assert!(stdout.contains(", 2 patch(es) for the app"), "{stdout}");
    // Every step says how long it took.
    let timed = stdout.lines().filter(|l| l.starts_with("[ ")).count();
    assert!(timed >= 12, "{timed} timed steps in:\n{stdout}");
}
