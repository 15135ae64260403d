//! The client's policy: which host interfaces a proxy may import, which host facts it may
//! see, who answers the operator's questions, an optional preopened directory, the commands
//! it lends by name, the limits of every run, and what candidates' freshness statements must
//! show.
//!
//! [`Policy::check_imports`] compares a proxy's imports (from its manifest, then from the
//! component itself) with what the policy grants, and lists everything that is missing.
//!
//! Rooms: `commands` (lent commands and the arguments a proxy may add), `file` (the policy
//! file, `policy.toml`), `endpoints` (where a proxy may send its provider calls),
//! `freshness` (how fresh a vendor's statement of its current versions must be).

mod commands;
mod endpoints;
mod file;
mod freshness;

pub(crate) use commands::validate_all as validate_commands;
pub use commands::{
    ArgRefusal, ExtraArgs, LentCommand, LentCommandError, MAX_EXTRA_ARGS, is_package_name,
};
pub use endpoints::{EndpointRefusal, EndpointRule, EndpointRules, ProxyOrigin};
pub use file::{POLICY_FILE, PolicyFile, PolicyFileError};
pub use freshness::{DEFAULT_FRESHNESS_MAX_AGE, FreshnessPolicy};

use courier_protocol::InterfaceRef;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The version of the `courier:proxy` package this host implements.
pub const COURIER_PROXY_VERSION: semver::Version = semver::Version::new(0, 1, 0);

/// The version of the WASI 0.2 interfaces this host implements (wasmtime-wasi 48).
pub const WASI_VERSION: semver::Version = semver::Version::new(0, 2, 12);

/// `courier:proxy/provider`: the proxy's own provider. Always granted.
pub const PROVIDER: &str = "courier:proxy/provider";
/// `courier:proxy/host-info`: facts about the client system.
pub const HOST_INFO: &str = "courier:proxy/host-info";
/// `courier:proxy/operator`: messages, confirmations and progress for the operator.
pub const OPERATOR: &str = "courier:proxy/operator";
/// `courier:proxy/commands`: the commands the policy lends by name.
pub const COMMANDS: &str = "courier:proxy/commands";

/// Every `courier:proxy` interface a proxy may import, unversioned.
const COURIER_INTERFACES: [&str; 4] = [PROVIDER, HOST_INFO, OPERATOR, COMMANDS];

/// The WASI interfaces every run gets, harmlessly implemented: stdio into a bounded log,
/// clocks, random, an empty environment and argument list, no preopened directories
/// (unless the policy grants one), `exit` as a clean error. No sockets, no name lookup.
pub const SAFE_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Who answers `operator.confirm` when nobody is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAnswer {
    /// Every question is answered yes.
    ApproveAll,
    /// Every question is answered no.
    DenyAll,
}

/// How operator questions are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorMode {
    /// Never ask: the policy answers.
    Unattended(OperatorAnswer),
    /// Ask on the terminal when stdin is a terminal; otherwise answer with the fallback.
    Terminal {
        /// The answer when stdin is not a terminal.
        fallback: OperatorAnswer,
    },
}

/// A host directory lent to proxies through `wasi:filesystem/preopens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: PathBuf,
    /// The name the proxy sees (e.g. `/data`).
    pub guest: String,
    /// Whether the proxy may write.
    pub writable: bool,
}

/// Limits of one run and of what the client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory of a run, in bytes.
    pub memory_bytes: usize,
    /// Most table elements of a run.
    pub table_elements: usize,
    /// Time a run may spend executing guest code (host calls excluded), enforced by epoch
    /// interruption.
    pub cpu_time: Duration,
    /// Time a run may take from instantiation to its answer, host calls included.
    pub wall_time: Duration,
    /// Largest answer, in bytes of the returned values.
    pub output_bytes: usize,
    /// Largest component the client compiles.
    pub component_bytes: u64,
    /// Longest single provider call (also bounded by the time left of `wall_time`).
    pub provider_timeout: Duration,
    /// Largest provider reply passed to the proxy.
    pub provider_reply_bytes: usize,
    /// Bytes of stdout and of stderr kept per run (the rest is dropped).
    pub stdio_bytes: usize,
    /// Operator messages kept per run (the rest is dropped).
    pub transcript_lines: usize,
    /// Longest fetch of a component from the registry.
    pub fetch_timeout: Duration,
    /// Bytes of a lent command's stdout and of its stderr kept (the end; the rest is
    /// dropped).
    pub command_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            cpu_time: Duration::from_secs(2),
            wall_time: Duration::from_secs(10),
            output_bytes: 1 << 20,
            component_bytes: 8 << 20,
            provider_timeout: Duration::from_secs(5),
            provider_reply_bytes: 1 << 20,
            stdio_bytes: 64 << 10,
            transcript_lines: 256,
            fetch_timeout: Duration::from_secs(10),
            command_output_bytes: 64 << 10,
        }
    }
}

