//! courier's client: finds a proxy, verifies it, runs it once in a wasmtime sandbox where it
//! can reach only its own provider and what the client's policy grants, and discards it.
//!
//! The crate's public API is what this file re-exports; its modules are private. Inside,
//! from the outside in:
//! - `client`: the whole flow of one call ([`Client`]): query, the check order (in
//!   `client/vet.rs`), the vendor's freshness statement, rollback memory and pins, trust
//!   and key-statement sync, run, discard, outcome report.
//! - `lookup_cache`: candidates kept while the registry's events show no change.
//! - `discard`: what the sandbox keeps for a lease (compiled component, provider
//!   connection) goes when the lease ends or its key is revoked.
//! - `trust` and `policy`: what the client trusts ([`TrustStore`]) and lends ([`Policy`]);
//!   `state`: the state directory's files and their atomic writes.
//! - `sandbox`: the engine, compilation (with a size cap and a cache), one fresh store
//!   per run, limits and deadlines, typed failures ([`Sandbox`]).
//! - `host`: the `courier:proxy/host` world (provider, host-info, operator, commands),
//!   host facts and the bounded stdio capture; `provider`: the pinned QUIC client of the
//!   provider protocol.
//! - `invoke`: dynamic calls in WAVE (`courier:echo/echo.say("hi")`); `answer_size`: a
//!   typed call's answer measured like a dynamic one's, for the same output cap.
//!
//! The `bench` feature adds entry points only the benchmarks use
//! (`Sandbox::instantiate_only`).
//!
//! This is the only courier crate that depends on wasmtime.

mod answer_size;
mod client;
mod discard;
mod host;
mod invoke;
mod lookup_cache;
mod policy;
mod provider;
mod sandbox;
mod state;
mod trust;

pub use answer_size::AnswerSize;
pub use client::{
    CallError, CallReport, Chosen, Client, ClientConfig, DEFAULT_LOOKUP_TTL,
    DEFAULT_PREREQUISITE_DEPTH, FreshnessRefusal, INSTALL_PACKAGE, INSTALLER_INTERFACE, Installed,
    LEDGER_FILE, LedgerEntry, PREREQUISITES_INTERFACE, PROVIDES_ATTRIBUTE, PROVIDES_FACT,
    PhaseTimings, PrerequisiteError, REMOVE_PACKAGE, RejectReason, Rejection, ReportMode,
    Requirement, SetupError, TypedReport, Undone, Unwound, UpdateApplied, UpdateCheck, UpdateError,
    UpdateOffer, VERSION_FACT, VersionMemory,
};
pub use host::{
    CommandOutput, CommandRefusal, FACT_NAMES, FactSources, HostFacts, MINIMAL_PATH,
    OperatorConsole, PERSON_WAIT, TerminalConsole, ask_terminal, ask_terminal_as,
};
pub use invoke::{Answer, CallSpec, Invocation, InvokeError, values_size};
pub use policy::{
    ArgRefusal, ExtraArgs, LentCommand, LentCommandError, Limits, MAX_EXTRA_ARGS,
    MissingCapabilities, MissingImport, MissingReason, OperatorAnswer, OperatorMode, POLICY_FILE,
    Policy, PolicyFile, PolicyFileError, Preopen, is_package_name,
};
pub use policy::{DEFAULT_FRESHNESS_MAX_AGE, FreshnessPolicy};
pub use policy::{EndpointRefusal, EndpointRule, EndpointRules, ProxyOrigin};

/// Re-exported so applications can write address ranges of [`EndpointRules`].
pub use ipnet::IpNet;
pub use provider::{ProviderError, ProviderPool, ProviderTarget};
#[cfg(feature = "bench")]
pub use sandbox::BareInstance;
pub use sandbox::{
    COMPILED_DIR, COMPILED_KEY_FILE, CompileError, Compiled, CompiledCodeKey, CompilerChoice,
    DEFAULT_DISK_CACHE_BYTES, DiskCacheConfig, DiskCacheError, DiskCacheStats, RunError,
    RunFailure, RunLogs, RunOutput, RunTimings, Sandbox, SandboxConfig, SandboxError, TypedOutput,
};
pub use state::{KEYS_FILE, StateError, VERSIONS_FILE};
pub use trust::{LearnError, OperatorLearnError, TrustError, TrustRefusal, TrustStore};

/// Re-exported so applications can build arguments and read results of typed calls.
pub use wasmtime::component::Val;
