//! The sandbox without a registry: proxies run directly against an in-test provider;
//! answers, state across calls, provider failures as typed errors, both compilers and
//! concurrent runs. Limits are in `sandbox_limits.rs`, grants in `sandbox_capabilities.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Service, TestProvider, compile, hostile, nowhere, run, sandbox};
use courier_client::{
    Answer, CallSpec, CompilerChoice, Invocation, Policy, ProviderError, RunError, Sandbox,
    SandboxConfig,
};
use courier_proxy_artifacts as artifacts;
use std::sync::Arc;
use std::time::{Duration, Instant};
fn ok(text: &str) -> Answer {
    Answer::Ok(text.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_answer_comes_from_the_provider() {
    let provider = TestProvider::start(Service::Echo).await;
    let sb = sandbox(Policy::default());
    let out = run(
        &sb,
        artifacts::ECHO,
        provider.target(),
        r#"courier:echo/echo.say("hi")"#,
    )
    .await
    .unwrap();
    assert_eq!(out.answer, ok(r#"ok("echo: hi")"#));
    assert_eq!(out.logs.provider_calls, 1);
    assert!(out.logs.provider_failures.is_empty());
    assert_eq!(sb.live_stores(), 0);
    // A version in the call is honoured.
    let out = run(
        &sb,
        artifacts::ECHO,
        provider.target(),
        r#"courier:echo/echo@0.1.0.say("a\nb")"#,
    )
    .await
    .unwrap();
    assert_eq!(out.answer, ok(r#"ok("echo: a\nb")"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_keeps_state_across_calls() {
    let provider = TestProvider::start(Service::Kv).await;
    let sb = sandbox(Policy::default());
    let call = |c: &'static str| run(&sb, artifacts::KV, provider.target(), c);
    assert_eq!(
        call(r#"courier:kv/store.get("a")"#).await.unwrap().answer,
        ok("ok(none)")
    );
    assert_eq!(
        call(r#"courier:kv/store.set("a", "1")"#)
            .await
            .unwrap()
            .answer,
        ok("ok")
    );
    assert_eq!(
        call(r#"courier:kv/store.set("b", "two")"#)
            .await
            .unwrap()
            .answer,
        ok("ok")
    );
    assert_eq!(
        call(r#"courier:kv/store.get("b")"#).await.unwrap().answer,
        ok(r#"ok(some("two"))"#)
    );
    assert_eq!(
        call("courier:kv/store.keys()").await.unwrap().answer,
        ok(r#"ok(["a", "b"])"#)
    );
    assert_eq!(
        call(r#"courier:kv/store.delete("a")"#)
            .await
            .unwrap()
            .answer,
        ok("ok(true)")
    );
    assert_eq!(
        call(r#"courier:kv/store.delete("a")"#)
            .await
            .unwrap()
            .answer,
        ok("ok(false)")
    );
    assert_eq!(
        call("courier:kv/store.keys()").await.unwrap().answer,
        ok(r#"ok(["b"])"#)
    );
    assert_eq!(sb.cached_components(), 1);
    assert_eq!(sb.live_stores(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_is_a_clear_error_within_the_timeout() {
    let mut policy = Policy::default();
    policy.limits.provider_timeout = Duration::from_millis(500);
    let sb = sandbox(policy);
    compile(&sb, artifacts::ECHO).await;
    let started = Instant::now();
    let out = run(
        &sb,
        artifacts::ECHO,
        nowhere(),
        r#"courier:echo/echo.say("hi")"#,
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The proxy got an error string and returned it: its own error, not a host failure.
    let Answer::ProxyError(text) = &out.answer else {
        panic!("expected the proxy's error, got {:?}", out.answer);
    };
    assert!(
        text.contains("unreachable") || text.contains("did not answer"),
        "{text}"
    );
    assert_eq!(out.logs.provider_failures.len(), 1);
    assert!(matches!(
        out.logs.provider_failures[0],
        ProviderError::Unreachable { .. } | ProviderError::Timeout(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_with_another_key_is_a_pin_mismatch() {
    let provider = TestProvider::start(Service::Echo).await;
    let sb = sandbox(Policy::default());
    let mut target = provider.target();
    let pinned = courier_transport::Identity::generate().unwrap().pin();
    target.pin = pinned;
    let out = run(
        &sb,
        artifacts::ECHO,
        target,
        r#"courier:echo/echo.say("hi")"#,
    )
    .await
    .unwrap();
    assert!(!out.answer.is_ok());
    assert!(
        out.answer.text().contains("presented TLS key"),
        "{}",
        out.answer
    );
    match &out.logs.provider_failures[..] {
        [ProviderError::PinMismatch { expected, got, .. }] => {
            assert_eq!(*expected, pinned);
            assert_eq!(*got, provider.identity.pin());
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    // The right pin still works from the same sandbox.
    let out = run(
        &sb,
        artifacts::ECHO,
        provider.target(),
        r#"courier:echo/echo.say("ok")"#,
    )
    .await
    .unwrap();
    assert_eq!(out.answer, ok(r#"ok("echo: ok")"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_are_typed_errors() {
    let sb = sandbox(Policy::default());
    let compiled = compile(&sb, artifacts::ECHO).await;
    let exports = &compiled.interfaces().exports;
    let prep = |c: &str| {
        Invocation::prepare(
            compiled.component(),
            exports,
            &c.parse::<CallSpec>().unwrap(),
        )
    };
    assert!(prep(r#"courier:echo/echo.say("x")"#).is_ok());
    assert!(matches!(
        prep(r#"courier:echo/echo.shout("x")"#),
        Err(courier_client::InvokeError::NoFunction { .. })
    ));
    assert!(matches!(
        prep(r#"courier:kv/store.get("x")"#),
        Err(courier_client::InvokeError::NoInterface(_))
    ));
    assert!(matches!(
        prep(r#"courier:echo/echo@0.2.0.say("x")"#),
        Err(courier_client::InvokeError::NoInterface(_))
    ));
    assert!(matches!(
        prep("courier:echo/echo.say(42)"),
        Err(courier_client::InvokeError::Arguments { .. })
    ));
    assert!(matches!(
        prep(r#"courier:echo/echo.say("a", "b")"#),
        Err(courier_client::InvokeError::Arguments { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_work() {
    let provider = TestProvider::start(Service::Echo).await;
    let sb = sandbox(Policy::default());
    let compiled = compile(&sb, artifacts::ECHO).await;
    let out = sb
        .run_typed::<(String,), (Result<String, String>,)>(
            &compiled,
            provider.target(),
            "courier:echo/echo",
            "say",
            ("typed".to_string(),),
        )
        .await
        .unwrap();
    assert_eq!(out.value.0, Ok("echo: typed".to_string()));
    assert_eq!(sb.live_stores(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_compilers_and_strict_discard() {
    let provider = TestProvider::start(Service::Echo).await;
    for compiler in [CompilerChoice::Cranelift, CompilerChoice::Winch] {
        let config = SandboxConfig {
            compiler,
            cache_compiled: false,
            ..SandboxConfig::default()
        };
        let sb = Sandbox::new(Policy::default(), config).unwrap();
        for _ in 0..3 {
            let out = run(
                &sb,
                artifacts::ECHO,
                provider.target(),
                r#"courier:echo/echo.say("w")"#,
            )
            .await
            .unwrap();
            assert_eq!(out.answer, ok(r#"ok("echo: w")"#));
            assert_eq!(sb.cached_components(), 0);
            assert_eq!(sb.live_stores(), 0);
        }
        // Both compilers stop a loop, a runaway allocation, a deep recursion and a runaway
        // table.
        let mut policy = Policy::default();
        policy.limits.cpu_time = Duration::from_millis(200);
        policy.limits.memory_bytes = 32 << 20;
        let config = SandboxConfig {
            compiler,
            ..SandboxConfig::default()
        };
        let sb = Sandbox::new(policy, config).unwrap();
        let say = r#"courier:echo/echo.say("x")"#;
        let err = run(&sb, artifacts::HOSTILE_LOOP, nowhere(), say)
            .await
            .unwrap_err();
        assert!(
            matches!(err.error, RunError::CpuDeadline { .. }),
            "{compiler:?}: {err}"
        );
        let err = run(&sb, artifacts::HOSTILE_ALLOC, nowhere(), say)
            .await
            .unwrap_err();
        assert!(
            matches!(err.error, RunError::MemoryLimit { .. }),
            "{compiler:?}: {err}"
        );
        let err = run(&sb, artifacts::HOSTILE_RECURSE, nowhere(), say)
            .await
            .unwrap_err();
        assert!(
            matches!(err.error, RunError::StackOverflow),
            "{compiler:?}: {err}"
        );
        let err = run(&sb, &hostile::table_grower(1000), nowhere(), say)
            .await
            .unwrap_err();
        assert!(
            matches!(err.error, RunError::TableLimit { limit: 20_000 }),
            "{compiler:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_share_the_pool() {
    let provider = TestProvider::start(Service::Echo).await;
    let sb = Arc::new(sandbox(Policy::default()));
    compile(&sb, artifacts::ECHO).await;
    let mut tasks = Vec::new();
    // More tasks than pool slots: the extra ones wait for a slot.
    for i in 0..24 {
        let sb = sb.clone();
        let target = provider.target();
        tasks.push(tokio::spawn(async move {
            let call = format!("courier:echo/echo.say(\"{i}\")");
            run(&sb, artifacts::ECHO, target, &call)
                .await
                .unwrap()
                .answer
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), ok(&format!("ok(\"echo: {i}\")")));
    }
    assert_eq!(sb.live_stores(), 0);
}
