//! The warm one-shot call against a native QUIC request to the same provider: courier's
//! whole call (cached candidates and compile, a fresh sandboxed instance, the provider
//! round trip from inside it, the discard) against plain Rust sending the same request
//! on an established connection, on a new stream each time and on a kept stream.

use crate::client_support::{World, call, client_with, native, native_call, native_kept_call};
use courier_bench::stats::Run;
use courier_client::{CompilerChoice, DEFAULT_LOOKUP_TTL};
use courier_transport::StreamPool;
use std::sync::Arc;
use std::time::Instant;

/// The three runs of `n` calls each, one after another in the same sitting.
pub struct Calls {
    pub warm: Run,
    pub native_new_stream: Run,
    pub native_kept_stream: Run,
}

/// Times `n` awaits of `f` (after `n / 10` to warm up) in a task on the runtime's workers.
async fn timed<C, F, Fut>(n: usize, ctx: Arc<C>, f: F) -> Run
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        for _ in 0..n / 10 {
            f(ctx.clone()).await;
        }
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            f(ctx.clone()).await;
            lat.push(t.elapsed().as_nanos() as u64);
        }
        Run::new(lat, None)
    })
    .await
    .expect("the timing task panicked")
}

/// Measures the three in `w`'s runtime.
pub fn measure(w: &World, n: usize) -> Calls {
    let client = Arc::new(client_with(
        w,
        CompilerChoice::Winch,
        true,
        DEFAULT_LOOKUP_TTL,
    ));
    let conn = Arc::new(w.rt.block_on(native(&w.provider)));
    let kept = Arc::new((conn.as_ref().clone(), StreamPool::new()));
    let warm = w.rt.block_on(timed(n, client, |c| async move {
        call(&c, "acme/echo").await;
    }));
    let native_new_stream = w.rt.block_on(timed(n, conn, |c| async move {
        native_call(&c).await;
    }));
    let native_kept_stream = w.rt.block_on(timed(n, kept, |k| async move {
        native_kept_call(&k.0, &k.1).await;
    }));
    Calls {
        warm,
        native_new_stream,
        native_kept_stream,
    }
}