/// What the client lends a proxy, and the limits it runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Grant `courier:proxy/host-info`.
    pub grant_host_info: bool,
    /// Grant `courier:proxy/operator`.
    pub grant_operator: bool,
    /// Host facts a proxy may see through `host-info` (e.g. `os`, `arch`); others are absent.
    pub allowed_facts: BTreeSet<String>,
    /// Who answers operator questions.
    pub operator: OperatorMode,
    /// A directory lent to proxies, if any.
    pub preopen: Option<Preopen>,
    /// Commands lent to proxies by name (`courier:proxy/commands` is granted when there is
    /// at least one); names are unique.
    pub commands: Vec<LentCommand>,
    /// Limits of every run.
    pub limits: Limits,
    /// Where a proxy may send its provider calls (hosts, address ranges, ports; by default
    /// anywhere but this machine's loopback and link-local addresses for a proxy from a
    /// remote registry).
    pub provider_endpoints: EndpointRules,
    /// What candidates' freshness statements must show.
    pub freshness: FreshnessPolicy,
}

impl Default for Policy {
    /// Provider only; host-info and operator not granted; unattended, deny all; no
    /// directory; no commands; default limits; freshness statements required, at most ten
    /// minutes old.
    fn default() -> Self {
        Self {
            grant_host_info: false,
            grant_operator: false,
            allowed_facts: BTreeSet::new(),
            operator: OperatorMode::Unattended(OperatorAnswer::DenyAll),
            preopen: None,
            commands: Vec::new(),
            limits: Limits::default(),
            provider_endpoints: EndpointRules::default(),
            freshness: FreshnessPolicy::default(),
        }
    }
}

/// Why an import is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingReason {
    /// The host implements it, but the policy does not grant it.
    NotGranted,
    /// The host does not implement it at all (or not in a compatible version).
    Unknown,
}

/// One import a proxy needs and does not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingImport {
    /// The import as the proxy names it (with version).
    pub import: String,
    /// Why it is missing.
    pub reason: MissingReason,
}

/// Every import a proxy needs and the policy does not grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingCapabilities {
    /// The missing imports, in the proxy's order.
    pub missing: Vec<MissingImport>,
}

impl fmt::Display for MissingCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |reason: MissingReason| {
            self.missing
                .iter()
                .filter(|m| m.reason == reason)
                .map(|m| m.import.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let not_granted = list(MissingReason::NotGranted);
        let unknown = list(MissingReason::Unknown);
        match (not_granted.is_empty(), unknown.is_empty()) {
            (false, true) => write!(f, "not granted: {not_granted}"),
            (true, false) => write!(f, "not granted: {unknown} (unknown to this host)"),
            _ => write!(
                f,
                "not granted: {not_granted}; unknown to this host: {unknown}"
            ),
        }
    }
}

impl MissingCapabilities {
    /// The names of the missing imports.
    pub fn names(&self) -> Vec<&str> {
        self.missing.iter().map(|m| m.import.as_str()).collect()
    }
}

/// Whether an import of `wanted` is satisfied by an implementation of `provided`
/// (the component model's rule: same major version, or same minor for `0.x`, and not newer).
fn compatible(wanted: Option<&semver::Version>, provided: &semver::Version) -> bool {
    let Some(w) = wanted else { return true };
    if !w.pre.is_empty() {
        return w == provided;
    }
    let same_track = if w.major == 0 {
        provided.major == 0 && w.minor == provided.minor
    } else {
        w.major == provided.major
    };
    same_track && w <= provided
}

/// Interfaces that the WASI implementation knows but this host never links.
fn is_known_wasi(unversioned: &str) -> bool {
    unversioned.starts_with("wasi:sockets/") || unversioned == "wasi:cli/run"
}

