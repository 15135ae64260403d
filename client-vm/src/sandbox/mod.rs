//! The wasmtime sandbox: one [`Engine`] per client (pooling allocator, epoch interruption
//! driven by a ticker thread, Cranelift or Winch), compilation off the async threads with a
//! size cap and an import check first, an optional in-memory cache of compiled components
//! keyed by content hash, and runs in a fresh [`Store`](wasmtime::Store) that is dropped
//! after each call.
//!
//! Every way a run can go wrong — a trap, the CPU or wall-clock deadline, the memory or
//! table cap, a stack overflow, an oversized answer — is a [`RunError`], never a crash, and
//! the same sandbox serves the next call. A proxy's own error (a WIT `result` in its `err`
//! case) is not a failure of the run: it is [`Answer::ProxyError`](crate::Answer) in a
//! [`RunOutput`].
//!
//! Rooms: `engine` (engine configuration, linker, epoch ticker), `compile` (size cap,
//! inspection, compilation, the compiled-component cache), `disk_cache` and `disk_key`
//! (the client's own compiled code kept across processes, authenticated), `store` (one
//! run's store data and limits), `run` (instantiate, call, discard), `failure` (what a
//! wasmtime error stands for).

#[cfg(feature = "bench")]
mod bare;
mod compile;
mod disk_cache;
mod disk_key;
mod engine;
mod failure;
mod run;
mod store;

#[cfg(feature = "bench")]
pub use bare::BareInstance;
pub(crate) use compile::Provenance;
pub use compile::{CompileError, Compiled};
pub use disk_cache::DiskCacheStats;
pub use disk_key::{
    COMPILED_DIR, COMPILED_KEY_FILE, CompiledCodeKey, DEFAULT_DISK_CACHE_BYTES, DiskCacheConfig,
    DiskCacheError,
};
pub use engine::SandboxError;
pub use failure::RunError;
pub use run::{RunFailure, RunLogs, RunOutput, RunTimings, TypedOutput};
pub(crate) use store::RunScope;

use crate::host::{HostFacts, OperatorConsole, TerminalConsole, installed_packages};
use crate::policy::{Policy, ProxyOrigin};
use crate::provider::ProviderPool;
use compile::ComponentCache;
use disk_cache::DiskCache;
use engine::{EpochTicker, build_linker, engine_config};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use store::RunState;
use wasmtime::Engine;
use wasmtime::component::Linker;

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
    /// Keep compiled code on disk too, for the next process (only with `cache_compiled`):
    /// a one-shot client then loads what it compiled before instead of compiling it again.
    /// `None` (the default) keeps nothing on disk.
    pub disk_cache: Option<DiskCacheConfig>,
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
    /// Within those bytes, reset only the pages a run dirtied, found with Linux's
    /// `PAGEMAP_SCAN` (kernel 6.7 and later; elsewhere this does nothing), instead of
    /// zeroing them all. On by default: with it, keeping more resident costs nothing per run.
    pub reset_dirty_pages_only: bool,
    /// Where the proxies come from, for the policy's endpoint rules: a proxy from a remote
    /// registry may not reach this machine's loopback or link-local addresses unless the
    /// policy says so. `Local` by default; [`Client::new`](crate::Client::new) sets it from
    /// the registry's address.
    pub proxy_origin: ProxyOrigin,
    /// Where the operator's messages, questions and progress go when a person may answer
    /// ([`TerminalConsole`] by default: questions on the process's terminal).
    pub console: Arc<dyn OperatorConsole>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            compiler: CompilerChoice::Winch,
            max_concurrent_runs: 8,
            cache_compiled: true,
            cache_entries: 64,
            disk_cache: None,
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 512 << 10,
            reuse_provider_connections: true,
            keep_resident_bytes: 32 << 10,
            reset_dirty_pages_only: true,
            proxy_origin: ProxyOrigin::Local,
            console: Arc::new(TerminalConsole),
        }
    }
}

/// One client's wasmtime sandbox.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<RunState>,
    policy: Arc<Policy>,
    config: SandboxConfig,
    cache: Arc<ComponentCache>,
    disk: Option<Arc<DiskCache>>,
    live: Arc<AtomicUsize>,
    _ticker: EpochTicker,
    pool: Arc<ProviderPool>,
    facts: std::sync::RwLock<Arc<HostFacts>>,
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

impl Sandbox {
    /// Builds the engine, the linker for `policy` and the epoch ticker.
    pub fn new(policy: Policy, config: SandboxConfig) -> Result<Self, SandboxError> {
        let facts = HostFacts::gather_allowed(&policy.allowed_facts);
        Self::with_facts(policy, config, facts)
    }

