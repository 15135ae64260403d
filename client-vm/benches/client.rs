//! Benchmarks of the client: one call's phases cold, cold from a fresh client with the
//! compiled-code directory warm (what a repeated `courier call` does), and with the
//! compiled cache, instances per second with the pooling allocator, Cranelift vs Winch
//! compile time, and a direct native QUIC request to the same provider on an established
//! connection for comparison.
//!
//! `cargo bench -p courier-client`. Everything runs on loopback against a real registry and
//! the example echo provider. Before the criterion groups, a phase table (medians over many
//! calls) is printed to stderr.
#![allow(clippy::unwrap_used, missing_docs)]

use courier_client::{
    CallSpec, Client, CompilerChoice, DEFAULT_LOOKUP_TTL, Invocation, PhaseTimings, Policy,
    ProviderTarget, Sandbox, SandboxConfig,
};
use courier_proxy_artifacts as artifacts;
use courier_transport::StreamPool;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Criterion's custom timing: `iters` awaits of `f` inside one `block_on`.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f().await);
        }
        start.elapsed()
    })
}

/// Like [`timed`], but the loop runs as a task on the runtime's workers, where an
/// application's calls run, so QUIC wake-ups stay among the workers instead of crossing to
/// the bench thread on every packet.
fn timed_task<C, F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, ctx: Arc<C>, f: F) -> Duration
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>) -> Fut + Send + 'static,
    Fut: std::future::Future + Send,
{
    rt.block_on(rt.spawn(async move {
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f(ctx.clone()).await);
        }
        start.elapsed()
    }))
    .unwrap()
}

