//! Wire messages between clients, vendors and the registry.
//!
//! Every connection starts with [`Request::Hello`] on its first stream; the registry answers
//! [`Response::Welcome`] or a version error and closes. After that each request travels on a
//! bidirectional stream of its own: one request frame, then one response frame (a
//! subscription answers with a sequence of [`Response::Events`] frames).

mod admin;
mod children;
mod clients;
mod events;
mod history;
mod interest;
mod leases;
mod mirror;
pub mod provider;
mod query;
mod rollouts;
mod roots;
mod usage;

pub use admin::{AdminAction, AuditEntry};
pub use children::{ChildInfo, ChildWelcome};
pub use clients::{ClientInfo, ClientPage, ClientProfile, SystemData, SystemSnapshot};
pub use events::{Event, EventBatch, EventKind};
pub use history::{HistoryEntry, Outcome};
pub use interest::{
    Interest, InterestGrant, InterestId, ListenFrame, Notification, NotificationBatch, Transition,
};
pub use leases::{
    CatalogEntry, CatalogPage, ClusterNodes, LeaseCursor, LeaseFilter, LeaseGrant, LeaseId,
    LeaseInfo, LeasePage, Mirrored, Register,
};
pub use mirror::{Approval, ApprovalState, ChildReport, MirrorRule, MirrorStatus, ServiceActivity};
pub use query::{AttributeConstraint, Candidate, ServiceQuery};
pub use rollouts::{
    BadWave, Directive, MAX_DIRECTIVES, MAX_UNDO_CALL, MAX_WAVE_DELAY_MS, MAX_WAVES, RolloutMark,
    RolloutRecord, RolloutSpec, RolloutState, RolloutStatus, UNDO_ATTRIBUTE, UndoReport,
    WaveSelector, WaveStatus, signed_undo_call,
};
pub use roots::{MAX_ROOTS_ASKED, RootBatch, RootSince};
pub use usage::{UsageBy, UsageQuery, UsageRow};

use crate::freshness::SignedFreshness;
use crate::hash::ContentHash;
use crate::operator::SignedOperatorStatement;
use crate::root::{SignedDelegation, SignedRootStatement};
use crate::signing::VendorKey;
use crate::statement::SignedKeyStatement;
use serde::{Deserialize, Serialize};
use std::fmt;

/// First message of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`crate::PROTOCOL_VERSION`].
    pub version: u16,
    /// A free-form name of the peer software, for logs.
    pub agent: String,
}

/// The registry's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The registry's protocol version.
    pub version: u16,
    /// A fresh random challenge a vendor signs to authenticate this connection.
    pub challenge: [u8; 32],
}

