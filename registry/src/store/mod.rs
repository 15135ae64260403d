//! Durable state behind a small trait: the registry's driver commits [`Batch`]es to a
//! [`Storage`] and reads manifests, history and component bytes from it. [`RedbStore`]
//! (redb in the data directory, component files beside it) is the implementation a single
//! registry uses; a clustered backend is another implementation of the same trait.
//!
//! Every method may block (disk IO, fsync): the driver calls them from blocking threads,
//! never from an async worker, except the bounded manifest read of a lookup (see
//! [`crate::Registry::find`]).

mod blobs;
mod redb;

pub use self::redb::RedbStore;
/// How registrations and lease rows are kept as bytes, for every backend.
pub mod records {
    pub use super::redb::{
        component_of, decode_manifest, encode_manifest, row_from_stored, row_to_stored,
    };
}
pub use blobs::{BlobDir, BlobSweep};

use courier_protocol::{
    Approval, AuditEntry, ClientInfo, ContentHash, EventKind, HistoryEntry, LeaseId, MirrorRule,
    RolloutMark, RolloutRecord, SignedFreshness, SignedKeyStatement, SignedManifest,
    SignedOperatorStatement, VendorKey,
};

/// Durable storage of a registry. Every commit is durable when it returns, and a reader
/// sees every commit that returned before it started.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// What the store holds besides the registrations, read once at open: its marks,
    /// names, grants and key statements.
    fn load_meta(&self) -> Result<StoredMeta, StoreError>;

    /// Calls `each` for every stored registration with its lease row, one at a time (a large
    /// store never sits in memory twice). Records that cannot be read are skipped with a
    /// warning; their ids are returned so that they can be deleted.
    fn load_leases(&self, each: &mut dyn FnMut(StoredLease)) -> Result<Vec<LeaseId>, StoreError>;

    /// Commits `batch` durably, all of it or nothing.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;

    /// The signed manifests of `leases`, `None` where there is none (any more).
    fn manifests(&self, leases: &[LeaseId]) -> Result<Vec<Option<SignedManifest>>, StoreError>;

    /// Appends a history entry of `client` under `seq`, durably; past `keep` entries in all,
    /// the oldest go, whichever client they belong to.
    fn append_history(
        &self,
        client: &str,
        seq: u64,
        entry: &HistoryEntry,
        keep: u64,
    ) -> Result<(), StoreError>;

    /// The newest history entries of `client`, newest first: at most `limit`, and at most
    /// `max_bytes` of them (at least one, if there is one).
    fn history(
        &self,
        client: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError>;

    /// The newest history entry of `client`, if any.
    fn last_history(&self, client: &str) -> Result<Option<HistoryEntry>, StoreError>;

    /// Usage records from hour `since_hour_ms` on.
    fn usage_since(&self, since_hour_ms: u64) -> Result<Vec<UsageRecord>, StoreError>;

    /// Audit entries from number `from_seq` on, oldest first, at most `limit`.
    fn audit(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Stores component bytes under their hash, atomically and durably (nothing happens if
    /// they are there already). A component lives as long as a committed registration
    /// names it.
    fn put_component(&self, hash: &ContentHash, bytes: &[u8]) -> Result<(), StoreError>;

    /// Deletes the component `hash` unless a committed registration names it (a
    /// registration that stored its component and was then refused).
    fn drop_unclaimed_component(&self, hash: &ContentHash) -> Result<(), StoreError>;

    /// The size of the component stored under `hash`, without reading it.
    fn component_size(&self, hash: &ContentHash) -> Result<Option<u64>, StoreError>;

    /// The component bytes stored under `hash`, checked against the hash (a damaged file is
    /// an error, never served).
    fn read_component(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Usage counts of one hour, client and service, added to what the store has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The hour (its first millisecond since the Unix epoch).
    pub hour_ms: u64,
    /// The client (`None`: not authenticated as one).
    pub client: Option<VendorKey>,
    /// The service name.
    pub service: String,
    /// Proxies handed out.
    pub handed_out: u64,
    /// Bytes fetched.
    pub bytes: u64,
    /// Calls reported.
    pub calls: u64,
    /// Of them, failed.
    pub failed: u64,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// Stored bytes do not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store cannot commit now (a cluster store without quorum, or a node that is no
    /// longer the writer); nothing was written. Reads from memory go on.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A lease's durable row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRow {
    /// When it runs out, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Last granted duration.
    pub ttl_ms: u64,
    /// Renewals so far.
    pub renewals: u64,
    /// Whether the lease is in its post-restart grace period.
    pub in_grace: bool,
}

/// One stored registration with its lease, as read at open.
#[derive(Debug, Clone)]
pub struct StoredLease {
    /// The lease.
    pub lease: LeaseId,
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// Its lease row.
    pub row: LeaseRow,
}

/// What the store holds besides the registrations.
#[derive(Debug, Clone, Default)]
pub struct StoredMeta {
    /// This registry's id, made when the store was created.
    pub registry_id: String,
    /// Event numbers below this may have been used.
    pub seq_reserved: u64,
    /// Wall time of the last write that found the registry alive, 0 if none.
    pub last_alive_ms: u64,
    /// The highest history number used.
    pub history_seq: u64,
    /// Every service name with its owner.
    pub names: Vec<(String, VendorKey)>,
    /// Every grant of a name to a further key.
    pub grants: Vec<(String, VendorKey)>,
    /// Key rotations: the old key and its statement.
    pub rotations: Vec<(VendorKey, SignedKeyStatement)>,
    /// Key revocations: the key and its own statement (`None`: by the operator).
    pub revocations: Vec<(VendorKey, Option<SignedKeyStatement>)>,
    /// Operators' signed revocations: the key revoked and the statement.
    pub operator_statements: Vec<(VendorKey, SignedOperatorStatement)>,
    /// Every registered client.
    pub clients: Vec<ClientInfo>,
    /// Bans: service name, vendor key, reason.
    pub bans: Vec<(String, VendorKey, String)>,
    /// Drained services and why.
    pub drains: Vec<(String, String)>,
    /// Child registries the operator allowed: key, name, when (wall-clock ms).
    pub children: Vec<(VendorKey, String, u64)>,
    /// Leases an operator revoked: the lease, why, and until when (wall-clock ms) it is
    /// remembered.
    pub lease_revocations: Vec<(LeaseId, String, u64)>,
    /// The highest audit entry number used.
    pub audit_seq: u64,
    /// Every (service, client) pair that was ever handed a proxy.
    pub served: Vec<(String, VendorKey)>,
    /// Vendor roots' statements, every version held.
    pub root_statements: Vec<courier_protocol::SignedRootStatement>,
    /// Further delegations made under vendor roots.
    pub delegations: Vec<courier_protocol::SignedDelegation>,
    /// The freshness statements held (each the latest of some vendor's service).
    pub freshness: Vec<SignedFreshness>,
    /// A child registry: the registrations mirrored from its parent.
    pub mirrored: Vec<LeaseId>,
    /// A child registry: its rules.
    pub mirror_rules: Vec<MirrorRule>,
    /// A child registry: its approvals, pending and decided.
    pub approvals: Vec<Approval>,
    /// A child registry: its anchor in the parent's feed (see [`MirrorAnchor`]).
    pub mirror_anchor: Option<MirrorAnchor>,
    /// Registrations staged for a rollout.
    pub staged: Vec<LeaseId>,
    /// Every rollout.
    pub rollouts: Vec<RolloutRecord>,
    /// Clients' marks on rollouts.
    pub rollout_marks: Vec<(u64, VendorKey, RolloutMark)>,
}

/// Where a child registry is in its parent's event feed: the parent (its TLS pin) and the
/// next event number to apply. Committed with what the events changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorAnchor {
    /// The parent's pin (`sha256:...`): another parent's numbers mean nothing here.
    pub parent: String,
    /// The next event number of the parent's feed to apply.
    pub next: u64,
}

/// Why a registration leaves the catalog (and its event's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its vendor registered the name again.
    Replaced,
    /// Its vendor cancelled it.
    Cancelled,
    /// Its lease ran out.
    Expired,
    /// Its key was revoked, or an operator or a vendor root took it away.
    Revoked,
}

impl Removal {
    /// The event a removal is.
    pub fn event(self) -> EventKind {
        match self {
            Removal::Replaced => EventKind::Replaced,
            Removal::Cancelled => EventKind::Cancelled,
            Removal::Expired => EventKind::Expired,
            Removal::Revoked => EventKind::Revoked,
        }
    }

    /// One byte for a stored record.
    pub fn code(self) -> u8 {
        match self {
            Removal::Replaced => 1,
            Removal::Cancelled => 2,
            Removal::Expired => 3,
            Removal::Revoked => 4,
        }
    }

    /// The removal a stored byte stands for.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Removal::Replaced,
            2 => Removal::Cancelled,
            3 => Removal::Expired,
            4 => Removal::Revoked,
            _ => return None,
        })
    }
}

