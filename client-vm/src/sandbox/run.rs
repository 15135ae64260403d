//! One run: a fresh store with its limits and deadlines, instantiation with the granted
//! imports only, the call (dynamic in WAVE values, or typed), the answer's size cap, the
//! logs collected, and the store dropped. A failure of any kind is a [`RunFailure`] with
//! what was logged up to it; the sandbox serves the next run.

use super::Sandbox;
use super::compile::Compiled;
use super::failure::{RunError, classify};
use super::store::RunScope;
use super::store::{RunState, Stop};
use crate::answer_size::AnswerSize;
use crate::invoke::{Answer, Invocation, InvokeError, answer, values_size};
use crate::provider::{ProviderError, ProviderTarget};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, ComponentNamedList, Instance, Lift, Lower, Val};

/// What a run printed and asked, and what its provider calls did.
#[derive(Debug, Default)]
pub struct RunLogs {
    /// The proxy's stdout (bounded).
    pub stdout: String,
    /// The proxy's stderr (bounded).
    pub stderr: String,
    /// Bytes of stdout and stderr dropped beyond the cap.
    pub dropped_stdio: usize,
    /// Operator transcript: displays, confirmations with their answers, progress.
    pub transcript: Vec<String>,
    /// Transcript lines dropped beyond the cap.
    pub dropped_transcript: usize,
    /// Provider calls made.
    pub provider_calls: u32,
    /// Time spent in provider calls (connection, round trips).
    pub provider_time: Duration,
    /// Provider calls that failed on the host side (the proxy saw error strings).
    pub provider_failures: Vec<ProviderError>,
}

/// Time spent in the phases of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTimings {
    /// Fresh store and instantiation.
    pub instantiate: Duration,
    /// The call itself, provider round trips included.
    pub invoke: Duration,
    /// Dropping the store and instance.
    pub drop: Duration,
}

/// A successful run.
#[derive(Debug)]
pub struct RunOutput {
    /// The returned values.
    pub values: Vec<Val>,
    /// The values in WAVE, with the proxy's own error told apart.
    pub answer: Answer,
    /// Logs of the run.
    pub logs: RunLogs,
    /// Phase timings.
    pub timings: RunTimings,
}

/// A successful typed run.
#[derive(Debug)]
pub struct TypedOutput<R> {
    /// The returned values, typed.
    pub value: R,
    /// Logs of the run.
    pub logs: RunLogs,
    /// Phase timings.
    pub timings: RunTimings,
}

/// A failed run: the error and what was logged up to it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RunFailure {
    /// What went wrong.
    pub error: RunError,
    /// Logs up to the failure.
    pub logs: RunLogs,
    /// Phase timings up to the failure.
    pub timings: RunTimings,
}

impl RunFailure {
    /// A failure before anything ran: nothing logged, no time spent.
    fn before_run(error: RunError) -> Self {
        Self {
            error,
            logs: RunLogs::default(),
            timings: RunTimings::default(),
        }
    }
}

impl Sandbox {
    /// Runs a prepared dynamic invocation once in a fresh store and drops it.
    pub async fn run(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        invocation: &Invocation,
    ) -> Result<RunOutput, RunFailure> {
        self.run_scoped(compiled, target, invocation, self.scope())
            .await
    }

    /// As [`run`](Self::run), lending what `scope` says instead of the whole policy.
    pub(crate) async fn run_scoped(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        invocation: &Invocation,
        scope: RunScope,
    ) -> Result<RunOutput, RunFailure> {
        let (values, mut logs, timings) = self
            .execute(compiled, target, Dynamic(invocation), scope)
            .await?;
        match answer(&values) {
            Ok(answer) => Ok(RunOutput {
                values,
                answer,
                logs,
                timings,
            }),
            Err(e) => Err(RunFailure {
                error: e.into(),
                logs: std::mem::take(&mut logs),
                timings,
            }),
        }
    }

    /// Runs `interface.function` with typed parameters and results (for Rust applications
    /// that know the interface), in a fresh store that is dropped afterwards. The answer's
    /// size is bounded by the memory cap (typed values cannot be measured generically).
    pub async fn run_typed<P, R>(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        interface: &str,
        function: &str,
        params: P,
    ) -> Result<TypedOutput<R>, RunFailure>
    where
        P: ComponentNamedList + Lower + Send + Sync + 'static,
        R: ComponentNamedList + Lift + AnswerSize + Send + Sync + 'static,
    {
        let spec = crate::invoke::CallSpec::new(
            interface
                .parse()
                .map_err(|e: courier_protocol::InterfaceNameError| {
                    RunFailure::before_run(InvokeError::Interface(e.to_string()).into())
                })?,
            function,
            "()",
        );
        let (func, ..) =
            crate::invoke::lookup(compiled.component(), &compiled.interfaces().exports, &spec)
                .map_err(|e| RunFailure::before_run(e.into()))?;
        let typed = Typed::<P, R> {
            func,
            params,
            _r: std::marker::PhantomData,
        };
        self.execute(compiled, target, typed, self.scope())
            .await
            .map(|(value, logs, timings)| TypedOutput {
                value,
                logs,
                timings,
            })
    }

    /// A fresh store with its limits, instantiation, and the drop, without calling
    /// anything: the fixed cost of one run (what the benchmarks call instance cost). Only
    /// with the `bench` feature.
    #[cfg(feature = "bench")]
    pub async fn instantiate_only(&self, compiled: &Compiled) -> Result<RunTimings, RunFailure> {
        let target = ProviderTarget {
            endpoints: Vec::new(),
            pin: courier_protocol::SpkiPin([0; 32]),
        };
        self.execute(compiled, target, Nothing, self.scope())
            .await
            .map(|(_, _, timings)| timings)
    }