/// Requests to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Opens a connection.
    Hello(Hello),
    /// Authenticates the connection as a vendor key by signing the challenge.
    Authenticate {
        /// The vendor's key.
        vendor: VendorKey,
        /// Signature over `AUTH_DOMAIN || challenge || registry pin`.
        #[serde(with = "serde_sig")]
        signature: [u8; 64],
    },
    /// Registers a proxy (authenticated as the manifest's vendor key).
    Register(Register),
    /// Renews a lease (authenticated as its owner).
    Renew {
        /// The lease.
        lease: LeaseId,
        /// Requested duration.
        ttl_ms: u64,
    },
    /// Cancels a lease (authenticated as its owner).
    Cancel {
        /// The lease.
        lease: LeaseId,
    },
    /// Finds candidates.
    Find(ServiceQuery),
    /// Fetches a component by hash.
    Fetch {
        /// Its content hash.
        hash: ContentHash,
        /// The candidate it is fetched for, if the client says (usage is metered per
        /// service; the registry checks the lease's component is this one).
        lease: Option<LeaseId>,
    },
    /// Lists the live leases, one page at a time, sorted by service name then lease.
    Leases {
        /// Only the leases that pass this filter.
        filter: LeaseFilter,
        /// Start after this row (`None`: from the first).
        after: Option<LeaseCursor>,
        /// Most rows wanted (the registry caps it at [`MAX_LEASE_PAGE`](crate::limits::MAX_LEASE_PAGE)).
        limit: u32,
    },
    /// Streams events from a sequence number, optionally for one interface only.
    Subscribe {
        /// `namespace:package/interface` to filter on, if any.
        interface: Option<String>,
        /// First sequence number wanted; one beyond the newest event (e.g. `u64::MAX`)
        /// asks for new events only.
        from_seq: u64,
    },
    /// Reports a run's outcome for the service history.
    Report(Outcome),
    /// Reads the service history of a client.
    History {
        /// The client identifier.
        client: String,
        /// Most entries, newest first.
        limit: u32,
    },
    /// Opens a keep-alive stream (like etcd's `LeaseKeepAlive`): after this first frame the
    /// stream carries only [`Request::Renew`] frames, each answered in order by
    /// [`Response::Renewed`] or [`Response::Error`], until the client finishes it. One
    /// long-lived stream per vendor connection saves a stream's set-up and tear-down per
    /// renewal.
    KeepAlive,
    /// Publishes a key statement (rotation or revocation), authenticated as the key it is
    /// about. The registry checks it, stores it durably, and follows it.
    KeyStatement(SignedKeyStatement),
    /// The key statements the registry holds about `keys` and, for rotations, about the
    /// keys they rotate to (the whole chain). The caller verifies them itself.
    KeyStatements {
        /// The keys asked about (at most [`MAX_STATEMENT_KEYS`](crate::limits::MAX_STATEMENT_KEYS)).
        keys: Vec<VendorKey>,
    },
    /// Registers the connection's key as a client, a recipient of services, with its
    /// attributes (again: replaces them).
    RegisterClient(ClientProfile),
    /// Stores the system data the client shares (its latest snapshot replaces the last).
    ShareSystemData(SystemData),
    /// Lists the registered clients, one page at a time, sorted by key (operators only).
    Clients {
        /// Start after this key (`None`: from the first).
        after: Option<VendorKey>,
        /// Most clients wanted (the registry caps it).
        limit: u32,
    },
    /// What the registry knows of one client (the client itself, or an operator).
    Client {
        /// The client's key.
        key: VendorKey,
    },
    /// An operator's action (operators only).
    Admin(AdminAction),
    /// The audit log of operators' actions, oldest first (operators only).
    Audit {
        /// First entry number wanted.
        from_seq: u64,
        /// Most entries wanted (the registry caps it).
        limit: u32,
    },
    /// Usage summed per client or service since a time (operators only).
    Usage(UsageQuery),
    /// Registers interest in a template, under a lease.
    RegisterInterest(Interest),
    /// Renews a registration of interest (the connection that made it, or any connection
    /// authenticated with the same key).
    RenewInterest {
        /// Its id.
        id: InterestId,
        /// The lease asked for.
        ttl_ms: u64,
    },
    /// Ends a registration of interest.
    CancelInterest {
        /// Its id.
        id: InterestId,
    },
    /// Listens to a registration's notifications from `from_seq` on. The first `Listen`
    /// takes its stream over: it becomes the connection's listening stream, which carries
    /// every registration the client listens to (further `Listen` and `Unlisten` frames
    /// follow on it), and [`Response::Listening`] frames come back until either side ends
    /// it, each naming the registrations it is for.
    Listen {
        /// Its id.
        id: InterestId,
        /// First sequence number wanted (`u64::MAX`: only new ones).
        from_seq: u64,
    },
    /// The operator statements the registry holds about `keys` (operators' revocations).
    /// The caller verifies them itself, against the operator keys it trusts.
    OperatorStatements {
        /// The keys asked about (at most [`MAX_STATEMENT_KEYS`](crate::limits::MAX_STATEMENT_KEYS)).
        keys: Vec<VendorKey>,
    },
    /// Stops listening to a registration on a listening stream (the registration lives on).
    Unlisten {
        /// Its id.
        id: InterestId,
    },
    /// Publishes a vendor root's statement (any connection: the root keys' signatures are
    /// what counts). The registry checks it follows the newest it holds, stores it
    /// durably, and serves it.
    RootStatement(SignedRootStatement),
    /// Publishes a further delegation an online key made under a root.
    Delegation(SignedDelegation),
    /// The root statements newer than each version given, and the further delegations
    /// under those roots. The caller verifies them itself.
    RootStatements {
        /// The roots asked about (at most [`MAX_ROOTS_ASKED`]).
        roots: Vec<RootSince>,
    },
    /// Publishes a freshness statement (authenticated as its vendor key, which must own or
    /// be granted every service it names). The registry keeps the latest per service and
    /// serves it with every candidate of that service; an older one is refused (`Stale`).
    Freshness(SignedFreshness),
    /// The catalog as a mirror copies it (a child registry on its first contact): every
    /// live registration with its signed manifest and lease state, one page at a time, in
    /// the lease table's order, and the event number to follow the feed from.
    Catalog {
        /// Start after this row (`None`: from the first).
        after: Option<LeaseCursor>,
        /// Most entries wanted (the registry caps it at
        /// [`MAX_CATALOG_PAGE`](crate::limits::MAX_CATALOG_PAGE), and cuts a page short at
        /// [`MAX_CATALOG_BYTES`](crate::limits::MAX_CATALOG_BYTES) of manifests).
        limit: u32,
    },
    /// One live registration as [`Request::Catalog`] lists it (a mirror reads the one an
    /// event names): `None` when it is not live.
    Registration {
        /// Its lease.
        lease: LeaseId,
    },
    /// A child registry, authenticated with its own key, asks to follow this registry.
    /// Refused (`Forbidden`) unless the operator allowed the key
    /// ([`AdminAction::AllowChild`]), or when the key is this registry's own or one of its
    /// ancestors' (a loop).
    ChildHello,
    /// The child registries the operator allowed (operators only), with their last
    /// reports.
    Children,
    /// An allowed child's report (after its [`Request::ChildHello`] on the connection).
    ChildReport(ChildReport),
    /// This registry's copy of its parent: link, anchor, rules, approvals (operators only).
    MirrorStatus,
    /// This registry's approvals, pending and decided (operators only).
    Approvals,
    /// The freshness statements held about these vendors' services (anyone: they are
    /// served with every candidate anyway); a child registry keeps its mirrored vendors'
    /// current.
    FreshnessStatements {
        /// The vendors asked about (at most
        /// [`MAX_STATEMENT_KEYS`](crate::limits::MAX_STATEMENT_KEYS); the answer holds at
        /// most [`MAX_FRESHNESS_ANSWER`](crate::limits::MAX_FRESHNESS_ANSWER) statements).
        vendors: Vec<VendorKey>,
    },
    /// Asks an allowed child for a report now (operators only): the child hears it at its
    /// next hello, which it says every 2 s while its link is up.
    AskChildReport {
        /// The child's key.
        key: VendorKey,
    },
    /// The rollouts, newest first (operators only).
    Rollouts,
    /// What this registry asks of the authenticated client now: the undos of versions it
    /// got from rollouts that were halted or aborted (at most [`MAX_DIRECTIVES`]).
    Directives,
    /// The authenticated client's report of an undo it was asked for.
    UndoReport(UndoReport),
    /// The live staged registrations, sorted by name then lease (operators only: lease
    /// pages leave them out).
    Staged,
}

