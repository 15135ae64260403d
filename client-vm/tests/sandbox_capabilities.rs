//! What a proxy can reach in the sandbox without a registry: no host files, sockets or
//! unknown imports; only the directory, host facts and operator answers the policy grants.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Service, TestProvider, nowhere, run, sandbox};
use courier_client::{CompileError, MissingReason, OperatorAnswer, Policy, Preopen};
use courier_proxy_artifacts as artifacts;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_proxy_gets_nothing_from_the_host() {
    let sb = sandbox(Policy::default());
    let out = run(
        &sb,
        artifacts::HOSTILE_FILES,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap();
    let text = out.answer.text().to_string();
    assert!(text.contains("read_dir=err:"), "{text}");
    assert!(text.contains("passwd=err:"), "{text}");
    assert!(!text.contains("root:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_directory_is_the_only_one_visible() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("visible.txt"), "x").unwrap();
    let policy = Policy {
        preopen: Some(Preopen {
            host: dir.path().to_path_buf(),
            guest: "/".into(),
            writable: false,
        }),
        ..Policy::default()
    };
    let sb = sandbox(policy);
    let out = run(
        &sb,
        artifacts::HOSTILE_FILES,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap();
    let text = out.answer.text().to_string();
    assert!(text.contains("read_dir=ok:visible.txt"), "{text}");
    assert!(text.contains("passwd=err:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_not_granted() {
    let sb = sandbox(Policy::default());
    let err = sb
        .compile(Arc::from(artifacts::HOSTILE_SOCKETS))
        .await
        .unwrap_err();
    let CompileError::NotGranted(missing) = &err else {
        panic!("expected not granted, got {err}");
    };
    assert!(
        missing
            .names()
            .iter()
            .all(|n| n.starts_with("wasi:sockets/")),
        "{missing}"
    );
    assert!(
        missing
            .names()
            .iter()
            .any(|n| n.starts_with("wasi:sockets/tcp")),
        "{missing}"
    );
    assert!(
        err.to_string().starts_with("not granted: wasi:sockets/"),
        "{err}"
    );
    assert_eq!(sb.cached_components(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_import_is_refused_before_compiling() {
    let sb = sandbox(Policy::default());
    let err = sb
        .compile(Arc::from(artifacts::HOSTILE_IMPORT))
        .await
        .unwrap_err();
    let CompileError::NotGranted(missing) = &err else {
        panic!("expected not granted, got {err}");
    };
    assert_eq!(missing.names(), ["evil:net/raw@0.1.0"]);
    assert_eq!(missing.missing[0].reason, MissingReason::Unknown);
    assert!(err.to_string().contains("evil:net/raw@0.1.0"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_host_info_follow_the_policy() {
    let provider = TestProvider::start(Service::Echo).await;
    let say = r#"courier:echo/echo.say("hi")"#;

    // Not granted: refused before compiling, both interfaces listed.
    let sb = sandbox(Policy::default());
    let err = sb
        .compile(Arc::from(artifacts::ECHO_OPERATOR))
        .await
        .unwrap_err();
    let CompileError::NotGranted(missing) = err else {
        panic!("{err}")
    };
    assert_eq!(
        missing.names(),
        [
            "courier:proxy/host-info@0.1.0",
            "courier:proxy/operator@0.1.0"
        ]
    );

    // Approve all, only `os` allowed.
    let mut policy = Policy::permissive(OperatorAnswer::ApproveAll);
    policy.allowed_facts = ["os".to_string()].into();
    let sb = sandbox(policy);
    let out = run(&sb, artifacts::ECHO_OPERATOR, provider.target(), say)
        .await
        .unwrap();
    let expected = format!(
        "ok(\"confirmed=true facts=os={} answer=echo: hi\")",
        std::env::consts::OS
    );
    assert_eq!(out.answer.text(), expected);
    assert_eq!(
        out.logs.transcript,
        [
            "display: echo-operator: hi",
            "confirm: proceed? -> yes (policy)"
        ]
    );
    // What the proxy wrote to stdout and stderr is kept (and logged), not lost.
    assert_eq!(out.logs.stdout, "echo-operator on stdout: hi\n");
    assert_eq!(out.logs.stderr, "echo-operator on stderr: 2 bytes\n");

    // Deny all: the provider is not called.
    let sb = sandbox(Policy::permissive(OperatorAnswer::DenyAll));
    let out = run(&sb, artifacts::ECHO_OPERATOR, provider.target(), say)
        .await
        .unwrap();
    assert!(
        out.answer.text().contains("confirmed=false"),
        "{}",
        out.answer
    );
    assert!(
        out.answer.text().contains("answer=skipped"),
        "{}",
        out.answer
    );
    assert!(out.answer.text().contains("arch="), "{}", out.answer);
    assert_eq!(out.logs.provider_calls, 0);
}
