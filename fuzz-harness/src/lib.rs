//! The bodies and oracles of courier's fuzz targets, as ordinary functions.
//!
//! The cargo-fuzz crate in `fuzz/` (nightly, libFuzzer) calls them on generated inputs, and
//! the root package's `tests/fuzz_replay.rs` (stable `cargo test`) calls them on every
//! committed corpus file and every crash artifact, so a finding stays a regression test
//! through exactly the same oracle. Each function panics when its oracle is violated and only then: the panic
//! is the finding.
//!
//! - [`frames`]: arbitrary bytes through frame splitting and every decoder of network input.
//! - [`manifests`]: arbitrary bytes as a `SignedManifest`; nothing unsigned verifies.
//! - [`bundles`]: arbitrary bytes as a component through `courier_protocol::inspect`.
//! - [`lease_table`]: arbitrary operation sequences against a model of the lease table.
//! - [`registry_state`]: arbitrary sequences of the registry's operations, commits that
//!   fail and restarts, against a model of its rules and of what was committed.
//! - [`client_vm`] (feature `vm`): wasm-smith modules, wrapped in a component, through the
//!   client sandbox's check, compile, instantiate and invoke with its real limits.
//! - [`roots`]: arbitrary bytes as vendor root statements and delegations; nothing
//!   unsigned verifies, and authority never grants beyond a grant.
//! - [`freshness`]: arbitrary bytes as a `SignedFreshness`; nothing unsigned verifies.
//! - [`identity_rotations`]: arbitrary certificate chains through the pin verifier that
//!   follows rotations of the registry's TLS identity; nothing moves a pin unsigned.

pub mod bundles;
#[cfg(feature = "vm")]
pub mod client_vm;
pub mod frames;
pub mod freshness;
pub mod identity_rotations;
pub mod lease_table;
pub mod manifests;
pub mod registry_state;
pub mod roots;

/// Every fuzz target by name, as the replay test and the fuzz crate know them.
pub const TARGETS: &[&str] = &[
    "frames",
    "manifests",
    "bundles",
    "lease_table",
    "registry_state",
    "client_vm",
    "roots",
    "freshness",
    "identity_rotations",
];

/// Runs the target `name` on one input; `false` when there is no such target (or it needs
/// a feature that is off).
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "frames" => frames::run(data),
        "manifests" => manifests::run(data),
        "bundles" => bundles::run(data),
        "lease_table" => lease_table::run(data),
        "registry_state" => registry_state::run(data),
        "roots" => roots::run(data),
        "freshness" => freshness::run(data),
        #[cfg(feature = "vm")]
        "client_vm" => client_vm::run(data),
        "identity_rotations" => identity_rotations::run(data),
        _ => return false,
    }
    true
}