/// `runs` calls of `proxy`, each by a fresh client with the compiled-code directory warm
/// (one call beforehand writes it): the phases of a repeated `courier call`, process
/// start and client setup excepted.
fn from_disk_calls(
    w: &World,
    compiler: CompilerChoice,
    proxy: &'static str,
    runs: usize,
) -> Vec<(PhaseTimings, Duration)> {
    let fresh_call = |c: Client| {
        w.rt.block_on(w.rt.spawn(async move { call_full(&c, proxy).await }))
            .unwrap()
    };
    fresh_call(client_from_disk(w, compiler));
    (0..runs)
        .map(|_| {
            let (t, provider) = fresh_call(client_from_disk(w, compiler));
            assert!(t.from_disk, "{t}");
            (t, provider)
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Prints medians of each phase over `n` calls.
fn phase_table(w: &World) {
    let n = 2000;
    let mut rows: Vec<(String, Vec<(PhaseTimings, Duration)>)> = Vec::new();
    let none = Duration::ZERO;
    let watched = DEFAULT_LOOKUP_TTL;
    let cranelift = CompilerChoice::Cranelift;
    let winch = CompilerChoice::Winch;
    for (label, compiler, cache, lookup_ttl, proxy) in [
        (
            "warm echo (watched lookup cache)",
            winch,
            true,
            watched,
            "acme/echo",
        ),
        (
            "warm echo (registry lookup each call)",
            winch,
            true,
            none,
            "acme/echo",
        ),
        (
            "warm echo, Cranelift code (watched)",
            cranelift,
            true,
            watched,
            "acme/echo",
        ),
        (
            "warm digest, Winch code (watched)",
            winch,
            true,
            watched,
            "acme/digest",
        ),
        (
            "warm digest, Cranelift code (watched)",
            cranelift,
            true,
            watched,
            "acme/digest",
        ),
        (
            "cold echo 42 KB (cranelift)",
            cranelift,
            false,
            none,
            "acme/echo",
        ),
        ("cold echo 42 KB (winch)", winch, false, none, "acme/echo"),
        (
            "cold files 86 KB (cranelift)",
            cranelift,
            false,
            none,
            "acme/files",
        ),
        ("cold files 86 KB (winch)", winch, false, none, "acme/files"),
        (
            "cold digest 126 KB (cranelift)",
            cranelift,
            false,
            none,
            "acme/digest",
        ),
        (
            "cold digest 126 KB (winch)",
            winch,
            false,
            none,
            "acme/digest",
        ),
    ] {
        let c = client_with(w, compiler, cache, lookup_ttl);
        let runs = if cache { n } else { 30 };
        let t =
            w.rt.block_on(w.rt.spawn(async move {
                call(&c, proxy).await; // warm up the connection (and the cache, when on)
                let mut t = Vec::new();
                for _ in 0..runs {
                    t.push(call_full(&c, proxy).await);
                }
                t
            }))
            .unwrap();
        rows.push((label.to_string(), t));
    }
    for (label, compiler) in [
        ("digest 126 KB from disk (cranelift)", cranelift),
        ("digest 126 KB from disk (winch)", winch),
    ] {
        rows.push((
            label.to_string(),
            from_disk_calls(w, compiler, "acme/digest", 30),
        ));
    }
    eprintln!(
        "\nphase medians in µs (lookup, fetch, verify, compile, instantiate, invoke (of which provider), drop, total):"
    );
    for (label, t) in &rows {
        let m =
            |f: fn(&PhaseTimings) -> Duration| us(median(t.iter().map(|(p, _)| f(p)).collect()));
        let provider = us(median(t.iter().map(|(_, d)| *d).collect()));
        eprintln!(
            "  {label:32} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} ({provider:>7}) {:>8} {:>9}",
            m(|p| p.lookup),
            m(|p| p.fetch),
            m(|p| p.verify),
            m(|p| p.compile),
            m(|p| p.instantiate),
            m(|p| p.invoke),
            m(|p| p.drop),
            m(|p| p.total),
        );
    }
    let conn = w.rt.block_on(native(&w.provider));
    let (t, kept) =
        w.rt.block_on(w.rt.spawn(async move {
            let mut t = Vec::new();
            for _ in 0..n {
                let s = Instant::now();
                native_call(&conn).await;
                t.push(s.elapsed());
            }
            let streams = StreamPool::new();
            let mut kept = Vec::new();
            for _ in 0..n {
                let s = Instant::now();
                native_kept_call(&conn, &streams).await;
                kept.push(s.elapsed());
            }
            conn.close(0u32.into(), b"done");
            (t, kept)
        }))
        .unwrap();
    eprintln!("\ntotals in µs (p10, p50, p90, p99, mean):");
    let dist = |label: &str, mut t: Vec<Duration>| {
        t.sort();
        let at = |q: usize| us(t[(t.len() * q / 100).min(t.len() - 1)]);
        let mean = t.iter().sum::<Duration>() / t.len().max(1) as u32;
        eprintln!(
            "  {label:40} {:>8} {:>8} {:>8} {:>8} {:>8}",
            at(10),
            at(50),
            at(90),
            at(99),
            us(mean)
        );
    };
    dist("native QUIC request (a stream each)", t);
    dist("native QUIC request (kept stream)", kept);
    for (label, r) in &rows {
        dist(label, r.iter().map(|(p, _)| p.total).collect());
    }
}

fn benches(c: &mut Criterion) {
    let w = world();
    // `COURIER_BENCH_NO_TABLE=1` skips the phase table (e.g. when profiling one benchmark).
    if std::env::var_os("COURIER_BENCH_NO_TABLE").is_none() {
        phase_table(&w);
    }

    // Direct provider request on an established connection: the floor.
    let conn = Arc::new(w.rt.block_on(native(&w.provider)));
    c.bench_function("native_quic_request", |b| {
        b.iter_custom(|n| {
            timed_task(
                &w.rt,
                n,
                conn.clone(),
                |c| async move { native_call(&c).await },
            )
        })
    });
    let kept = Arc::new((conn.as_ref().clone(), StreamPool::new()));
    c.bench_function("native_quic_request_kept_stream", |b| {
        b.iter_custom(|n| {
            timed_task(&w.rt, n, kept.clone(), |k| async move {
                native_kept_call(&k.0, &k.1).await
            })
        })
    });

    // Warm one-shot call: lookup, cached compile, instantiate, provider call, discard.
    // With the default watched lookup cache, then asking the registry on every call.
    for (name, lookup_ttl) in [
        ("warm_call_echo", DEFAULT_LOOKUP_TTL),
        ("warm_call_echo_registry_lookup", Duration::ZERO),
    ] {
        let warm = Arc::new(client_with(&w, CompilerChoice::Winch, true, lookup_ttl));
        w.rt.block_on(call(&warm, "acme/echo"));
        c.bench_function(name, |b| {
            b.iter_custom(|n| {
                timed_task(&w.rt, n, warm.clone(), |c| async move {
                    call(&c, "acme/echo").await
                })
            })
        });
    }

    // Cold calls: lookup, fetch, verify, compile, run, discard (no cache).
    let mut g = c.benchmark_group("cold_call");
    g.sample_size(20);
    for (compiler, label) in [
        (CompilerChoice::Cranelift, "cranelift"),
        (CompilerChoice::Winch, "winch"),
    ] {
        let cold = client(&w, compiler, false);
        for proxy in ["acme/echo", "acme/files", "acme/digest"] {
            g.bench_function(format!("{label}/{proxy}"), |b| {
                b.iter_custom(|n| timed(&w.rt, n, || call(&cold, proxy)))
            });
        }
        // A fresh client each call, the compiled-code directory warm: only the calls are
        // timed, not the clients' setup.
        g.bench_function(format!("{label}_from_disk/acme/digest"), |b| {
            b.iter_custom(|n| {
                from_disk_calls(&w, compiler, "acme/digest", n as usize)
                    .iter()
                    .map(|(t, _)| t.total)
                    .sum()
            })
        });
    }
    g.finish();

    // Reading a component's interfaces (done before compiling, to check its imports).
    let mut g = c.benchmark_group("inspect");
    for (name, bytes) in [
        ("echo", artifacts::ECHO),
        ("files", artifacts::HOSTILE_FILES),
        ("digest", artifacts::ECHO_DIGEST),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| courier_protocol::inspect(bytes).unwrap())
        });
    }
    g.finish();

    // Compile only: the 42 KB echo proxy and the 126 KB digest one (issue #16's first
    // compile), with each compiler.
    let mut g = c.benchmark_group("compile");
    g.sample_size(20);
    for (compiler, label) in [
        (CompilerChoice::Cranelift, "cranelift"),
        (CompilerChoice::Winch, "winch"),
    ] {
        let sb = Sandbox::new(
            Policy::default(),
            SandboxConfig {
                compiler,
                cache_compiled: false,
                ..SandboxConfig::default()
            },
        )
        .unwrap();
        for (proxy, bytes) in [
            ("echo", artifacts::ECHO),
            ("digest", artifacts::ECHO_DIGEST),
        ] {
            let bytes: Arc<[u8]> = Arc::from(bytes);
            g.bench_function(format!("{label}/{proxy}"), |b| {
                b.iter_custom(|n| {
                    timed(&w.rt, n, || async {
                        sb.compile(bytes.clone()).await.unwrap()
                    })
                })
            });
        }
    }
    g.finish();

    // Instance cost with the pooling allocator: fresh store, instantiate, drop; with each
    // slot returned to the kernel (0k) or reset in place up to 32 KiB (the default), 256 KiB
    // or more; the kept pages reset where a run dirtied them (`scan`, the default: Linux's
    // PAGEMAP_SCAN) or all of them (`all`), measured one after the other in one sitting.
    let mut g = c.benchmark_group("instance");
    g.throughput(Throughput::Elements(1));
    for keep in [0, 32 << 10, 256 << 10, 1 << 20, 4 << 20] {
        for (reset, dirty_only) in [("scan", true), ("all", false)] {
            if keep == 0 && !dirty_only {
                continue;
            }
            let sb = Sandbox::new(
                Policy::default(),
                SandboxConfig {
                    keep_resident_bytes: keep,
                    reset_dirty_pages_only: dirty_only,
                    ..SandboxConfig::default()
                },
            )
            .unwrap();
            let compiled =
                w.rt.block_on(sb.compile(Arc::from(artifacts::ECHO)))
                    .unwrap()
                    .0;
            g.bench_function(
                format!(
                    "pooling_instantiate_drop/keep_resident_{}k/{reset}",
                    keep >> 10
                ),
                |b| {
                    b.iter_custom(|n| {
                        timed(&w.rt, n, || async {
                            sb.instantiate_only(&compiled).await.unwrap()
                        })
                    })
                },
            );
        }
    }
    let sb = Sandbox::new(Policy::default(), SandboxConfig::default()).unwrap();
    let compiled =
        w.rt.block_on(sb.compile(Arc::from(artifacts::ECHO)))
            .unwrap()
            .0;
    // The anchor of the instance cost: the same component instantiated by wasmtime alone
    // on the default sandbox's engine (every import a trap, no host state, no limits).
    let bare = sb.bare(&compiled).unwrap();
    g.bench_function("bare_wasmtime_instantiate_drop", |b| {
        b.iter_custom(|n| {
            timed(&w.rt, n, || async {
                bare.instantiate_drop().await.unwrap()
            })
        })
    });
    // And one full sandbox run against the provider (connection kept).
    let target = ProviderTarget {
        endpoints: vec![w.provider.local_addr().to_string()],
        pin: w.provider.pin(),
    };
    let spec: CallSpec = SAY.parse().unwrap();
    let inv =
        Invocation::prepare(compiled.component(), &compiled.interfaces().exports, &spec).unwrap();
    g.bench_function("sandbox_run_echo", |b| {
        b.iter_custom(|n| {
            timed(&w.rt, n, || async {
                sb.run(&compiled, target.clone(), &inv).await.unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(client_benches, benches);
criterion_main!(client_benches);
