//! Failure classification: what a wasmtime error from a run stands for. The host's own
//! stops (CPU or wall-clock deadline), the limiter's record of a memory or table cap, a
//! guest's exit, a stack overflow (including the shadow-stack kind, recognised by a deep
//! backtrace of a few repeating functions), or else a trap, told in one line.

use super::store::{RunState, Stop};
use crate::invoke::InvokeError;
use std::time::Duration;
use wasmtime::Trap;

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

/// Turns a wasmtime error into the run error it stands for.
pub(super) fn classify(data: &RunState, instantiating: bool, e: wasmtime::Error) -> RunError {
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
pub(super) const BACKTRACE_FRAMES: usize = 16;

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
