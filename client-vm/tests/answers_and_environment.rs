//! Promises about what a proxy sees and what it may return, tested directly: its environment
//! and arguments are empty (a proxy reads them and reports), and a typed call's answer is
//! held to the same output cap as a dynamic call's, at the same byte.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Service, TestProvider, compile, nowhere, run, sandbox};
use courier_client::{
    Policy, ProviderTarget, RunError, RunFailure, Sandbox, TypedOutput, values_size,
};
use courier_proxy_artifacts as artifacts;

const SAY: &str = r#"courier:echo/echo.say("x")"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_sees_no_environment_variables_and_no_arguments() {
    // There is something to leak: this process has variables (PATH at least).
    assert!(std::env::vars_os().next().is_some());
    let sb = sandbox(Policy::default());
    let out = run(&sb, artifacts::HOSTILE_FILES, nowhere(), SAY)
        .await
        .unwrap();
    // The answer in WAVE: `ok("read_dir=...\npasswd=...\nenv=<n>:<vars>\nargs=<n>:<args>")`.
    let text = out.answer.text().to_string();
    assert!(text.contains(r#"\nenv=0:\nargs=0:")"#), "{text}");
}

/// The echo proxy's `say("typed")`, as a typed call.
async fn typed(
    sb: &Sandbox,
    target: ProviderTarget,
) -> Result<TypedOutput<(Result<String, String>,)>, RunFailure> {
    let compiled = compile(sb, artifacts::ECHO).await;
    sb.run_typed::<(String,), (Result<String, String>,)>(
        &compiled,
        target,
        "courier:echo/echo",
        "say",
        ("typed".to_string(),),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_and_dynamic_calls_share_the_output_cap_to_the_byte() {
    let provider = TestProvider::start(Service::Echo).await;
    let say = r#"courier:echo/echo.say("typed")"#;
    // The dynamic answer's size, measured as the cap measures it.
    let out = run(
        &sandbox(Policy::default()),
        artifacts::ECHO,
        provider.target(),
        say,
    )
    .await
    .unwrap();
    let size = values_size(&out.values, usize::MAX);
    assert!(size > 0);

    let mut policy = Policy::default();
    policy.limits.output_bytes = size;
    let sb = sandbox(policy.clone());
    run(&sb, artifacts::ECHO, provider.target(), say)
        .await
        .unwrap();
    assert_eq!(
        typed(&sb, provider.target())
            .await
            .unwrap()
            .value
            .0
            .unwrap(),
        "echo: typed"
    );

    policy.limits.output_bytes = size - 1;
    let sb = sandbox(policy);
    let dynamic = run(&sb, artifacts::ECHO, provider.target(), say)
        .await
        .unwrap_err();
    let typed = typed(&sb, provider.target()).await.unwrap_err();
    for err in [&dynamic.error, &typed.error] {
        assert!(
            matches!(err, RunError::OutputTooLarge { size: s, limit } if *s == size && *limit == size - 1),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_typed_answer_is_refused_by_the_output_cap() {
    // Room to build a 64 MiB answer, a cap of 1 MiB on what comes out.
    let mut policy = Policy::default();
    policy.limits.memory_bytes = 192 << 20;
    policy.limits.output_bytes = 1 << 20;
    let sb = sandbox(policy);
    let compiled = compile(&sb, artifacts::HOSTILE_HUGE).await;
    let err = sb
        .run_typed::<(String,), (Result<String, String>,)>(
            &compiled,
            nowhere(),
            "courier:echo/echo",
            "say",
            ("x".to_string(),),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.error, RunError::OutputTooLarge { limit, .. } if limit == 1 << 20),
        "{}",
        err.error
    );
    assert_eq!(sb.live_stores(), 0);
}