/// Answers from the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Welcome(Welcome),
    /// The connection now acts for this vendor key.
    Authenticated,
    /// A new lease.
    Registered(LeaseGrant),
    /// A renewed lease.
    Renewed(LeaseGrant),
    /// The lease is gone.
    Cancelled,
    /// Ranked candidates, best first.
    Candidates(Vec<Candidate>),
    /// A component's bytes.
    Payload(Vec<u8>),
    /// A page of the lease table.
    Leases(LeasePage),
    /// Events for a subscriber.
    Events(EventBatch),
    /// The report is stored.
    Reported,
    /// Service history, newest first.
    History(Vec<HistoryEntry>),
    /// The request failed.
    Error(WireError),
    /// The key statement is stored and in force.
    StatementAccepted,
    /// Key statements, answering [`Request::KeyStatements`].
    KeyStatements(Vec<SignedKeyStatement>),
    /// The connection's key is a registered client now.
    ClientRegistered,
    /// The system data is stored.
    SystemDataStored,
    /// A page of the clients.
    Clients(ClientPage),
    /// One client.
    Client(ClientInfo),
    /// The operator's action is done and logged.
    AdminDone(AuditEntry),
    /// Audit entries, oldest first.
    Audit(Vec<AuditEntry>),
    /// Operator statements, answering [`Request::OperatorStatements`].
    OperatorStatements(Vec<SignedOperatorStatement>),
    /// Usage rows.
    Usage(Vec<UsageRow>),
    /// A registration of interest, granted or renewed.
    InterestGranted(InterestGrant),
    /// The registration of interest is gone.
    InterestCancelled,
    /// Notifications, or the end, of registrations on a listening stream.
    Listening(ListenFrame),
    /// Root statements and delegations, answering [`Request::RootStatements`].
    RootStatements(RootBatch),
    /// The freshness statement is stored and served from now on.
    FreshnessAccepted,
    /// A page of the catalog, answering [`Request::Catalog`].
    Catalog(CatalogPage),
    /// One registration, answering [`Request::Registration`].
    Registration(Option<CatalogEntry>),
    /// An allowed child is welcome.
    ChildWelcome(ChildWelcome),
    /// The child registries, answering [`Request::Children`].
    Children(Vec<ChildInfo>),
    /// The report is kept.
    ChildReported,
    /// Answer to [`Request::MirrorStatus`]: the status and the rules.
    MirrorStatus(MirrorStatus, Vec<MirrorRule>),
    /// Answer to [`Request::Approvals`].
    Approvals(Vec<Approval>),
    /// Answer to [`Request::FreshnessStatements`], each statement once.
    FreshnessStatements(Vec<SignedFreshness>),
    /// The child will be told at its next hello.
    ChildReportAsked,
    /// Answer to [`Request::Rollouts`].
    Rollouts(Vec<RolloutStatus>),
    /// Answer to [`Request::Directives`].
    Directives(Vec<Directive>),
    /// The undo report is kept.
    UndoReported,
    /// Answer to [`Request::Staged`].
    Staged(Vec<LeaseInfo>),
}

