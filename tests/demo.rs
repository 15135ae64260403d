//! `courier demo`, the README's first command, run as a user runs it: the whole flow on
//! loopback in one process, each step printed, ending with the expired echo proxy no longer
//! matching.

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
    // Every step says how long it took.
    let timed = stdout.lines().filter(|l| l.starts_with("[ ")).count();
    assert!(timed >= 12, "{timed} timed steps in:\n{stdout}");
}
