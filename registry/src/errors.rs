//! The registry's errors, one enum per operation. What each means on the wire is decided
//! once, by the server (`server::wire_errors`).

use crate::core::catalog::CatalogError;
use crate::core::clients::ClientError;
use crate::core::freshness::FreshnessConflict;
use crate::core::keys::{KeyError, StoredStatementError};
use crate::core::matcher::QueryError;
use crate::store::StoreError;
use courier_protocol::InspectError;
use courier_protocol::{
    ContentHash, FreshnessError, FreshnessTimeError, LeaseId, ManifestError, StatementError,
    VendorKey, VerifyError,
};

/// Why the registry could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored key statement does not verify.
    #[error("store: {0}")]
    Statement(#[from] StoredStatementError),
    /// The configuration is inconsistent.
    #[error("config: {0}")]
    Config(String),
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The connection is authenticated as another key than the manifest's.
    #[error("connection is authenticated as {auth}, the manifest is signed by {manifest}")]
    WrongVendor {
        /// The connection's key.
        auth: VendorKey,
        /// The manifest's key.
        manifest: VendorKey,
    },
    /// The manifest's signature or encoding is bad.
    #[error("manifest: {0}")]
    Verify(#[from] VerifyError),
    /// The manifest is expired or not yet valid.
    #[error("manifest: {0}")]
    Times(ManifestError),
    /// The component is not the one the manifest names.
    #[error("component: {0}")]
    Component(ManifestError),
    /// The component cannot be read.
    #[error("component: {0}")]
    Inspect(#[from] InspectError),
    /// The manifest names an interface or function the component does not export.
    #[error("component does not export {0}")]
    NotExported(String),
    /// The name belongs to another key, or an export's interface name is bad.
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// The vendor key was revoked or rotated away.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// An operator banned the key from the name.
    #[error("{key} is banned from {name}: {reason}")]
    Banned {
        /// The service name.
        name: String,
        /// The vendor key.
        key: VendorKey,
        /// The operator's reason.
        reason: String,
    },
    /// An operator is draining the service.
    #[error("{name} is being drained: {reason}")]
    Draining {
        /// The service name.
        name: String,
        /// The operator's reason.
        reason: String,
    },
    /// A cluster keeps no staged registrations yet.
    #[error("a cluster does not run staged rollouts yet: register staged at a single registry")]
    StagedInCluster,
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a renewal or cancellation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// No live lease with this id.
    #[error("no live lease {0}")]
    Unknown(LeaseId),
    /// The lease belongs to another key.
    #[error("lease {0} belongs to another vendor key")]
    NotOwner(LeaseId),
    /// An operator revoked the lease.
    #[error("lease {lease} was revoked by an operator: {reason}")]
    Revoked {
        /// The lease.
        lease: LeaseId,
        /// The operator's reason.
        reason: String,
    },
    /// An operator is draining the lease's service: it is not renewed.
    #[error("{name} is being drained, lease {lease} is not renewed: {reason}")]
    Draining {
        /// The lease.
        lease: LeaseId,
        /// The service name.
        name: String,
        /// The operator's reason.
        reason: String,
    },
    /// Event numbers ran out and the store has not reserved more yet (it is failing).
    #[error("registry cannot number events until its store accepts a write; try later")]
    NoHeadroom,
    /// The lease is mirrored from this registry's parent: its vendor keeps it there.
    #[error("lease {0} is mirrored from the parent registry: renew or cancel it there")]
    Mirrored(LeaseId),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a key statement was refused.
#[derive(Debug, thiserror::Error)]
pub enum StatementRefused {
    /// The statement is about another key than the connection's.
    #[error("connection is authenticated as {auth}, the statement is about {key}")]
    WrongKey {
        /// The connection's key.
        auth: VendorKey,
        /// The statement's key.
        key: VendorKey,
    },
    /// The statement does not verify.
    #[error("{0}")]
    Verify(#[from] StatementError),
    /// The statement conflicts with the key book (revoked, already rotated...).
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a freshness statement was refused.
#[derive(Debug, thiserror::Error)]
pub enum FreshnessRefused {
    /// The statement is by another key than the connection's.
    #[error("connection is authenticated as {auth}, the statement is by {vendor}")]
    WrongKey {
        /// The connection's key.
        auth: VendorKey,
        /// The statement's key.
        vendor: VendorKey,
    },
    /// The statement does not verify.
    #[error("{0}")]
    Verify(#[from] FreshnessError),
    /// The statement has expired, or is issued in the future.
    #[error("{0}")]
    Time(#[from] FreshnessTimeError),
    /// The key was revoked or rotated away.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// A service it names is not the key's (unowned, or another key's).
    #[error("service name {0:?} is not the statement key's")]
    NotOwner(String),
    /// The registry holds a statement as new or newer for a service it names.
    #[error("{0}")]
    NotNewer(#[from] FreshnessConflict),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The query is malformed.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a read (fetch, leases, history) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing stored under that key.
    #[error("no component {0}")]
    NotFound(ContentHash),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The connection's key is not a registered client.
    #[error("{0} is not a registered client: register it first (courier client register)")]
    UnknownClient(VendorKey),
    /// A field is empty or too large.
    #[error("invalid report: {0}")]
    Invalid(&'static str),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why an operator grant failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The name is not a valid service name.
    #[error("invalid service name {0:?}")]
    Name(String),
    /// The store failed; nothing was granted.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why an operator's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The lease is not live.
    #[error("no live lease {0}")]
    UnknownLease(LeaseId),
    /// The service name is not valid.
    #[error("invalid service name {0:?}")]
    Name(String),
    /// A child registry's name is empty, too long, or not printable.
    #[error("invalid child name {0:?} (1 to 128 bytes, no control characters)")]
    ChildName(String),
    /// No child registry of that key was allowed.
    #[error("{0} is not an allowed child")]
    UnknownChild(VendorKey),
    /// A mirror rule is refused.
    #[error("mirror rule: {0}")]
    Rule(#[from] crate::core::mirror::RuleError),
    /// A cluster's node keeps no rules or approvals: a cluster does not mirror a parent.
    #[error(
        "a cluster does not mirror a parent registry: rules and approvals are a single registry's"
    )]
    NotAChild,
    /// No approval was asked for this version.
    #[error("no approval of {name}@{version} by {vendor} was asked for")]
    UnknownApproval {
        /// The vendor key.
        vendor: VendorKey,
        /// The service name.
        name: String,
        /// The version.
        version: String,
    },
    /// The reason is too long.
    #[error("a reason of {0} bytes is longer than {max}", max = courier_protocol::limits::MAX_REASON_LEN)]
    Reason(usize),
    /// The operator statement does not verify.
    #[error("operator statement: {0}")]
    Statement(#[from] VerifyError),
    /// The statement is signed by another key than the connection's operator key.
    #[error("the statement is signed by {signer}, the connection is {operator}")]
    NotTheSigner {
        /// The statement's operator.
        signer: VendorKey,
        /// The connection's operator key.
        operator: VendorKey,
    },
    /// A rollout's spec is refused.
    #[error("rollout: {0}")]
    RolloutSpec(String),
    /// No live staged registration of that version to roll out.
    #[error(
        "no staged registration of {name}@{version} by the name's owner or a key granted it \
         (register it with --staged first)"
    )]
    NotStaged {
        /// The service name.
        name: String,
        /// The version.
        version: String,
    },
    /// The service has a rollout under way already.
    #[error("{name} has rollout {id} under way ({state}); abort it first")]
    RolloutUnderWay {
        /// The service name.
        name: String,
        /// The rollout.
        id: u64,
        /// Where it stands.
        state: String,
    },
    /// The service has no rollout that can do this.
    #[error("{name} has no {wanted} rollout")]
    NoRollout {
        /// The service name.
        name: String,
        /// `running`, `paused` or `running or paused`.
        wanted: &'static str,
    },
    /// A cluster keeps no rollouts yet.
    #[error("rollouts are a single registry's: a cluster does not run them yet")]
    RolloutsInCluster,
    /// The store failed; nothing was done.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a client's request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientRequestError {
    /// The registration or the data is refused.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The key may not read that client's data.
    #[error("{0} may read only its own data")]
    Forbidden(VendorKey),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Why a vendor root's statement or further delegation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RootPublishError {
    /// It does not verify, does not follow the newest statement held, or widens a grant.
    #[error("{0}")]
    Refused(#[from] crate::core::roots::RootRefused),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}
