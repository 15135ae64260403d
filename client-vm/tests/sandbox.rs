//! The sandbox without a registry: every proxy artifact run directly against an in-test
//! provider, hostile ones included; each failure is a typed error in bounded time and the
//! same sandbox goes on serving.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Service, TestProvider, compile, hostile, nowhere, run, sandbox};
use courier_client::{
    Answer, CallSpec, CompileError, CompilerChoice, Invocation, MissingReason, OperatorAnswer,
    Policy, Preopen, ProviderError, RunError, Sandbox, SandboxConfig,
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
async fn infinite_loop_hits_the_cpu_deadline_in_bounded_time() {
    let mut policy = Policy::default();
    policy.limits.cpu_time = Duration::from_millis(300);
    let sb = sandbox(policy);
    compile(&sb, artifacts::HOSTILE_LOOP).await;
    let started = Instant::now();
    let err = run(
        &sb,
        artifacts::HOSTILE_LOOP,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err.error, RunError::CpuDeadline { .. }), "{err}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(sb.live_stores(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_deadline_stops_a_loop_when_it_comes_first() {
    let mut policy = Policy::default();
    policy.limits.cpu_time = Duration::from_secs(5);
    policy.limits.wall_time = Duration::from_millis(250);
    let sb = sandbox(policy);
    let started = Instant::now();
    let err = run(
        &sb,
        artifacts::HOSTILE_LOOP,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    assert!(matches!(err.error, RunError::WallDeadline { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_cap() {
    let mut policy = Policy::default();
    policy.limits.memory_bytes = 32 << 20;
    let sb = sandbox(policy);
    let err = run(
        &sb,
        artifacts::HOSTILE_ALLOC,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.error, RunError::MemoryLimit { limit } if limit == 32 << 20),
        "{err}"
    );
    assert_eq!(sb.live_stores(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_table_growth_hits_the_table_cap() {
    let mut policy = Policy::default();
    policy.limits.table_elements = 5_000;
    let sb = sandbox(policy);
    let say = r#"courier:echo/echo.say("x")"#;
    // `table.grow` in an endless loop that ignores refusals: stopped at the cap by a trap,
    // reported as such (not left to spin until the CPU deadline).
    let grower = hostile::table_grower(1000);
    let err = run(&sb, &grower, nowhere(), say).await.unwrap_err();
    assert!(
        matches!(err.error, RunError::TableLimit { limit: 5_000 }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "proxy exceeded its table cap of 5000 elements"
    );
    assert_eq!(sb.live_stores(), 0);
    // A table's own declared maximum, below the cap, is the guest's business: `table.grow`
    // answers -1 there and the run goes on to its answer.
    let filler = hostile::table_filler(100);
    let out = run(&sb, &filler, nowhere(), say).await.unwrap();
    assert_eq!(out.answer, ok(r#"ok("table full")"#));
    // The same sandbox runs the grower again and stops it again: nothing was left behind.
    let err = run(&sb, &grower, nowhere(), say).await.unwrap_err();
    assert!(matches!(err.error, RunError::TableLimit { .. }), "{err}");
    assert_eq!(sb.live_stores(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_overflows_the_stack_cleanly() {
    let sb = sandbox(Policy::default());
    let err = run(
        &sb,
        artifacts::HOSTILE_RECURSE,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    assert!(matches!(err.error, RunError::StackOverflow), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_answer_is_refused() {
    // With the default 64 MiB memory cap the 64 MiB string cannot even be built.
    let sb = sandbox(Policy::default());
    let err = run(
        &sb,
        artifacts::HOSTILE_HUGE,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err.error,
            RunError::MemoryLimit { .. } | RunError::OutputTooLarge { .. }
        ),
        "{err}"
    );
    // With room to build it, the answer is refused by the output cap.
    let mut policy = Policy::default();
    policy.limits.memory_bytes = 192 << 20;
    policy.limits.output_bytes = 1 << 20;
    let sb = sandbox(policy);
    let err = run(
        &sb,
        artifacts::HOSTILE_HUGE,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.error, RunError::OutputTooLarge { size, limit } if size > limit && limit == 1 << 20),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_clean_error() {
    let sb = sandbox(Policy::default());
    let err = run(
        &sb,
        artifacts::HOSTILE_TRAP,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    match &err.error {
        RunError::Trap { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other}"),
    }
    // The panic message went to the proxy's stderr, which the client keeps.
    assert!(
        err.logs.stderr.contains("deliberate panic"),
        "{:?}",
        err.logs.stderr
    );
}

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
async fn oversized_component_is_refused_before_compiling() {
    let mut policy = Policy::default();
    policy.limits.component_bytes = 1024;
    let sb = sandbox(policy);
    let err = sb.compile(Arc::from(artifacts::ECHO)).await.unwrap_err();
    assert!(
        matches!(err, CompileError::TooLarge { limit: 1024, .. }),
        "{err}"
    );
    let err = sb
        .compile(Arc::from(&b"not a component"[..]))
        .await
        .unwrap_err();
    assert!(matches!(err, CompileError::Inspect(_)), "{err}");
}

/// A component within the default 8 MiB cap that is hard on compilers: four functions of
/// 49,000 locals, all added up, in 60,000 nested blocks left by a `br_table` of 60,000
/// targets (just under the 65,520 targets wasmtime accepts). About 2.3 MB; compiled here in
/// about 1 s by Winch and 3 s by Cranelift, and it runs.
fn within_cap_bomb() -> Vec<u8> {
    hostile::compile_bomb(60_000, 49_000, 4)
}

/// Hang guard for a compilation; never a claim about speed.
const COMPILE_GUARD: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_bomb_over_the_cap_is_refused_before_compiling() {
    let sb = sandbox(Policy::default());
    let cap = sb.policy().limits.component_bytes;
    // Sixteen copies of the function: a valid component, over the default cap.
    let bomb = hostile::compile_bomb(60_000, 49_000, 16);
    assert!(bomb.len() as u64 > cap, "{} bytes", bomb.len());
    let err = sb.compile(Arc::from(bomb.as_slice())).await.unwrap_err();
    assert!(
        matches!(err, CompileError::TooLarge { size, limit } if size == bomb.len() as u64 && limit == cap),
        "{err}"
    );
    // The size is the first check: bytes over the cap are refused unread, so garbage is
    // TooLarge too, not an unreadable component.
    let mut garbage = b"\0asm\x0d\0\x01\0".to_vec();
    garbage.resize(cap as usize + 1, 0xff);
    let err = sb.compile(Arc::from(garbage)).await.unwrap_err();
    assert!(
        matches!(err, CompileError::TooLarge { size, .. } if size == cap + 1),
        "{err}"
    );
    // A cap one byte under the bomb that compiles below refuses it the same way.
    let bomb = within_cap_bomb();
    let mut policy = Policy::default();
    policy.limits.component_bytes = bomb.len() as u64 - 1;
    let small = sandbox(policy);
    let err = small.compile(Arc::from(bomb.as_slice())).await.unwrap_err();
    assert!(
        matches!(err, CompileError::TooLarge { size, limit } if size == limit + 1),
        "{err}"
    );
    assert_eq!(sb.cached_components(), 0);
    assert_eq!(small.cached_components(), 0);
}

/// The bomb is compiled off the async thread: on a single-threaded runtime, echo calls on
/// the same sandbox keep completing while it compiles (a compilation on the runtime's thread
/// would let none through). Then the bomb itself runs.
#[tokio::test(flavor = "current_thread")]
async fn compile_bomb_within_the_cap_compiles_off_the_async_threads() {
    let provider = TestProvider::start(Service::Echo).await;
    let bomb: Arc<[u8]> = Arc::from(within_cap_bomb());
    let say = r#"courier:echo/echo.say("hi")"#;
    for compiler in [CompilerChoice::Winch, CompilerChoice::Cranelift] {
        let config = SandboxConfig {
            compiler,
            ..SandboxConfig::default()
        };
        let sb = Arc::new(Sandbox::new(Policy::default(), config).unwrap());
        assert!(bomb.len() as u64 <= sb.policy().limits.component_bytes);
        compile(&sb, artifacts::ECHO).await;

        let compiling = tokio::spawn({
            let (sb, bomb) = (sb.clone(), bomb.clone());
            async move { tokio::time::timeout(COMPILE_GUARD, sb.compile(bomb)).await }
        });
        let mut answered_meanwhile = 0;
        while !compiling.is_finished() {
            let out = run(&sb, artifacts::ECHO, provider.target(), say)
                .await
                .unwrap();
            assert_eq!(out.answer, ok(r#"ok("echo: hi")"#), "{compiler:?}");
            if !compiling.is_finished() {
                answered_meanwhile += 1;
            }
        }
        assert!(answered_meanwhile >= 1, "{compiler:?}");
        let (compiled, cached) = compiling
            .await
            .unwrap()
            .expect("compilation hung")
            .unwrap_or_else(|e| panic!("{compiler:?}: {e}"));
        assert!(!cached);
        // It compiled to working code.
        let out = run(&sb, &bomb, nowhere(), say).await.unwrap();
        assert_eq!(out.answer, ok(r#"ok("defused")"#), "{compiler:?}");
        assert_eq!(compiled.size(), bomb.len());
        assert_eq!(sb.live_stores(), 0);
    }
}

/// Past a compiler's implementation limit (a `br_table` of more than 65,520 targets) the
/// answer is a typed compile error from both compilers, and the sandbox goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_bomb_past_the_compilers_limits_is_a_typed_error() {
    let provider = TestProvider::start(Service::Echo).await;
    let bomb = hostile::compile_bomb(70_000, 16, 1);
    for compiler in [CompilerChoice::Winch, CompilerChoice::Cranelift] {
        let config = SandboxConfig {
            compiler,
            ..SandboxConfig::default()
        };
        let sb = Sandbox::new(Policy::default(), config).unwrap();
        let err = tokio::time::timeout(COMPILE_GUARD, sb.compile(Arc::from(bomb.as_slice())))
            .await
            .expect("compilation hung")
            .unwrap_err();
        assert!(
            matches!(err, CompileError::Compile(_)),
            "{compiler:?}: {err}"
        );
        assert_eq!(sb.cached_components(), 0);
        let out = run(
            &sb,
            artifacts::ECHO,
            provider.target(),
            r#"courier:echo/echo.say("hi")"#,
        )
        .await
        .unwrap();
        assert_eq!(out.answer, ok(r#"ok("echo: hi")"#), "{compiler:?}");
    }
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
async fn the_same_sandbox_survives_every_hostile_proxy() {
    let provider = TestProvider::start(Service::Echo).await;
    let mut policy = Policy::default();
    policy.limits.cpu_time = Duration::from_millis(200);
    policy.limits.memory_bytes = 32 << 20;
    let sb = sandbox(policy);
    let say = r#"courier:echo/echo.say("hi")"#;
    let table_grower = hostile::table_grower(1000);
    for (name, bytes) in [
        ("hostile-loop", artifacts::HOSTILE_LOOP),
        ("hostile-alloc", artifacts::HOSTILE_ALLOC),
        ("hostile-recurse", artifacts::HOSTILE_RECURSE),
        ("hostile-huge", artifacts::HOSTILE_HUGE),
        ("hostile-trap", artifacts::HOSTILE_TRAP),
        ("table-grower", &table_grower),
    ] {
        let err = run(&sb, bytes, provider.target(), say).await.unwrap_err();
        assert_eq!(sb.live_stores(), 0, "{name}");
        let out = run(&sb, artifacts::ECHO, provider.target(), say)
            .await
            .unwrap();
        assert_eq!(out.answer, ok(r#"ok("echo: hi")"#), "after {name}: {err}");
    }
    let compile_bomb = hostile::compile_bomb(70_000, 16, 1);
    for bytes in [
        artifacts::HOSTILE_SOCKETS,
        artifacts::HOSTILE_IMPORT,
        &compile_bomb,
    ] {
        assert!(sb.compile(Arc::from(bytes)).await.is_err());
        let out = run(&sb, artifacts::ECHO, provider.target(), say)
            .await
            .unwrap();
        assert!(out.answer.is_ok());
    }
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
