//! Why a client could not be set up, why a candidate was skipped, and why a call failed.

use super::freshness::FreshnessRefusal;
use super::{Chosen, PhaseTimings};
use crate::invoke::InvokeError;
use crate::policy::MissingCapabilities;
use crate::sandbox::{CompileError, RunFailure, SandboxError};
use crate::state::StateError;
use crate::trust::{LearnError, TrustError, TrustRefusal};
use courier_protocol::{LeaseId, ManifestError, VendorKey, VerifyError};
use courier_transport::ClientError;
use std::fmt;
use std::path::PathBuf;

/// Why a client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The sandbox could not be built.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The client's state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The learned key statements could not be read.
    #[error("learned keys {path}: {source}")]
    Learned {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: TrustError,
    },
    /// The learned key statements conflict with the configured trust store.
    #[error("learned key statements conflict with the trust store: {0}")]
    KeyConflict(#[from] LearnError),
}

/// Why a candidate was skipped.
#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    /// The manifest's signature (or encoding, or shape) does not verify.
    #[error("bad signature: {0}")]
    BadSignature(#[from] VerifyError),
    /// The vendor key is not in the trust store.
    #[error("vendor {0} is not trusted")]
    Untrusted(VendorKey),
    /// The vendor key's revocation, signed by that key, was learned.
    #[error("vendor key {0} is revoked")]
    Revoked(VendorKey),
    /// An operator this client follows revoked the vendor key (its signed statement was
    /// learned from the registry and verified).
    #[error("vendor key {vendor} is revoked by operator {operator}: {reason}")]
    RevokedByOperator {
        /// The vendor key.
        vendor: VendorKey,
        /// The operator key that signed the revocation.
        operator: VendorKey,
        /// The operator's reason.
        reason: String,
    },
    /// The proxy is older than the highest version of this service (and vendor) the
    /// client has accepted: a replayed old proxy.
    #[error("rollback refused: version {offered} is older than {have}, already accepted")]
    Rollback {
        /// The highest version accepted before.
        have: semver::Version,
        /// The version offered.
        offered: semver::Version,
    },
    /// The service is pinned to another version.
    #[error("version {offered} is not the pinned {pinned}")]
    NotPinned {
        /// The pinned version.
        pinned: semver::Version,
        /// The version offered.
        offered: semver::Version,
    },
    /// The manifest is expired or not yet valid, or the bytes are not what it commits to.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// The manifest does not claim the interface or function the call needs.
    #[error("manifest does not claim {0}")]
    NotClaimed(String),
    /// The proxy imports what the policy does not grant.
    #[error("{0}")]
    Capabilities(#[from] MissingCapabilities),
    /// The component is larger than the policy's cap.
    #[error("component of {size} bytes exceeds the cap of {limit}")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The component could not be fetched.
    #[error("fetch: {0}")]
    Fetch(ClientError),
    /// The component could not be read or compiled.
    #[error("{0}")]
    Compile(CompileError),
    /// The component does not export what was matched.
    #[error("component does not export it: {0}")]
    MissingExport(InvokeError),
    /// A trusted root knows the vendor key, but its delegation does not let the key sign
    /// for this service now (expired, revoked, not covering the name, or widening).
    #[error("vendor key {vendor} refused by {root}: {reason}")]
    Delegation {
        /// The online key that signed the manifest.
        vendor: VendorKey,
        /// The trusted root.
        root: courier_protocol::RootId,
        /// Why the delegation does not hold (boxed: it names up to two keys).
        reason: Box<courier_protocol::AuthorityError>,
    },
    /// The candidate's freshness statement is missing, stale, forged, or names a newer
    /// version than the one offered.
    #[error("{0}")]
    Freshness(#[from] FreshnessRefusal),
}

/// A skipped candidate and why.
#[derive(Debug)]
pub struct Rejection {
    /// Its lease.
    pub lease: LeaseId,
    /// Service name (as the manifest says, even if unverified).
    pub name: String,
    /// Why it was skipped.
    pub reason: RejectReason,
}

impl From<TrustRefusal> for RejectReason {
    fn from(refusal: TrustRefusal) -> Self {
        match refusal {
            TrustRefusal::Untrusted(key) => Self::Untrusted(key),
            TrustRefusal::Revoked(key) => Self::Revoked(key),
            TrustRefusal::RevokedByOperator {
                key,
                operator,
                reason,
            } => Self::RevokedByOperator {
                vendor: key,
                operator,
                reason,
            },
            TrustRefusal::Delegation { key, root, reason } => Self::Delegation {
                vendor: key,
                root,
                reason,
            },
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (lease {}): {}", self.name, self.lease, self.reason)
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call text or arguments are malformed.
    #[error("{0}")]
    BadCall(#[from] InvokeError),
    /// The registry query failed.
    #[error("lookup: {0}")]
    Lookup(ClientError),
    /// The registry has no candidate for the query.
    #[error("no proxy offers {0}")]
    NoCandidates(String),
    /// Proxies of the interface are registered, but none claims the function called.
    #[error("no proxy offers {interface}.{function}; its proxies export {}", .exported.join(", "))]
    NoSuchFunction {
        /// The interface asked for (unversioned).
        interface: String,
        /// The function asked for.
        function: String,
        /// The functions the interface's registered proxies claim (unverified, for the
        /// message only), sorted.
        exported: Vec<String>,
    },
    /// Every candidate failed a check; nothing ran.
    #[error("no usable proxy: {}", list(.rejected))]
    NoUsableCandidate {
        /// Each candidate and why it was skipped.
        rejected: Vec<Rejection>,
    },
    /// The client's state (accepted versions) could not be written; nothing ran.
    #[error(transparent)]
    State(StateError),
    /// A registry's directive does not hold together (it names another version than the
    /// registration it carries); nothing ran.
    #[error("refused directive: {0}")]
    Directive(String),
    /// The chosen proxy's prerequisites could not be met; what the chain had installed was
    /// undone (each step listed) and the proxy did not run.
    #[error("{error}{}", undone(.unwound))]
    Prerequisites {
        /// Why.
        error: Box<super::PrerequisiteError>,
        /// What was undone, in the order undone.
        unwound: Vec<super::Unwound>,
    },
    /// The chosen proxy ran and failed (trap, limit, deadline...).
    #[error("{} {}: {}", .chosen.name, .chosen.version, .failure)]
    Run {
        /// The candidate that ran.
        chosen: Box<Chosen>,
        /// What went wrong, with the logs up to it.
        failure: Box<RunFailure>,
        /// Phase timings up to the failure.
        timings: PhaseTimings,
    },
}

fn undone(unwound: &[super::Unwound]) -> String {
    if unwound.is_empty() {
        return String::new();
    }
    let steps: Vec<String> = unwound.iter().map(ToString::to_string).collect();
    format!("; undone: {}", steps.join("; "))
}

fn list(rejected: &[Rejection]) -> String {
    rejected
        .iter()
        .map(Rejection::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl CallError {
    /// The run failure, if the chosen proxy ran and failed.
    pub fn run_failure(&self) -> Option<&RunFailure> {
        match self {
            CallError::Run { failure, .. } => Some(failure),
            _ => None,
        }
    }

    /// The rejection reasons, if nothing ran.
    pub fn rejections(&self) -> &[Rejection] {
        match self {
            CallError::NoUsableCandidate { rejected } => rejected,
            _ => &[],
        }
    }
}
