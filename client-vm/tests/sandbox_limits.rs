//! The sandbox's limits without a registry: hostile proxies (loops, memory, tables,
//! recursion, huge answers, traps, compile bombs) each end in a typed error in bounded
//! time, and the same sandbox goes on serving.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Service, TestProvider, compile, hostile, nowhere, run, sandbox};
use courier_client::{
    Answer, CompileError, CompilerChoice, Policy, RunError, Sandbox, SandboxConfig,
};
use courier_proxy_artifacts as artifacts;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ok(text: &str) -> Answer {
    Answer::Ok(text.to_string())
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
