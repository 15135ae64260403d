//! One run's store data: the WASI context with captured stdio (built when the guest first
//! reaches WASI: a run that never does, such as most proxies' calls, skips seeding its
//! random generators and boxing its streams), the host context, the
//! limiter that records which cap a guest hit, the epoch callback that enforces the CPU
//! and wall-clock budgets, and the count of live stores (0 between runs: discard is real).

use super::Sandbox;
use super::engine::{CORE_INSTANCES_PER_COMPONENT, MEMORIES_PER_COMPONENT, TABLES_PER_COMPONENT};
use super::run::RunLogs;
use crate::host::{HostCtx, HostFacts, LogPipe};
use crate::policy::Policy;
use crate::provider::ProviderTarget;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The data of one run's [`Store`](wasmtime::Store). Dropped with the store at the end of
/// the run.
pub(super) struct RunState {
    wasi: Option<WasiCtx>,
    /// The policy the WASI context is built under (its lent directory).
    policy: Arc<Policy>,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) host: HostCtx,
    stdout: LogPipe,
    stderr: LogPipe,
    started: Instant,
    pub(super) cpu_limit: Duration,
    pub(super) wall_limit: Duration,
    pub(super) tick: Duration,
    pub(super) stop: Option<Stop>,
    pub(super) deadline: Arc<Mutex<Instant>>,
    _live: LiveGuard,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self
            .wasi
            .get_or_insert_with(|| wasi_ctx(&self.policy, &self.stdout, &self.stderr));
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// A run's WASI context: stdout and stderr into `stdout` and `stderr`, the policy's lent
/// directory if it has one, nothing else from the host.
fn wasi_ctx(policy: &Policy, stdout: &LogPipe, stderr: &LogPipe) -> WasiCtx {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone()).stderr(stderr.clone());
    if let Some(p) = &policy.preopen {
        let perms = if p.writable {
            wasmtime_wasi::FsPerms::ReadWrite
        } else {
            wasmtime_wasi::FsPerms::ReadOnly
        };
        if let Err(e) = wasi.preopened_dir(&p.host, &p.guest, perms) {
            tracing::warn!("preopen {} not available: {e:#}", p.host.display());
        }
    }
    wasi.build()
}

impl RunState {
    /// The run's WASI context, built on first use.
    pub(super) fn wasi(&mut self) -> &mut WasiCtx {
        self.wasi
            .get_or_insert_with(|| wasi_ctx(&self.policy, &self.stdout, &self.stderr))
    }

    /// Called by the epoch machinery when the deadline passes: decides whether the guest
    /// has used up its CPU time (host calls excluded) or the wall-clock time, and otherwise
    /// yields to the executor and sets the next check.
    pub(super) fn on_epoch(&mut self) -> UpdateDeadline {
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

    /// The run's captured output and host-call record; stdout and stderr also go into the
    /// client's log (target `courier::proxy`, level info), a line each, escaped.
    pub(super) fn take_logs(&mut self) -> RunLogs {
        let (stdout, d1) = self.stdout.contents();
        let (stderr, d2) = self.stderr.contents();
        for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            for line in text.lines() {
                tracing::info!(target: "courier::proxy", stream, "{}", line.escape_debug());
            }
        }
        let (transcript, dropped_transcript) = self.host.take_transcript();
        RunLogs {
            stdout,
            stderr,
            dropped_stdio: d1 + d2,
            transcript,
            dropped_transcript,
            provider_calls: self.host.provider_calls(),
            provider_time: self.host.provider_time(),
            provider_failures: self.host.take_provider_failures(),
        }
    }
}

/// What one run is lent: the policy it is held to (the sandbox's, or a narrower one) and
/// the host facts it may read.
#[derive(Debug, Clone)]
pub(crate) struct RunScope {
    /// The policy.
    pub(crate) policy: Arc<Policy>,
    /// The facts.
    pub(crate) facts: Arc<HostFacts>,
}

impl Sandbox {
    /// What a run is lent by default: the whole policy and the facts as read.
    pub(crate) fn scope(&self) -> RunScope {
        RunScope {
            policy: Arc::clone(&self.policy),
            facts: self.facts(),
        }
    }

    /// A scope that looks and does not touch: the lent directory read-only, no lent
    /// commands, every question answered no (what a predicate is run with).
    pub(crate) fn read_only_scope(&self) -> RunScope {
        let mut policy = Policy::clone(&self.policy);
        if let Some(p) = &mut policy.preopen {
            p.writable = false;
        }
        policy.commands.clear();
        // Nor does it ask anyone anything.
        policy.operator =
            crate::policy::OperatorMode::Unattended(crate::policy::OperatorAnswer::DenyAll);
        RunScope {
            policy: Arc::new(policy),
            facts: self.facts(),
        }
    }

    /// The default scope, with `extra` facts that the client itself states for this run
    /// (e.g. what an installer's signed manifest says it provides).
    pub(crate) fn scope_with_facts(&self, extra: &[(&str, String)]) -> RunScope {
        let mut facts = HostFacts::clone(&self.facts());
        for (name, value) in extra {
            facts.set(name, value.clone());
        }
        RunScope {
            policy: Arc::clone(&self.policy),
            facts: Arc::new(facts),
        }
    }

    /// The data of a fresh store for one run against `target`, started at `started`: the
    /// WASI context (captured stdio, the policy's preopen if any), the host context, the
    /// limits and deadlines.
    pub(super) fn new_state(
        &self,
        target: ProviderTarget,
        started: Instant,
        scope: RunScope,
    ) -> RunState {
        let RunScope { policy, facts } = scope;
        let limits = &policy.limits;
        let stdout = LogPipe::new(limits.stdio_bytes);
        let stderr = LogPipe::new(limits.stdio_bytes);
        let wall_deadline = started + limits.wall_time;
        let deadline = Arc::new(Mutex::new(wall_deadline));
        let host = HostCtx::new(
            self.pool.clone(),
            target,
            facts,
            policy.clone(),
            self.config.console.clone(),
            wall_deadline,
            deadline.clone(),
        );
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements)
            .instances(CORE_INSTANCES_PER_COMPONENT as usize + 1)
            .memories(MEMORIES_PER_COMPONENT as usize)
            .tables(TABLES_PER_COMPONENT as usize)
            .build();
        RunState {
            wasi: None,
            policy: policy.clone(),
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
            deadline,
            _live: LiveGuard::new(&self.live),
        }
    }
}

/// Why the host stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
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
pub(super) struct Limiter {
    limits: StoreLimits,
    pub(super) memory_cap: usize,
    pub(super) memory_hit: bool,
    pub(super) table_cap: usize,
    pub(super) table_hit: bool,
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
