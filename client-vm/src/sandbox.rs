//! The wasmtime sandbox: one [`Engine`] per client (pooling allocator, epoch interruption
//! driven by a ticker thread, Cranelift or Winch), compilation off the async threads with a
//! size cap and an import check first, an optional in-memory cache of compiled components
//! keyed by content hash, and runs in a fresh [`Store`] that is dropped after each call.
//!
//! Every way a run can go wrong — a trap, the CPU or wall-clock deadline, the memory or
//! table cap, a stack overflow, an oversized answer — is a [`RunError`], never a crash, and
//! the same sandbox serves the next call. A proxy's own error (a WIT `result` in its `err`
//! case) is not a failure of the run: it is [`Answer::ProxyError`] in a [`RunOutput`].
//!
//! Compiled code is only ever produced here from bytes whose hash the caller checked; this
//! module never calls `Component::deserialize`.

use crate::host::{HostCtx, HostData, HostFacts, HostLimits, LogPipe, bindings};
use crate::invoke::{Answer, Invocation, InvokeError, answer, values_size};
use crate::policy::{MissingCapabilities, Policy};
use crate::provider::{ProviderError, ProviderPool, ProviderTarget};
use courier_protocol::{ComponentInterfaces, ContentHash, InspectError};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, HasData, Instance, InstancePre, Lift,
    Linker, Lower, ResourceTable, Val,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreLimits, StoreLimitsBuilder, Strategy, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Which compiler turns a component into machine code.
///
/// Winch is the default: a proxy is glue around provider round trips and usually runs once
/// per download, so compile time dominates (measured here: 42 KB echo proxy, Cranelift
/// ~80 ms, Winch ~25 ms). A long-running client that keeps compiled components and runs
/// CPU-heavy proxies may prefer Cranelift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompilerChoice {
    /// Cranelift: optimising, slower to compile, faster code.
    Cranelift,
    /// Winch: wasmtime's baseline compiler, several times faster to compile.
    #[default]
    Winch,
}

impl std::str::FromStr for CompilerChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cranelift" => Ok(Self::Cranelift),
            "winch" => Ok(Self::Winch),
            other => Err(format!("unknown compiler {other:?} (cranelift or winch)")),
        }
    }
}

/// How a sandbox is built.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The compiler.
    pub compiler: CompilerChoice,
    /// Runs at the same time (sizes the pooling allocator); further runs wait.
    pub max_concurrent_runs: u32,
    /// Keep compiled components in memory, keyed by content hash. Off = strict discard:
    /// the compiled code goes away with the run.
    pub cache_compiled: bool,
    /// Most compiled components kept.
    pub cache_entries: usize,
    /// Period of the epoch ticker (the granularity of the CPU deadline).
    pub epoch_tick: Duration,
    /// Largest wasm stack of a run.
    pub max_wasm_stack: usize,
    /// Keep provider connections open between runs (pinned per endpoint and key).
    pub reuse_provider_connections: bool,
    /// Bytes of each pooled memory, table and fiber stack slot zeroed in place after a run
    /// instead of being returned to the kernel (fewer page faults and `madvise` calls per
    /// run, at the price of that much resident memory per slot). 0 returns everything.
    pub keep_resident_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            compiler: CompilerChoice::Winch,
            max_concurrent_runs: 8,
            cache_compiled: true,
            cache_entries: 64,
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 512 << 10,
            reuse_provider_connections: true,
            keep_resident_bytes: 32 << 10,
        }
    }
}

/// Why a sandbox could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// wasmtime refused the engine configuration.
    #[error("engine configuration: {0}")]
    Engine(String),
    /// The host functions could not be linked.
    #[error("linker: {0}")]
    Linker(String),
    /// The epoch ticker thread could not be started.
    #[error("epoch ticker: {0}")]
    Ticker(std::io::Error),
}