    /// Like [`Sandbox::new`] with explicit host facts (filtered by the policy). When the
    /// policy lends a directory, `managed-dir` is where the proxy finds it.
    pub fn with_facts(
        policy: Policy,
        config: SandboxConfig,
        mut facts: HostFacts,
    ) -> Result<Self, SandboxError> {
        crate::policy::validate_commands(&policy.commands)?;
        if let Some(p) = &policy.preopen {
            facts.set("managed-dir", p.guest.clone());
        }
        let engine = Engine::new(&engine_config(&config, &policy)?)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let linker =
            build_linker(&engine, &policy).map_err(|e| SandboxError::Linker(format!("{e:#}")))?;
        let ticker = EpochTicker::start(&engine, config.epoch_tick)?;
        let disk = config
            .disk_cache
            .as_ref()
            .filter(|_| config.cache_compiled)
            .and_then(|dc| match DiskCache::open(dc, &engine, config.compiler) {
                Ok(disk) => Some(Arc::new(disk)),
                Err(e) => {
                    tracing::warn!(dir = %dc.dir.display(), "compiled code not kept on disk: {e}");
                    None
                }
            });
        let facts = Arc::new(facts.filtered(&policy.allowed_facts));
        let runs = tokio::sync::Semaphore::new(config.max_concurrent_runs.max(1) as usize);
        let pool = Arc::new(ProviderPool::with_rules(
            config.reuse_provider_connections,
            policy.provider_endpoints.clone(),
            config.proxy_origin,
        ));
        Ok(Self {
            engine,
            linker,
            policy: Arc::new(policy),
            pool,
            cache: Arc::new(ComponentCache::new(
                config.cache_compiled,
                config.cache_entries,
            )),
            disk,
            config,
            live: Arc::new(AtomicUsize::new(0)),
            _ticker: ticker,
            facts: std::sync::RwLock::new(facts),
            runs,
        })
    }

    /// The host facts runs see now.
    pub(crate) fn facts(&self) -> Arc<HostFacts> {
        Arc::clone(&self.facts.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether this system has the package `name` installed now, read afresh from the
    /// files the facts came from (off the async workers); `None` when the facts were given,
    /// not read, or there is no package database.
    pub(crate) async fn package_installed(&self, name: &str) -> Option<bool> {
        let sources = self.facts().sources()?.clone();
        let (_, text) = tokio::task::spawn_blocking(move || installed_packages(&sources))
            .await
            .ok()??;
        Some(
            text.lines()
                .any(|line| line.split('\t').next() == Some(name)),
        )
    }

    /// Reads the installed packages again (after the client installed or removed one),
    /// when the policy lets proxies see them and the facts were read from the system's
    /// files; runs from now on see the new list.
    pub(crate) async fn reread_packages(&self) {
        if !self.policy.allowed_facts.contains("packages") {
            return;
        }
        let Some(sources) = self.facts().sources().cloned() else {
            return;
        };
        let read = tokio::task::spawn_blocking(move || installed_packages(&sources))
            .await
            .ok()
            .flatten();
        let Some((manager, text)) = read else {
            return;
        };
        let mut facts = self.facts.write().unwrap_or_else(|p| p.into_inner());
        let mut next = HostFacts::clone(&facts);
        next.set("packages", text);
        if self.policy.allowed_facts.contains("package-manager") {
            next.set("package-manager", manager.into());
        }
        *facts = Arc::new(next);
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

    /// Handles on what this sandbox keeps between runs, for discarding it from a task that
    /// learns that it must go (see `crate::discard`).
    pub(crate) fn kept(&self) -> Kept {
        Kept {
            cache: self.cache.clone(),
            disk: self.disk.clone(),
            pool: self.pool.clone(),
        }
    }
}

/// What a sandbox keeps between runs (compiled components, provider connections), shared
/// with whoever must discard parts of it.
#[derive(Clone)]
pub(crate) struct Kept {
    cache: Arc<ComponentCache>,
    disk: Option<Arc<DiskCache>>,
    pool: Arc<ProviderPool>,
}

impl Kept {
    /// Drops the compiled component of `hash`, in memory and in the compiled-code
    /// directory; false if none was kept.
    pub(crate) fn drop_compiled(&self, hash: &courier_protocol::ContentHash) -> bool {
        let in_memory = self.cache.remove(hash);
        let on_disk = self.disk.as_ref().is_some_and(|d| d.remove(hash));
        in_memory || on_disk
    }

    /// Closes the kept connections to the provider with TLS key `pin`; returns how many.
    pub(crate) fn close_provider(&self, pin: &courier_protocol::SpkiPin) -> usize {
        self.pool.close_pin(pin)
    }
}
