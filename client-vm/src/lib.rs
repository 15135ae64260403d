//! courier's client: finds a proxy, verifies it, runs it once in a wasmtime sandbox where it
//! can reach only its own provider and what the client's policy grants, and discards it.
//!
//! Modules, from the outside in:
//! - [`client`]: the whole flow of one call (query, choose, fetch, verify, trust, times,
//!   capabilities, compile, run, discard, report).
//! - [`lookup_cache`]: candidates kept while the registry's events show no change.
//! - [`trust`] and [`policy`]: what the client trusts and lends; [`state`]: what it
//!   remembers across runs (the highest proxy versions accepted, learned key statements).
//! - [`sandbox`]: the engine, compilation (with a size cap and a cache), one fresh store
//!   per run, limits and deadlines, typed failures.
//! - [`host`]: the `courier:proxy/host` world (provider, host-info, operator) and the
//!   bounded stdio capture; [`provider`]: the pinned QUIC client of the provider protocol.
//! - [`invoke`]: dynamic calls in WAVE (`courier:echo/echo.say("hi")`).
//!
//! This is the only courier crate that depends on wasmtime.

pub mod client;
pub mod host;
pub mod invoke;
pub mod lookup_cache;
pub mod policy;
pub mod provider;
pub mod sandbox;
pub mod state;
pub mod trust;

pub use client::{
    CallError, CallReport, Chosen, Client, ClientConfig, DEFAULT_LOOKUP_TTL, PhaseTimings,
    RejectReason, Rejection, ReportMode, SetupError, TypedReport,
};
pub use host::HostFacts;
pub use invoke::{Answer, CallSpec, Invocation, InvokeError};
pub use policy::{
    Limits, MissingCapabilities, MissingImport, MissingReason, OperatorAnswer, OperatorMode,
    Policy, Preopen,
};
pub use provider::{ProviderError, ProviderPool, ProviderTarget};
pub use sandbox::{
    CompileError, Compiled, CompilerChoice, RunError, RunFailure, RunLogs, RunOutput, RunTimings,
    Sandbox, SandboxConfig, SandboxError, TypedOutput,
};
pub use state::StateError;
pub use trust::{LearnError, TrustError, TrustRefusal, TrustStore};

/// Re-exported so applications can build arguments and read results of typed calls.
pub use wasmtime::component::Val;