/// Why a component was not compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Larger than the policy's cap.
    #[error("component of {size} bytes exceeds the cap of {limit}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// Its type information could not be read.
    #[error("component unreadable: {0}")]
    Inspect(#[from] InspectError),
    /// It imports what the policy does not grant.
    #[error("{0}")]
    NotGranted(#[from] MissingCapabilities),
    /// wasmtime refused it (invalid, unsupported feature).
    #[error("compile: {0}")]
    Compile(String),
    /// Its imports do not link against the host (types differ from the host's).
    #[error("link: {0}")]
    Link(String),
    /// The compile task died.
    #[error("compile task failed: {0}")]
    Task(String),
}

/// Why a run failed. The sandbox is unharmed and serves the next run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The proxy trapped (e.g. a panic, `unreachable`, an out-of-bounds access).
    #[error("proxy trapped: {message}")]
    Trap {
        /// The trap and where, one line.
        message: String,
    },
    /// The proxy exhausted the wasm stack.
    #[error("proxy overflowed its stack")]
    StackOverflow,
    /// The proxy used more CPU time than allowed.
    #[error("proxy exceeded its CPU time of {limit:?}")]
    CpuDeadline {
        /// The limit.
        limit: Duration,
    },
    /// The run took longer than allowed.
    #[error("run exceeded its wall-clock time of {limit:?}")]
    WallDeadline {
        /// The limit.
        limit: Duration,
    },
    /// The proxy tried to grow memory beyond the cap.
    #[error("proxy exceeded its memory cap of {limit} bytes")]
    MemoryLimit {
        /// The cap.
        limit: usize,
    },
    /// The proxy tried to grow a table beyond the cap.
    #[error("proxy exceeded its table cap of {limit} elements")]
    TableLimit {
        /// The cap, in elements.
        limit: usize,
    },
    /// The proxy's answer is larger than the cap.
    #[error("answer of more than {limit} bytes refused ({size} bytes seen)")]
    OutputTooLarge {
        /// Size seen (at least).
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The proxy called `wasi:cli/exit`.
    #[error("proxy exited with status {code}")]
    Exit {
        /// The exit status.
        code: i32,
    },
    /// The component could not be instantiated.
    #[error("instantiate: {0}")]
    Instantiate(String),
    /// The call could not be made (no such export, bad arguments, unprintable answer).
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// A host function failed in a way that is not the proxy's fault.
    #[error("host failure: {0}")]
    Host(String),
}

/// A component compiled by this sandbox (never deserialized from outside).
pub struct Compiled {
    hash: ContentHash,
    size: usize,
    interfaces: ComponentInterfaces,
    component: Component,
    pre: InstancePre<RunState>,
    compile_time: Duration,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("compile_time", &self.compile_time)
            .finish_non_exhaustive()
    }
}

impl Compiled {
    /// Content hash of the bytes it was compiled from.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }
    /// Size of those bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// What the component exports and imports.
    pub fn interfaces(&self) -> &ComponentInterfaces {
        &self.interfaces
    }
    /// The wasmtime component.
    pub fn component(&self) -> &Component {
        &self.component
    }
    /// How long compiling took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

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

/// Why the host stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cpu,
    Wall,
}

