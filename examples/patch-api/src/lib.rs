//! The patch service's own contract between its proxy (`proxies/patch`, at the client) and
//! its provider (`courier provider run patch`), and the install engine the proxy runs.
//!
//! - [`messages`]: what the proxy and the provider send each other, in postcard, one method
//!   of the provider per message ([`methods`]): the fingerprints to gather, the inventory
//!   and the recommendation it gets, patch records, payload chunks by hash, install
//!   reports. These are the vendor's own encodings: courier carries them as opaque bytes.
//! - [`fingerprint`]: a patch's existence test (seed 004) evaluated against the evidence
//!   the proxy gathered: needed, already applied, or changed locally.
//! - [`engine`]: installs a patch into the managed directory: staged, digests checked,
//!   swapped in with a backup, checked again (digests and a health check the caller runs),
//!   rolled back whole on any failure, recorded in a ledger; `remove` restores the backup.
//! - [`download`]: a payload fetched from the provider in chunks.
//! - [`tree`]: a digest of a whole directory tree, to show a rollback left it as it was.
//!
//! Everything runs on `std::fs`, so the same code runs natively (the provider, the tests)
//! and in the proxy, where WASI gives `std::fs` over the directory the client's policy
//! lends.

pub mod digest;
pub mod download;
pub mod engine;
pub mod fingerprint;
pub mod messages;
pub mod paths;
pub mod tree;

pub use digest::Digest;
pub use engine::Engine;
pub use messages::{
    ChunkRequest, FileEvidence, FileState, Fingerprint, GatherList, HealthCheck, InstallReport,
    Inventory, NewFile, Package, PatchOffer, PatchRecord, Recommendation, ReportEntry, Requires,
    Severity, Stage, UpgradeOffer,
};
pub use paths::RelPath;

/// The provider's method names, one per request message.
pub mod methods {
    /// Empty payload → [`GatherList`](crate::GatherList): the files whose digests the
    /// fingerprints need.
    pub const FINGERPRINTS: &str = "fingerprints";
    /// [`Inventory`](crate::Inventory) → [`Recommendation`](crate::Recommendation); the
    /// provider keeps the inventory.
    pub const RECOMMEND: &str = "recommend";
    /// A patch id (UTF-8) → [`PatchRecord`](crate::PatchRecord).
    pub const PATCH: &str = "patch";
    /// [`ChunkRequest`](crate::ChunkRequest) → the payload bytes asked for (raw).
    pub const CHUNK: &str = "chunk";
    /// [`InstallReport`](crate::InstallReport) → empty; the provider keeps it.
    pub const REPORT: &str = "report";
}

/// The directory inside the managed directory that holds the engine's own state (ledger,
/// journal, staging area, backups). Patches may not write into it.
pub const STATE_DIR: &str = ".courier-patch";

/// The largest payload chunk a provider serves in one answer (256 KiB).
pub const MAX_CHUNK: u32 = 256 * 1024;

/// Where a patch proxy finds the managed directory when the `managed-dir` host fact does
/// not name it: the WASI preopen the client's policy lends under this guest path.
pub const DEFAULT_MANAGED_DIR: &str = "/managed";