/// A typed error sent back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct WireError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// A one-line human description.
    pub message: String,
}

impl WireError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Classes of errors on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The peer speaks another protocol version.
    UnsupportedVersion,
    /// A frame or message could not be decoded, or was too large.
    BadFrame,
    /// The first message was not a Hello, or a Hello came twice.
    BadHandshake,
    /// The request needs an authenticated vendor connection.
    NotAuthenticated,
    /// A signature (manifest or challenge) does not verify, or the key is weak.
    BadSignature,
    /// The manifest fails its rules or its validity window.
    BadManifest,
    /// The component is not what the manifest says (hash, size, exports).
    BadComponent,
    /// The service name or lease belongs to another vendor key.
    NotOwner,
    /// No such lease (unknown, expired or cancelled).
    UnknownLease,
    /// No such component or entry.
    NotFound,
    /// The query is malformed.
    BadQuery,
    /// A cap on connections, streams or rate was hit; try later.
    Busy,
    /// The registry failed internally (storage); nothing was acknowledged.
    Internal,
    /// The vendor key was revoked.
    Revoked,
    /// The vendor key was rotated to another key, which acts for it now.
    Rotated,
    /// The connection is authenticated, but its key may not do this (not an operator, or
    /// another client's data).
    Forbidden,
    /// An operator revoked the lease; the message says why.
    LeaseRevoked,
    /// An operator banned the vendor key from the service name; the message says why.
    Banned,
    /// An operator is draining the service: no new registrations or renewals.
    Draining,
    /// The connection's key is not a registered client.
    UnknownClient,
    /// No such registration of interest (never made, cancelled, or its lease ran out).
    UnknownInterest,
    /// A freshness statement is not newer than the one the registry holds.
    Stale,
    /// The registry cannot commit now (a cluster node whose store has lost its quorum, or
    /// that is no longer the cluster's writer); nothing was acknowledged. Retry later or at
    /// another node; reads still work.
    Unavailable,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::UnsupportedVersion => "unsupported protocol version",
            ErrorKind::BadFrame => "bad frame",
            ErrorKind::BadHandshake => "bad handshake",
            ErrorKind::NotAuthenticated => "not authenticated",
            ErrorKind::BadSignature => "bad signature",
            ErrorKind::BadManifest => "bad manifest",
            ErrorKind::BadComponent => "bad component",
            ErrorKind::NotOwner => "not owner",
            ErrorKind::UnknownLease => "unknown lease",
            ErrorKind::NotFound => "not found",
            ErrorKind::BadQuery => "bad query",
            ErrorKind::Busy => "busy",
            ErrorKind::Internal => "internal error",
            ErrorKind::Revoked => "key revoked",
            ErrorKind::Rotated => "key rotated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::LeaseRevoked => "lease revoked",
            ErrorKind::Banned => "banned",
            ErrorKind::Draining => "draining",
            ErrorKind::UnknownClient => "unknown client",
            ErrorKind::UnknownInterest => "unknown event registration",
            ErrorKind::Stale => "stale statement",
            ErrorKind::Unavailable => "unavailable for writes",
        };
        f.write_str(s)
    }
}

mod serde_sig {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(sig)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: &[u8] = <&[u8]>::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(v.len(), &"64 bytes"))
    }
}