/// What a write transaction changes. Everything in it commits together, durably.
#[derive(Debug, Default)]
pub struct Batch {
    /// New registrations (the component each names is read from its manifest).
    pub registrations: Vec<(LeaseId, SignedManifest)>,
    /// Lease rows to write.
    pub leases: Vec<(LeaseId, LeaseRow)>,
    /// Registrations and leases to delete, each with why (a cluster's nodes number the
    /// event from it).
    pub delete: Vec<(LeaseId, Removal)>,
    /// Service names and their owners (a name that has an owner keeps it).
    pub names: Vec<(String, VendorKey)>,
    /// Names granted to more keys.
    pub grants: Vec<(String, VendorKey)>,
    /// A new event number high-water mark.
    pub seq_reserved: Option<u64>,
    /// Wall time of this write, when it finds the registry alive.
    pub last_alive_ms: Option<u64>,
    /// Key rotations: the old key and its statement.
    pub rotations: Vec<(VendorKey, SignedKeyStatement)>,
    /// Key revocations: the key and its own statement (`None`: by the operator).
    pub revocations: Vec<(VendorKey, Option<SignedKeyStatement>)>,
    /// Names owned by, and grants to, the first key pass to the second (a rotation).
    pub transfers: Vec<(VendorKey, VendorKey)>,
    /// Operators' signed revocations to keep.
    pub operator_statements: Vec<(VendorKey, SignedOperatorStatement)>,
    /// Client records to write (whole).
    pub clients: Vec<ClientInfo>,
    /// Operators' actions to log.
    pub audit: Vec<AuditEntry>,
    /// Bans to add: name, key, reason.
    pub bans: Vec<(String, VendorKey, String)>,
    /// Bans to lift.
    pub unbans: Vec<(String, VendorKey)>,
    /// Drains to start: name, reason.
    pub drains: Vec<(String, String)>,
    /// Drains to end.
    pub undrains: Vec<String>,
    /// Child registries to allow: key, name, when (wall-clock ms).
    pub children: Vec<(VendorKey, String, u64)>,
    /// Child registries to deny.
    pub unchildren: Vec<VendorKey>,
    /// Revoked leases to remember: lease, reason, until (wall-clock ms).
    pub lease_revocations: Vec<(LeaseId, String, u64)>,
    /// Revoked leases to forget.
    pub forget_lease_revocations: Vec<LeaseId>,
    /// Usage counts to add.
    pub usage: Vec<UsageRecord>,
    /// Vendor roots' statements to keep.
    pub root_statements: Vec<courier_protocol::SignedRootStatement>,
    /// Further delegations to keep.
    pub delegations: Vec<courier_protocol::SignedDelegation>,
    /// Freshness statements to hold, each for every service it names.
    pub freshness: Vec<SignedFreshness>,
    /// Registrations (in `registrations`) mirrored from the parent: marked as such.
    pub mirrored: Vec<LeaseId>,
    /// Mirror rules to keep.
    pub mirror_rules: Vec<MirrorRule>,
    /// Mirror rules to drop.
    pub unmirror_rules: Vec<u32>,
    /// Approvals to keep (each replaces one about the same version).
    pub approvals: Vec<Approval>,
    /// The child's new anchor in its parent's feed.
    pub mirror_anchor: Option<MirrorAnchor>,
    /// Registrations (in `registrations`) staged for a rollout: marked as such.
    pub staged: Vec<LeaseId>,
    /// Rollout records to write (whole).
    pub rollouts: Vec<RolloutRecord>,
    /// Clients' marks on rollouts.
    pub rollout_marks: Vec<(u64, VendorKey, RolloutMark)>,
}