    /// The core of every run: fresh store with limits and deadlines, instantiate with the
    /// granted imports only, invoke, classify failures, collect logs, drop the store.
    async fn execute<I: Invoke>(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        invoke: I,
        scope: RunScope,
    ) -> Result<(I::Output, RunLogs, RunTimings), RunFailure> {
        let _permit = self.runs.acquire().await.map_err(|_| {
            RunFailure::before_run(RunError::Host("sandbox is shutting down".into()))
        })?;
        let started = Instant::now();
        let output_cap = scope.policy.limits.output_bytes;
        let state = self.new_state(target, started, scope);
        let deadline = state.deadline.clone();
        let tick = state.tick;
        let first_check = (state.cpu_limit.min(state.wall_limit).as_micros()
            / tick.as_micros().max(1))
        .clamp(1, 10) as u64;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(first_check);
        store.epoch_deadline_callback(|mut cx| Ok(cx.data_mut().on_epoch()));

        let mut timings = RunTimings::default();
        let outcome = {
            let run = async {
                let t0 = Instant::now();
                let instance = compiled
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| (true, e))?;
                let t1 = Instant::now();
                let out = invoke
                    .invoke(&mut store, instance)
                    .await
                    .map_err(|e| (false, e))?;
                Ok::<_, (bool, wasmtime::Error)>((out, t1 - t0, t1.elapsed()))
            };
            with_deadline(run, &deadline).await
        };
        let data = store.data_mut();
        let mut logs = data.take_logs();
        let result = match outcome {
            Ok(Ok((out, inst, inv))) => {
                timings.instantiate = inst;
                timings.invoke = inv;
                let cap = output_cap;
                match I::size(&out, cap) {
                    Some(size) if size > cap => Err(RunError::OutputTooLarge { size, limit: cap }),
                    _ => Ok(out),
                }
            }
            Ok(Err((instantiating, e))) => Err(classify(data, instantiating, e)),
            Err(()) => {
                data.stop = Some(Stop::Wall);
                Err(RunError::WallDeadline {
                    limit: data.wall_limit,
                })
            }
        };
        if timings.instantiate.is_zero() && timings.invoke.is_zero() {
            timings.invoke = started.elapsed();
        }
        let t = Instant::now();
        drop(store);
        timings.drop = t.elapsed();
        match result {
            Ok(out) => Ok((out, logs, timings)),
            Err(error) => {
                tracing::info!("run failed: {error}");
                Err(RunFailure {
                    error,
                    logs: std::mem::take(&mut logs),
                    timings,
                })
            }
        }
    }
}

/// The dynamic call of a prepared [`Invocation`].
struct Dynamic<'a>(&'a Invocation);

/// No call at all: instantiate and drop (for measuring instance cost).
#[cfg(feature = "bench")]
struct Nothing;

#[cfg(feature = "bench")]
impl Invoke for Nothing {
    type Output = ();

    async fn invoke(self, _: &mut Store<RunState>, _: Instance) -> wasmtime::Result<()> {
        Ok(())
    }

    fn size(_: &(), _: usize) -> Option<usize> {
        Some(0)
    }
}

/// A typed call.
struct Typed<P, R> {
    func: ComponentExportIndex,
    params: P,
    _r: std::marker::PhantomData<fn() -> R>,
}

/// One way of calling into an instance.
trait Invoke: Send {
    type Output: Send;
    fn invoke(
        self,
        store: &mut Store<RunState>,
        instance: Instance,
    ) -> impl Future<Output = wasmtime::Result<Self::Output>> + Send;
    /// Size of the answer, when it can be measured.
    fn size(out: &Self::Output, cap: usize) -> Option<usize>;
}

impl Invoke for Dynamic<'_> {
    type Output = Vec<Val>;

    async fn invoke(
        self,
        store: &mut Store<RunState>,
        instance: Instance,
    ) -> wasmtime::Result<Vec<Val>> {
        let func = instance
            .get_func(&mut *store, self.0.func)
            .ok_or_else(|| wasmtime::format_err!("export {} vanished", self.0.qualified()))?;
        let mut results = vec![Val::Bool(false); self.0.results];
        func.call_async(&mut *store, &self.0.params, &mut results)
            .await?;
        Ok(results)
    }

    fn size(out: &Vec<Val>, cap: usize) -> Option<usize> {
        Some(values_size(out, cap))
    }
}

impl<P, R> Invoke for Typed<P, R>
where
    P: ComponentNamedList + Lower + Send + Sync + 'static,
    R: ComponentNamedList + Lift + AnswerSize + Send + Sync + 'static,
{
    type Output = R;

    async fn invoke(self, store: &mut Store<RunState>, instance: Instance) -> wasmtime::Result<R> {
        let f = instance.get_typed_func::<P, R>(&mut *store, self.func)?;
        f.call_async(&mut *store, self.params).await
    }

    fn size(out: &R, cap: usize) -> Option<usize> {
        Some(out.answer_size(cap))
    }
}

/// Awaits `fut` until the run's wall deadline (which host calls may move later while a
/// person answers); `Err(())` when it passed first. Dropping the future unwinds the run.
async fn with_deadline<F: Future>(fut: F, deadline: &Arc<Mutex<Instant>>) -> Result<F::Output, ()> {
    let read = || *deadline.lock().unwrap_or_else(|p| p.into_inner());
    let mut fut = std::pin::pin!(fut);
    loop {
        let d = read();
        match tokio::time::timeout_at(d.into(), fut.as_mut()).await {
            Ok(out) => return Ok(out),
            Err(_) if read() > d => continue,
            Err(_) => return Err(()),
        }
    }
}