impl Policy {
    /// A policy for tests and demos: everything optional granted, every fact allowed,
    /// unattended with `answer`.
    pub fn permissive(answer: OperatorAnswer) -> Self {
        Self {
            grant_host_info: true,
            grant_operator: true,
            allowed_facts: crate::host::FACT_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            operator: OperatorMode::Unattended(answer),
            ..Self::default()
        }
    }

    /// The `courier:proxy` interfaces granted, unversioned.
    pub fn granted_courier(&self) -> Vec<&'static str> {
        COURIER_INTERFACES
            .into_iter()
            .filter(|i| self.grants_courier(i))
            .collect()
    }

    /// Whether the `courier:proxy` interface `unversioned` is granted.
    fn grants_courier(&self, unversioned: &str) -> bool {
        match unversioned {
            PROVIDER => true,
            HOST_INFO => self.grant_host_info,
            OPERATOR => self.grant_operator,
            COMMANDS => !self.commands.is_empty(),
            _ => false,
        }
    }

    /// The lent command called `name`, if any.
    pub fn command(&self, name: &str) -> Option<&LentCommand> {
        self.commands.iter().find(|c| c.name == name)
    }

    /// Whether an import (full name, version optional) is granted.
    pub fn grants(&self, import: &str) -> Result<(), MissingReason> {
        // Checked for every compile and every newly verified manifest: borrowed, nothing built.
        let Ok(name) = InterfaceRef::parse(import) else {
            return Err(MissingReason::Unknown);
        };
        let unversioned = name.path();
        let version = name.version();
        if SAFE_WASI.contains(&unversioned) {
            return if compatible(version, &WASI_VERSION) {
                Ok(())
            } else {
                Err(MissingReason::Unknown)
            };
        }
        if COURIER_INTERFACES.contains(&unversioned) {
            if !compatible(version, &COURIER_PROXY_VERSION) {
                return Err(MissingReason::Unknown);
            }
            return if self.grants_courier(unversioned) {
                Ok(())
            } else {
                Err(MissingReason::NotGranted)
            };
        }
        if is_known_wasi(unversioned) {
            return Err(MissingReason::NotGranted);
        }
        Err(MissingReason::Unknown)
    }

    /// Checks every import against the policy; lists all that are missing.
    pub fn check_imports<S: AsRef<str>>(&self, imports: &[S]) -> Result<(), MissingCapabilities> {
        let missing: Vec<MissingImport> = imports
            .iter()
            .filter_map(|i| {
                let import = i.as_ref();
                self.grants(import).err().map(|reason| MissingImport {
                    import: import.to_string(),
                    reason,
                })
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MissingCapabilities { missing })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_policy_grants_provider_and_safe_wasi_only() {
        let p = Policy::default();
        p.check_imports(&[
            "courier:proxy/provider@0.1.0",
            "wasi:cli/environment@0.2.0",
            "wasi:io/streams@0.2.6",
            "wasi:filesystem/preopens@0.2.3",
        ])
        .unwrap();
        let err = p
            .check_imports(&[
                "courier:proxy/provider@0.1.0",
                "courier:proxy/operator@0.1.0",
                "wasi:sockets/tcp@0.2.0",
                "evil:net/raw@0.1.0",
            ])
            .unwrap_err();
        assert_eq!(
            err.names(),
            [
                "courier:proxy/operator@0.1.0",
                "wasi:sockets/tcp@0.2.0",
                "evil:net/raw@0.1.0"
            ]
        );
        assert_eq!(err.missing[2].reason, MissingReason::Unknown);
        let text = err.to_string();
        assert!(
            text.starts_with("not granted: courier:proxy/operator@0.1.0, wasi:sockets/tcp@0.2.0")
        );
        assert!(text.contains("unknown to this host: evil:net/raw@0.1.0"));
    }

    #[test]
    fn versions_follow_component_model_compatibility() {
        let p = Policy::permissive(OperatorAnswer::DenyAll);
        p.check_imports(&["courier:proxy/operator@0.1.0", "courier:proxy/host-info"])
            .unwrap();
        assert!(p.check_imports(&["courier:proxy/provider@0.2.0"]).is_err());
        assert!(p.check_imports(&["wasi:io/poll@0.3.0"]).is_err());
        assert!(p.check_imports(&["wasi:io/poll@0.2.99"]).is_err());
        assert!(p.check_imports(&["not an interface"]).is_err());
    }
}
