//! Wire messages between clients, vendors and the registry.
//!
//! Every connection starts with [`Request::Hello`] on its first stream; the registry answers
//! [`Response::Welcome`] or a version error and closes. After that each request travels on a
//! bidirectional stream of its own: one request frame, then one response frame (a
//! subscription answers with a sequence of [`Response::Events`] frames).

use crate::hash::ContentHash;
use crate::signing::{SignedManifest, VendorKey};
use crate::statement::SignedKeyStatement;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An unguessable lease identifier (128 random bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseId(pub [u8; 16]);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseId({})", hex::encode(self.0))
    }
}

impl std::str::FromStr for LeaseId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }
}

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

/// What a client asks for: an interface, functions it needs, attribute constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceQuery {
    /// `namespace:package/interface`; with `@version` and no `version_req`, a version
    /// compatible with it (`^version`).
    pub interface: String,
    /// A semver requirement on the interface version (e.g. `^0.1`, `=0.1.2`), if any.
    pub version_req: Option<String>,
    /// Functions that must exist in the interface.
    pub functions: Vec<String>,
    /// Attribute constraints, all of which must hold.
    pub attributes: Vec<AttributeConstraint>,
    /// Most candidates wanted (the registry caps it).
    pub limit: u32,
}

/// A constraint on one manifest attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeConstraint {
    /// The attribute equals the value.
    Equals(String, String),
    /// The attribute is present.
    Present(String),
    /// The attribute is absent.
    Absent(String),
}

impl std::fmt::Display for AttributeConstraint {
    /// The CLI's form: `key=value`, `key`, `!key`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttributeConstraint::Equals(k, v) => write!(f, "{k}={v}"),
            AttributeConstraint::Present(k) => write!(f, "{k}"),
            AttributeConstraint::Absent(k) => write!(f, "!{k}"),
        }
    }
}

impl std::fmt::Display for ServiceQuery {
    /// `interface[@requirement][ with f, g][ where a=b, !c]`, for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.interface)?;
        if let Some(req) = &self.version_req {
            write!(f, "@{req}")?;
        }
        if !self.functions.is_empty() {
            write!(f, " with {}", self.functions.join(", "))?;
        }
        for (i, a) in self.attributes.iter().enumerate() {
            write!(f, "{}{a}", if i == 0 { " where " } else { ", " })?;
        }
        Ok(())
    }
}

/// One proxy that matches a query: metadata only, the payload is fetched by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The lease under which it is registered.
    pub lease: LeaseId,
    /// The signed manifest, for the client to verify itself.
    pub manifest: SignedManifest,
    /// The matched interface with its version.
    pub interface: String,
    /// Milliseconds left on the lease.
    pub remaining_ms: u64,
}

/// Registration of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// The component bytes.
    pub component: Vec<u8>,
    /// The lease duration the vendor asks for; the registry clamps it.
    pub ttl_ms: u64,
}

/// A granted (or renewed) lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// The lease.
    pub lease: LeaseId,
    /// Granted duration from now, in milliseconds.
    pub ttl_ms: u64,
    /// The lease this registration replaced (same name, same vendor), if any.
    pub replaced: Option<LeaseId>,
}

/// One row of the lease table, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease.
    pub lease: LeaseId,
    /// Service name.
    pub name: String,
    /// Proxy version.
    pub version: String,
    /// The owning vendor key.
    pub vendor: VendorKey,
    /// Exported interfaces (with versions).
    pub interfaces: Vec<String>,
    /// Component hash.
    pub component: ContentHash,
    /// Provider endpoints.
    pub endpoints: Vec<String>,
    /// Milliseconds left.
    pub remaining_ms: u64,
    /// Last granted duration.
    pub ttl_ms: u64,
    /// Renewals so far.
    pub renewals: u64,
    /// Whether the lease is in its post-restart grace period.
    pub in_grace: bool,
}

/// Where a page of the lease table starts: after the row of this name and lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCursor {
    /// The service name of the last row seen.
    pub name: String,
    /// Its lease.
    pub lease: LeaseId,
}

/// One page of the lease table. Pages are read one after the other, not from one snapshot:
/// a lease that comes or goes meanwhile may or may not be listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasePage {
    /// The rows, sorted by service name then lease.
    pub leases: Vec<LeaseInfo>,
    /// Where the next page starts, if there are more rows.
    pub next: Option<LeaseCursor>,
}

/// What happened to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A new registration.
    Registered,
    /// A lease was renewed.
    Renewed,
    /// A lease ran out.
    Expired,
    /// A vendor cancelled its lease.
    Cancelled,
    /// A newer registration of the same name replaced this lease.
    Replaced,
    /// The vendor key of the registration was revoked.
    Revoked,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Registered => "registered",
            EventKind::Renewed => "renewed",
            EventKind::Expired => "expired",
            EventKind::Cancelled => "cancelled",
            EventKind::Replaced => "replaced",
            EventKind::Revoked => "revoked",
        })
    }
}

/// One event, with its strictly increasing sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number: strictly increasing over the registry's life, restarts included.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The lease concerned.
    pub lease: LeaseId,
    /// Service name.
    pub name: String,
    /// Interfaces of the registration.
    pub interfaces: Vec<String>,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A batch of events for a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// Events in sequence order.
    pub events: Vec<Event>,
    /// Set when events the subscriber asked for are no longer kept: the range `[from, to)`
    /// of sequence numbers it missed.
    pub missed: Option<(u64, u64)>,
}

/// The outcome of one proxy run, reported by a client for its service history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The client's self-chosen identifier.
    pub client: String,
    /// Service name.
    pub name: String,
    /// Proxy version.
    pub version: String,
    /// Component hash that ran.
    pub component: ContentHash,
    /// Called function, e.g. `courier:echo/echo@0.1.0.say`.
    pub function: String,
    /// Whether the call succeeded.
    pub ok: bool,
    /// A one-line description of the result or error.
    pub detail: String,
    /// Duration of the whole call in microseconds.
    pub duration_us: u64,
    /// Facts the proxy collected about the client, if any (kept as client system data).
    pub facts: BTreeMap<String, String>,
}

/// A recorded outcome, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the registry received it, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The outcome.
    pub outcome: Outcome,
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
    },
    /// Lists the live leases, one page at a time, sorted by service name then lease.
    Leases {
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

/// Messages between a proxy (through its client host) and its own provider.
pub mod provider {
    use serde::{Deserialize, Serialize};

    /// First message on a provider connection.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProviderHello {
        /// Protocol version.
        pub version: u16,
    }

    /// One call of a method of the provider.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Call {
        /// Method name.
        pub method: String,
        /// Opaque payload (the service's own encoding).
        pub payload: Vec<u8>,
    }

    /// The provider's answer.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum Reply {
        /// The method's result.
        Ok(Vec<u8>),
        /// The method failed; a message for the proxy.
        Err(String),
    }
}
