//! The engine a sandbox compiles and runs with: its configuration (Cranelift or Winch,
//! epoch interruption, stack sizes, the pooling allocator), the linker that holds only the
//! granted host interfaces, and the epoch ticker thread that drives CPU deadlines.

use super::failure::BACKTRACE_FRAMES;
use super::store::RunState;
use super::{CompilerChoice, SandboxConfig};
use crate::host::{HostData, bindings};
use crate::policy::Policy;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy,
};

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
    /// The policy lends a command that cannot be lent.
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::LentCommandError),
}

/// Projects a run's store data to its resource table for the `wasi:io` bindings.
struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds the safe WASI subset and the granted `courier:proxy` interfaces to a linker. No
/// `wasi:sockets`, no `wasi:cli/run`: a proxy importing them does not link.
pub(super) fn build_linker(engine: &Engine, policy: &Policy) -> wasmtime::Result<Linker<RunState>> {
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
    wasi::random::random::add_to_linker::<RunState, WasiRandom>(&mut l, |t| t.wasi().random())?;
    wasi::random::insecure::add_to_linker::<RunState, WasiRandom>(&mut l, |t| t.wasi().random())?;
    wasi::random::insecure_seed::add_to_linker::<RunState, WasiRandom>(&mut l, |t| {
        t.wasi().random()
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

    use bindings::courier::proxy::{commands, host_info, operator, provider};
    provider::add_to_linker::<RunState, HostData>(&mut l, |s| &mut s.host)?;
    if policy.grant_host_info {
        host_info::add_to_linker::<RunState, HostData>(&mut l, |s| &mut s.host)?;
    }
    if policy.grant_operator {
        operator::add_to_linker::<RunState, HostData>(&mut l, |s| &mut s.host)?;
    }
    if !policy.commands.is_empty() {
        commands::add_to_linker::<RunState, HostData>(&mut l, |s| &mut s.host)?;
    }
    Ok(l)
}

/// Core instances per component in the pooling allocator, generous for wit-component
/// output.
pub(super) const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Memories per component in the pooling allocator.
pub(super) const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables per component in the pooling allocator.
pub(super) const TABLES_PER_COMPONENT: u32 = 8;

/// The engine's configuration: the compiler, epoch interruption, stack sizes, backtraces
/// deep enough to recognise recursion, and the pooling allocator sized for
/// `max_concurrent_runs` runs at the policy's memory and table caps.
pub(super) fn engine_config(
    config: &SandboxConfig,
    policy: &Policy,
) -> Result<Config, SandboxError> {
    let mut c = Config::new();
    c.strategy(match config.compiler {
        CompilerChoice::Cranelift => Strategy::Cranelift,
        CompilerChoice::Winch => Strategy::Winch,
    });
    if config.compiler == CompilerChoice::Winch {
        // Winch compiles the guest's functions; Cranelift still compiles the trampolines
        // and the component's fused adapters, a small share of the run time and, optimised,
        // a fifth of the compile.
        c.cranelift_opt_level(wasmtime::OptLevel::None);
    }
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
        .max_unused_warm_slots(runs)
        // Reset only the pages a run dirtied (Linux 6.7's PAGEMAP_SCAN, where the kernel has
        // it), within the kept-resident bytes, instead of zeroing them all or handing them
        // back to the kernel.
        .pagemap_scan(if config.reset_dirty_pages_only {
            Enabled::Auto
        } else {
            Enabled::No
        });
    if config.keep_resident_bytes > 0 {
        let keep = config.keep_resident_bytes;
        pool.linear_memory_keep_resident(keep)
            .table_keep_resident(keep.min(64 << 10))
            .async_stack_keep_resident(keep.min(config.max_wasm_stack + (1 << 20)));
    }
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(c)
}

/// The thread that advances the engine's epoch every tick (the granularity of CPU and
/// wall-clock deadlines inside wasm); stopped and joined when dropped.
pub(super) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine` every `tick` (at least a millisecond). The thread holds the
    /// engine weakly and ends by itself once the engine is gone.
    pub(super) fn start(engine: &Engine, tick: Duration) -> Result<Self, SandboxError> {
        let weak = engine.weak();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let tick = tick.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("courier-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(SandboxError::Ticker)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
