//! The client policy through the CLI: `courier call` reads the policy file (its facts, its
//! answers, its commands) and its flags override or extend it (`--allow-fact`, `--yes`,
//! `--command`, `--trust-operator`); a bad file is a one-line error naming the line;
//! `courier client register|share` share the file's list by default.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, run_ok};
use courier_protocol::{SigningKey, VendorKey};
use courier_provider::BundleBuilder;
use courier_transport::RegistryClient;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Publishes `component` as `name`, with `kind=<kind>`, on the registry; the returned
/// connection holds the lease.
async fn publish(
    registry: &ServedRegistry,
    vendor: &SigningKey,
    component: &[u8],
    name: &str,
    kind: &str,
    provider: &courier_provider::ServiceHandle,
) -> RegistryClient {
    let bundle = BundleBuilder::new(component)
        .name(name)
        .version("1.0.0")
        .attribute("kind", kind)
        .endpoint(provider.local_addr().to_string())
        .provider_pin(provider.pin())
        .sign(vendor)
        .unwrap();
    let c = RegistryClient::connect(registry.addr, registry.pin, "cli-policy-test")
        .await
        .unwrap();
    c.authenticate(vendor).await.unwrap();
    bundle
        .register_once(&c, vendor, Duration::from_secs(60))
        .await
        .unwrap();
    c
}

/// `courier call --trust <vendor> --state-dir <state> ARGS... EXPRESSION` (no terminal).
fn call(
    registry: &ServedRegistry,
    vendor: &str,
    state: &Path,
    args: &[&str],
    expr: &str,
) -> Output {
    let mut c = courier();
    registry.env(&mut c);
    c.args(["call", "--trust", vendor, "--state-dir"])
        .arg(state)
        .args(args)
        .arg(expr)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_follows_the_policy_file_and_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("client");
    std::fs::create_dir_all(&state).unwrap();
    let registry = ServedRegistry::start(&dir.path().join("registry"), &[]);
    let provider = common::echo_provider().await;
    let vendor_key = SigningKey::from_bytes(&[3; 32]);
    let vendor = VendorKey::of(&vendor_key).to_string();
    let _operator_proxy = publish(
        &registry,
        &vendor_key,
        courier_proxy_artifacts::ECHO_OPERATOR,
        "acme/echo-operator",
        "operator",
        &provider,
    )
    .await;
    let _probe = publish(
        &registry,
        &vendor_key,
        courier_proxy_artifacts::COMMANDS_PROBE,
        "acme/probe",
        "probe",
        &provider,
    )
    .await;
    let say = |m: &str| format!("courier:echo/echo.say({m:?})");
    let operator = ["--attr", "kind=operator"];

    // No policy file: no fact readable, the question answered no (no terminal).
    let out = call(&registry, &vendor, &state, &operator, &say("hi"));
    assert_eq!(
        stdout(&out),
        r#"ok("confirmed=false facts= answer=skipped")"#
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("[operator] echo-operator: hi"));

    // The state directory's policy.toml: os readable, questions approved unattended.
    std::fs::write(
        state.join("policy.toml"),
        "[facts]\nread = [\"os\"]\n[operator]\nanswer = \"approve\"\n",
    )
    .unwrap();
    let out = call(&registry, &vendor, &state, &operator, &say("hi"));
    assert_eq!(
        stdout(&out),
        format!(
            r#"ok("confirmed=true facts=os={} answer=echo: hi")"#,
            std::env::consts::OS
        )
    );
    // Flags override and extend it: --deny answers no, --allow-fact adds a fact.
    let flags = [&operator[..], &["--deny", "--allow-fact", "arch"]].concat();
    let out = call(&registry, &vendor, &state, &flags, &say("hi"));
    assert_eq!(
        stdout(&out),
        format!(
            r#"ok("confirmed=false facts=os={},arch={} answer=skipped")"#,
            std::env::consts::OS,
            std::env::consts::ARCH
        )
    );

    // A command lent by flag, package names allowed; --yes confirms it, and the proxy's
    // hostile argument is refused.
    let probe = [
        "--attr",
        "kind=probe",
        "--yes",
        "--command",
        "say-args=echo given {packages}",
    ];
    let out = call(
        &registry,
        &vendor,
        &state,
        &probe,
        &say("say-args|bash|libc6"),
    );
    assert_eq!(
        stdout(&out),
        r#"ok("status=0\nstdout=given bash libc6\n\nstderr=")"#
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("confirm: run say-args: echo given bash libc6? -> yes (policy)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = call(
        &registry,
        &vendor,
        &state,
        &probe,
        &say("say-args|;rm -rf /"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not a package name"));
    // With --deny (over the file's "approve") the command does not run.
    let denied = [
        &probe[..2],
        &["--deny", "--command", "say-args=echo given {packages}"],
    ]
    .concat();
    let out = call(&registry, &vendor, &state, &denied, &say("say-args|bash"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the operator declined to run say-args"));

    // A bad policy file is one line naming the file and the line.
    std::fs::write(
        state.join("policy.toml"),
        "[facts]\nread = [\"os\"]\nsahre = []\n",
    )
    .unwrap();
    let out = call(&registry, &vendor, &state, &operator, &say("hi"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.toml line 3") && err.contains("sahre"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // --policy names another file; `client share` shares its list by default.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[facts]\nshare = [\"os\", \"kernel\"]\n").unwrap();
    let mut init = courier();
    run_ok(init.args(["client", "init", "--state-dir"]).arg(&state));
    for command in ["register", "share"] {
        let mut c = courier();
        registry.env(&mut c);
        let out = run_ok(
            c.args(["client", command, "--state-dir"])
                .arg(&state)
                .arg("--policy")
                .arg(&other),
        );
        assert!(out.contains("shared: kernel, os"), "{out}");
    }
    // --trust-operator must be a key.
    let out = call(
        &registry,
        &vendor,
        &state,
        &[
            "--policy",
            other.to_str().unwrap(),
            "--trust-operator",
            "nope",
        ],
        &say("hi"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--trust-operator nope"));
    provider.shutdown().await;
}