impl Batch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.is_lease_rows_only()
    }

    /// Whether the batch writes lease rows and nothing else (a cluster standby's flush of
    /// the leases it renewed).
    pub fn is_lease_rows_only(&self) -> bool {
        self.registrations.is_empty()
            && self.delete.is_empty()
            && self.names.is_empty()
            && self.grants.is_empty()
            && self.seq_reserved.is_none()
            && self.last_alive_ms.is_none()
            && self.rotations.is_empty()
            && self.revocations.is_empty()
            && self.transfers.is_empty()
            && self.operator_statements.is_empty()
            && self.clients.is_empty()
            && self.audit.is_empty()
            && self.bans.is_empty()
            && self.unbans.is_empty()
            && self.drains.is_empty()
            && self.undrains.is_empty()
            && self.children.is_empty()
            && self.unchildren.is_empty()
            && self.lease_revocations.is_empty()
            && self.forget_lease_revocations.is_empty()
            && self.usage.is_empty()
            && self.root_statements.is_empty()
            && self.delegations.is_empty()
            && self.freshness.is_empty()
            && !self.touches_mirror()
            && !self.touches_rollouts()
    }

    /// Whether the batch writes anything of staged rollouts (a cluster's store keeps
    /// none yet).
    pub fn touches_rollouts(&self) -> bool {
        !self.staged.is_empty() || !self.rollouts.is_empty() || !self.rollout_marks.is_empty()
    }

    /// Whether the batch writes anything of a child registry's mirror (a cluster's store
    /// keeps none of it).
    pub fn touches_mirror(&self) -> bool {
        !self.mirrored.is_empty()
            || !self.mirror_rules.is_empty()
            || !self.unmirror_rules.is_empty()
            || !self.approvals.is_empty()
            || self.mirror_anchor.is_some()
    }
}