/// Counts live stores: incremented when a run's state is made, decremented when dropped.
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `StoreLimits` plus a record of the memory or table cap being hit, so that the resulting
/// trap is reported as [`RunError::MemoryLimit`] or [`RunError::TableLimit`].
struct Limiter {
    limits: StoreLimits,
    memory_cap: usize,
    memory_hit: bool,
    table_cap: usize,
    table_hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.limits.memory_growing(current, desired, maximum)?;
        if !ok || desired > self.memory_cap {
            self.memory_hit = true;
            // Trap right away instead of letting the guest's allocator abort later.
            wasmtime::bail!("memory cap of {} bytes reached", self.memory_cap);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_hit = true;
        Err(error.context("memory growth failed"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_cap {
            self.table_hit = true;
            // Trap instead of answering -1: a guest that ignores the failure and grows again
            // would otherwise spin until the CPU deadline.
            wasmtime::bail!("table cap of {} elements reached", self.table_cap);
        }
        // Within the cap, a table's own declared maximum still refuses growth the wasm way
        // (`table.grow` answers -1), which is the guest's business, not a limit hit.
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The data of one run's [`Store`]. Dropped with the store at the end of the run.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    host: HostCtx,
    stdout: LogPipe,
    stderr: LogPipe,
    started: Instant,
    cpu_limit: Duration,
    wall_limit: Duration,
    tick: Duration,
    stop: Option<Stop>,
    deadline: Arc<Mutex<Instant>>,
    _live: LiveGuard,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl RunState {
    /// Called by the epoch machinery when the deadline passes: decides whether the guest
    /// has used up its CPU time (host calls excluded) or the wall-clock time, and otherwise
    /// yields to the executor and sets the next check.
    fn on_epoch(&mut self) -> UpdateDeadline {
        let now = Instant::now();
        let wall_deadline = self.host.wall_deadline;
        if let Ok(mut d) = self.deadline.lock() {
            *d = wall_deadline;
        }
        if now >= wall_deadline {
            self.stop = Some(Stop::Wall);
            return UpdateDeadline::Interrupt;
        }
        let guest = now
            .saturating_duration_since(self.started)
            .saturating_sub(self.host.host_time);
        if guest >= self.cpu_limit {
            self.stop = Some(Stop::Cpu);
            return UpdateDeadline::Interrupt;
        }
        let left = (self.cpu_limit - guest).min(wall_deadline - now);
        let tick = self.tick.as_micros().max(1);
        // Check again when the budget could be gone, but at least every 10 ticks so the
        // executor thread is yielded regularly.
        let ticks = (left.as_micros() / tick).clamp(1, 10) as u64;
        UpdateDeadline::Yield(ticks)
    }
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds the safe WASI subset and the granted `courier:proxy` interfaces to a linker. No
/// `wasi:sockets`, no `wasi:cli/run`: a proxy importing them does not link.
fn build_linker(engine: &Engine, policy: &Policy) -> wasmtime::Result<Linker<RunState>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings as wasi;
    use wasmtime_wasi::random::WasiRandom;

    let mut l = Linker::<RunState>::new(engine);
    wasi::io::error::add_to_linker::<RunState, HasIo>(&mut l, |t| &mut t.table)?;
    wasi::io::poll::add_to_linker::<RunState, HasIo>(&mut l, |t| &mut t.table)?;
    wasi::io::streams::add_to_linker::<RunState, HasIo>(&mut l, |t| &mut t.table)?;
    wasi::clocks::wall_clock::add_to_linker::<RunState, WasiClocks>(&mut l, RunState::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<RunState, WasiClocks>(&mut l, RunState::clocks)?;
    wasi::random::random::add_to_linker::<RunState, WasiRandom>(&mut l, |t| t.wasi.random())?;
    wasi::random::insecure::add_to_linker::<RunState, WasiRandom>(&mut l, |t| t.wasi.random())?;
    wasi::random::insecure_seed::add_to_linker::<RunState, WasiRandom>(&mut l, |t| {
        t.wasi.random()
    })?;
    wasi::cli::exit::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::environment::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::stdin::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::stdout::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::stderr::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::terminal_input::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::terminal_output::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<RunState, WasiCli>(&mut l, RunState::cli)?;
    wasi::filesystem::types::add_to_linker::<RunState, WasiFilesystem>(
        &mut l,
        RunState::filesystem,
    )?;
    wasi::filesystem::preopens::add_to_linker::<RunState, WasiFilesystem>(
        &mut l,
        RunState::filesystem,
    )?;

    use bindings::courier::proxy::{host_info, operator, provider};
    provider::add_to_linker::<RunState, HostData>(&mut l, |s| &mut s.host)?;
    if policy.grant_host_info {
        host_info::add_to_linker::<RunState, HostData>(&mut l, |s| &mut s.host)?;
    }
    if policy.grant_operator {
        operator::add_to_linker::<RunState, HostData>(&mut l, |s| &mut s.host)?;
    }
    Ok(l)
}

/// Per-component limits of the pooling allocator, generous for wit-component output.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;

fn engine_config(config: &SandboxConfig, policy: &Policy) -> Result<Config, SandboxError> {
    let mut c = Config::new();
    c.strategy(match config.compiler {
        CompilerChoice::Cranelift => Strategy::Cranelift,
        CompilerChoice::Winch => Strategy::Winch,
    });
    c.epoch_interruption(true);
    c.max_wasm_stack(config.max_wasm_stack);
    // Host async calls run on the fiber stack too: leave them room above the wasm stack.
    c.async_stack_size(config.max_wasm_stack + (1 << 20));
    c.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES));
    let runs = config.max_concurrent_runs.max(1);
    let memory = policy.limits.memory_bytes.max(1 << 16);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(runs)
        .total_core_instances(runs * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(runs * MEMORIES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(runs * TABLES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_stacks(runs)
        // One page above the cap, so that the limiter (which reports the cap) decides.
        .max_memory_size(memory.saturating_add(1 << 16))
        .table_elements(policy.limits.table_elements)
        .max_unused_warm_slots(runs);
    if config.keep_resident_bytes > 0 {
        let keep = config.keep_resident_bytes;
        pool.linear_memory_keep_resident(keep)
            .table_keep_resident(keep.min(64 << 10))
            .async_stack_keep_resident(keep.min(config.max_wasm_stack + (1 << 20)));
    }
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(c)
}

/// The compiled-component cache: insertion-ordered, bounded.
#[derive(Default)]
struct Cache {
    map: HashMap<ContentHash, Arc<Compiled>>,
    order: VecDeque<ContentHash>,
}

/// One client's wasmtime sandbox.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<RunState>,
    policy: Arc<Policy>,
    config: SandboxConfig,
    cache: Mutex<Cache>,
    live: Arc<AtomicUsize>,
    stop_ticker: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
    pool: Arc<ProviderPool>,
    facts: Arc<HostFacts>,
    runs: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .field("live_stores", &self.live_stores())
            .finish_non_exhaustive()
    }
}

/// The dynamic call of a prepared [`Invocation`].
struct Dynamic<'a>(&'a Invocation);

/// No call at all: instantiate and drop (for measuring instance cost).
struct Nothing;

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
    R: ComponentNamedList + Lift + Send + Sync + 'static,
{
    type Output = R;

    async fn invoke(self, store: &mut Store<RunState>, instance: Instance) -> wasmtime::Result<R> {
        let f = instance.get_typed_func::<P, R>(&mut *store, self.func)?;
        f.call_async(&mut *store, self.params).await
    }

    fn size(_: &R, _: usize) -> Option<usize> {
        None
    }
}

impl Sandbox {
    /// Builds the engine, the linker for `policy` and the epoch ticker.
    pub fn new(policy: Policy, config: SandboxConfig) -> Result<Self, SandboxError> {
        let facts = HostFacts::gather_allowed(&policy.allowed_facts);
        Self::with_facts(policy, config, facts)
    }

    /// Like [`Sandbox::new`] with explicit host facts (filtered by the policy).
    pub fn with_facts(
        policy: Policy,
        config: SandboxConfig,
        facts: HostFacts,
    ) -> Result<Self, SandboxError> {
        let engine = Engine::new(&engine_config(&config, &policy)?)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let linker =
            build_linker(&engine, &policy).map_err(|e| SandboxError::Linker(format!("{e:#}")))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let weak = engine.weak();
            let stop = stop_ticker.clone();
            let tick = config.epoch_tick.max(Duration::from_millis(1));
            std::thread::Builder::new()
                .name("courier-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        match weak.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(SandboxError::Ticker)?
        };
        let facts = Arc::new(facts.filtered(&policy.allowed_facts));
        let runs = tokio::sync::Semaphore::new(config.max_concurrent_runs.max(1) as usize);
        Ok(Self {
            engine,
            linker,
            policy: Arc::new(policy),
            pool: Arc::new(ProviderPool::new(config.reuse_provider_connections)),
            config,
            cache: Mutex::new(Cache::default()),
            live: Arc::new(AtomicUsize::new(0)),
            stop_ticker,
            ticker: Some(ticker),
            facts,
            runs,
        })
    }

    /// The policy runs are held to.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The provider connections shared by runs.
    pub fn providers(&self) -> &ProviderPool {
        &self.pool
    }

    /// Stores alive right now (0 between runs: discard is real).
    pub fn live_stores(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Compiled components in the cache.
    pub fn cached_components(&self) -> usize {
        self.lock_cache().map.len()
    }

    /// Drops every cached compiled component.
    pub fn clear_cache(&self) {
        let mut c = self.lock_cache();
        c.map.clear();
        c.order.clear();
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached compilation of `hash`, if any.
    pub fn cached(&self, hash: &ContentHash) -> Option<Arc<Compiled>> {
        if !self.config.cache_compiled {
            return None;
        }
        self.lock_cache().map.get(hash).cloned()
    }

    /// Checks bytes before compiling: the size cap, their type information, and their
    /// imports against the policy (every missing import listed).
    pub fn check(&self, bytes: &[u8]) -> Result<ComponentInterfaces, CompileError> {
        check_component(&self.policy, bytes)
    }

    /// Checks and compiles `bytes` on a blocking thread, or returns the cached compilation
    /// of the same content. Returns whether it came from the cache. Nothing proportional to
    /// the component's size runs on the async threads: hashing, validating and decoding
    /// its types, and compiling all happen on the blocking pool.
    pub async fn compile(&self, bytes: Arc<[u8]>) -> Result<(Arc<Compiled>, bool), CompileError> {
        check_size(&self.policy, bytes.len())?;
        let hashing = bytes.clone();
        let hash = tokio::task::spawn_blocking(move || ContentHash::of(&hashing))
            .await
            .map_err(|e| CompileError::Task(e.to_string()))?;
        self.compile_hashed(bytes, hash).await
    }

    /// [`Sandbox::compile`] of bytes whose hash the caller has just checked to be `hash`
    /// (so they are not hashed again; a wrong hash would file them under another
    /// component's name in the cache, so only this crate may say so).
    pub(crate) async fn compile_hashed(
        &self,
        bytes: Arc<[u8]>,
        hash: ContentHash,
    ) -> Result<(Arc<Compiled>, bool), CompileError> {
        if let Some(c) = self.cached(&hash) {
            return Ok((c, true));
        }
        let policy = self.policy.clone();
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let interfaces = check_component(&policy, &bytes)?;
            let started = Instant::now();
            let component = Component::new(&engine, &*bytes)
                .map_err(|e| CompileError::Compile(format!("{e:#}")))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|e| CompileError::Link(format!("{e:#}")))?;
            Ok::<_, CompileError>(Compiled {
                hash,
                size: bytes.len(),
                interfaces,
                component,
                pre,
                compile_time: started.elapsed(),
            })
        })
        .await
        .map_err(|e| CompileError::Task(e.to_string()))??;
        let compiled = Arc::new(compiled);
        if self.config.cache_compiled {
            let mut c = self.lock_cache();
            if c.map.insert(hash, compiled.clone()).is_none() {
                c.order.push_back(hash);
            }
            while c.map.len() > self.config.cache_entries.max(1) {
                match c.order.pop_front() {
                    Some(old) => {
                        c.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
        Ok((compiled, false))
    }

    /// Runs a prepared dynamic invocation once in a fresh store and drops it.
    pub async fn run(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        invocation: &Invocation,
    ) -> Result<RunOutput, RunFailure> {
        let (values, mut logs, timings) =
            self.execute(compiled, target, Dynamic(invocation)).await?;
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
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let spec = crate::invoke::CallSpec::new(
            interface
                .parse()
                .map_err(|e: courier_protocol::InterfaceNameError| RunFailure {
                    error: InvokeError::Interface(e.to_string()).into(),
                    logs: RunLogs::default(),
                    timings: RunTimings::default(),
                })?,
            function,
            "()",
        );
        let (func, ..) =
            crate::invoke::lookup(&compiled.component, &compiled.interfaces.exports, &spec)
                .map_err(|e| RunFailure {
                    error: e.into(),
                    logs: RunLogs::default(),
                    timings: RunTimings::default(),
                })?;
        let typed = Typed::<P, R> {
            func,
            params,
            _r: std::marker::PhantomData,
        };
        self.execute(compiled, target, typed)
            .await
            .map(|(value, logs, timings)| TypedOutput {
                value,
                logs,
                timings,
            })
    }

    /// A fresh store with its limits, instantiation, and the drop, without calling
    /// anything: the fixed cost of one run (what the benchmarks call instance cost).
    pub async fn instantiate_only(&self, compiled: &Compiled) -> Result<RunTimings, RunFailure> {
        let target = ProviderTarget {
            endpoints: Vec::new(),
            pin: courier_protocol::SpkiPin([0; 32]),
        };
        self.execute(compiled, target, Nothing)
            .await
            .map(|(_, _, timings)| timings)
    }

    fn new_state(&self, target: ProviderTarget, started: Instant) -> RunState {
        let limits = &self.policy.limits;
        let stdout = LogPipe::new(limits.stdio_bytes);
        let stderr = LogPipe::new(limits.stdio_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        if let Some(p) = &self.policy.preopen {
            let perms = if p.writable {
                wasmtime_wasi::FsPerms::ReadWrite
            } else {
                wasmtime_wasi::FsPerms::ReadOnly
            };
            if let Err(e) = wasi.preopened_dir(&p.host, &p.guest, perms) {
                tracing::warn!("preopen {} not available: {e:#}", p.host.display());
            }
        }
        let wall_deadline = started + limits.wall_time;
        let host = HostCtx::new(
            self.pool.clone(),
            target,
            self.facts.clone(),
            self.policy.operator,
            HostLimits {
                provider_timeout: limits.provider_timeout,
                provider_reply_bytes: limits.provider_reply_bytes,
                transcript_lines: limits.transcript_lines,
            },
            wall_deadline,
        );
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements)
            .instances(CORE_INSTANCES_PER_COMPONENT as usize + 1)
            .memories(MEMORIES_PER_COMPONENT as usize)
            .tables(TABLES_PER_COMPONENT as usize)
            .build();
        RunState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                limits: store_limits,
                memory_cap: limits.memory_bytes,
                memory_hit: false,
                table_cap: limits.table_elements,
                table_hit: false,
            },
            host,
            stdout,
            stderr,
            started,
            cpu_limit: limits.cpu_time,
            wall_limit: limits.wall_time,
            tick: self.config.epoch_tick.max(Duration::from_millis(1)),
            stop: None,
            deadline: Arc::new(Mutex::new(wall_deadline)),
            _live: LiveGuard::new(&self.live),
        }
    }

    /// The core of every run: fresh store with limits and deadlines, instantiate with the
    /// granted imports only, invoke, classify failures, collect logs, drop the store.
    async fn execute<I: Invoke>(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        invoke: I,
    ) -> Result<(I::Output, RunLogs, RunTimings), RunFailure> {
        let _permit = self.runs.acquire().await.map_err(|_| RunFailure {
            error: RunError::Host("sandbox is shutting down".into()),
            logs: RunLogs::default(),
            timings: RunTimings::default(),
        })?;
        let started = Instant::now();
        let state = self.new_state(target, started);
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
        let mut logs = collect_logs(data);
        let result = match outcome {
            Ok(Ok((out, inst, inv))) => {
                timings.instantiate = inst;
                timings.invoke = inv;
                let cap = self.policy.limits.output_bytes;
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

/// The size cap on what the client compiles.
fn check_size(policy: &Policy, len: usize) -> Result<(), CompileError> {
    let limit = policy.limits.component_bytes;
    if len as u64 > limit {
        return Err(CompileError::TooLarge {
            size: len as u64,
            limit,
        });
    }
    Ok(())
}

/// The checks before compiling: the size cap, the component's real imports and exports
/// (validated, then decoded), its imports against the policy.
fn check_component(policy: &Policy, bytes: &[u8]) -> Result<ComponentInterfaces, CompileError> {
    check_size(policy, bytes.len())?;
    let interfaces = courier_protocol::inspect(bytes)?;
    policy.check_imports(&interfaces.imports)?;
    Ok(interfaces)
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

/// The run's captured output and host-call record; stdout and stderr also go into the
/// client's log (target `courier::proxy`, level info), a line each, escaped.
fn collect_logs(data: &mut RunState) -> RunLogs {
    let (stdout, d1) = data.stdout.contents();
    let (stderr, d2) = data.stderr.contents();
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for line in text.lines() {
            tracing::info!(target: "courier::proxy", stream, "{}", line.escape_debug());
        }
    }
    let (transcript, dropped_transcript) = data.host.take_transcript();
    RunLogs {
        stdout,
        stderr,
        dropped_stdio: d1 + d2,
        transcript,
        dropped_transcript,
        provider_calls: data.host.provider_calls(),
        provider_time: data.host.provider_time(),
        provider_failures: data.host.take_provider_failures(),
    }
}

/// Turns a wasmtime error into the run error it stands for.
fn classify(data: &RunState, instantiating: bool, e: wasmtime::Error) -> RunError {
    match data.stop {
        Some(Stop::Cpu) => {
            return RunError::CpuDeadline {
                limit: data.cpu_limit,
            };
        }
        Some(Stop::Wall) => {
            return RunError::WallDeadline {
                limit: data.wall_limit,
            };
        }
        None => {}
    }
    if data.limiter.memory_hit {
        return RunError::MemoryLimit {
            limit: data.limiter.memory_cap,
        };
    }
    if data.limiter.table_hit {
        return RunError::TableLimit {
            limit: data.limiter.table_cap,
        };
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return RunError::Exit { code: exit.0 };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => return RunError::StackOverflow,
        // A guest compiled from C or Rust keeps its frames' data on a shadow stack in
        // linear memory, without a guard: unbounded recursion runs it below address 0 and
        // the wrapped access traps as out of bounds. A full backtrace of a few functions
        // repeating is that, not a stray pointer.
        Some(Trap::MemoryOutOfBounds) if looks_like_recursion(&e) => {
            return RunError::StackOverflow;
        }
        Some(Trap::Interrupt) => {
            return RunError::CpuDeadline {
                limit: data.cpu_limit,
            };
        }
        Some(_) => {}
        None if instantiating => return RunError::Instantiate(one_line(&e)),
        None => {}
    }
    RunError::Trap {
        message: one_line(&e),
    }
}

/// Frames captured in a trap's backtrace (also the depth that counts as recursion).
const BACKTRACE_FRAMES: usize = 16;

/// Whether the trap's backtrace is full and made of at most a few distinct functions.
fn looks_like_recursion(e: &wasmtime::Error) -> bool {
    let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return false;
    };
    let frames = bt.frames();
    if frames.len() < BACKTRACE_FRAMES {
        return false;
    }
    let mut functions: Vec<u32> = frames.iter().map(|f| f.func_index()).collect();
    functions.sort_unstable();
    functions.dedup();
    functions.len() <= 3
}

/// The error chain on one line, without the multi-line wasm backtrace.
fn one_line(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or("").trim().to_string();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    let mut s = parts.join(": ");
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}
