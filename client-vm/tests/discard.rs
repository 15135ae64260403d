//! Discard is real: after a run no store remains, and over many runs the process's
//! resident memory returns to where it was. Alone in its own test binary, so that no other
//! test's allocations move the RSS it measures.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Service, TestProvider, nowhere, rss, run, sandbox};
use courier_client::Policy;
use courier_proxy_artifacts as artifacts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_is_real_and_memory_returns() {
    let provider = TestProvider::start(Service::Kv).await;
    let sb = sandbox(Policy::default());
    let say = r#"courier:kv/store.set("k", "v")"#;
    // Warm up: compile, pool slots, connection, allocator arenas.
    for _ in 0..50 {
        run(&sb, artifacts::KV, provider.target(), say)
            .await
            .unwrap();
    }
    let before = rss();
    for _ in 0..500 {
        let out = run(&sb, artifacts::KV, provider.target(), say)
            .await
            .unwrap();
        assert!(out.answer.is_ok());
        assert_eq!(sb.live_stores(), 0);
    }
    let after = rss();
    let grown = after.saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "RSS grew by {} KiB over 500 runs ({} -> {} KiB)",
        grown >> 10,
        before >> 10,
        after >> 10
    );
    // Past the allocator's settling, 2,000 more runs must not move it: a leak of 1 KiB a
    // run would show as 2 MiB here.
    for _ in 0..2000 {
        run(&sb, artifacts::KV, provider.target(), say)
            .await
            .unwrap();
    }
    let settled = rss();
    assert!(
        settled.saturating_sub(after) < 2 << 20,
        "RSS grew by {} KiB over 2,000 more runs ({} -> {} KiB)",
        settled.saturating_sub(after) >> 10,
        after >> 10,
        settled >> 10
    );
    assert_eq!(sb.live_stores(), 0);
    // Hostile runs that filled their memory give it back too.
    let mut policy = Policy::default();
    policy.limits.memory_bytes = 48 << 20;
    let sb = sandbox(policy);
    run(
        &sb,
        artifacts::HOSTILE_ALLOC,
        nowhere(),
        r#"courier:echo/echo.say("x")"#,
    )
    .await
    .unwrap_err();
    let before = rss();
    for _ in 0..5 {
        run(
            &sb,
            artifacts::HOSTILE_ALLOC,
            nowhere(),
            r#"courier:echo/echo.say("x")"#,
        )
        .await
        .unwrap_err();
    }
    let after = rss();
    assert!(
        after.saturating_sub(before) < 24 << 20,
        "RSS grew by {} KiB over 5 runs of hostile-alloc",
        after.saturating_sub(before) >> 10
    );
    assert_eq!(sb.live_stores(), 0);
}
