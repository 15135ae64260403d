//! Leases: their ids, registrations, grants, and the lease table as operators read it.

use crate::hash::ContentHash;
use crate::signing::{SignedManifest, VendorKey};
use serde::{Deserialize, Serialize};
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

/// Registration of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// The component bytes.
    pub component: Vec<u8>,
    /// The lease duration the vendor asks for; the registry clamps it.
    pub ttl_ms: u64,
    /// Staged: kept under its lease but shown to no client, and replacing nothing, until an
    /// operator rolls it out ([`AdminAction::StartRollout`](crate::AdminAction)).
    /// Registering a staged version again replaces the key's earlier staged one.
    pub staged: bool,
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
    /// A child registry: this registration is mirrored from its parent; `remaining_ms` is
    /// the time to its lease's last known end there (see [`Mirrored`]).
    pub mirrored: Option<Mirrored>,
    /// When it was last granted or renewed, milliseconds since the Unix epoch.
    pub last_renewal_ms: u64,
    /// How many distinct identified clients were handed its proxy (a fetch by a client
    /// without a key is counted in the usage figures, but cannot be told from another).
    pub clients_served: u64,
    /// In a cluster: the node holding the lease (that took its last renewal), when the
    /// answering node knows it is another than the writer named on the page (`None`: the
    /// writer, or a single registry).
    pub holder: Option<String>,
}

/// Which leases a page of the lease table lists; every field given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFilter {
    /// An exported interface (`namespace:package/interface`, with or without version).
    pub interface: Option<String>,
    /// The vendor key.
    pub vendor: Option<VendorKey>,
    /// A service-name prefix (`acme/` lists every service of acme's names).
    pub name_prefix: Option<String>,
}

impl LeaseFilter {
    /// Whether nothing is asked (every lease is listed).
    pub fn is_empty(&self) -> bool {
        self.interface.is_none() && self.vendor.is_none() && self.name_prefix.is_none()
    }
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
    /// How long the registry's store has refused writes, in milliseconds (`None`: it
    /// accepts them). While it refuses (a cluster node whose etcd lost its quorum), the
    /// rows are served from memory: renewals count, but nothing new is durable.
    pub store_unwritable_ms: Option<u64>,
    /// In a cluster: the node that answered, and the writer (`None` for a single
    /// registry).
    pub cluster: Option<ClusterNodes>,
}

/// How a child registry holds a registration mirrored from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mirrored {
    /// Its lease is live at the parent as last heard.
    Live,
    /// Past its last known end: the link is cut, and the child serves it for its grace.
    PastEnd,
}

/// One live registration as a mirror copies it: its signed manifest (checked by whoever
/// uses it, as every manifest is) and its lease state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// The lease: its time left, duration, renewals, grace.
    pub lease: LeaseInfo,
    /// The latest freshness statement of its service, as served with a candidate (a
    /// child serves it to its own clients, who check it as any).
    pub freshness: Option<crate::SignedFreshness>,
}

/// One page of the catalog. A mirror reads the pages one after the other and then follows
/// the event feed from the first page's `seq`: every change after that page was read has a
/// number at or above it, so a change during the copy is seen either in a page, or in the
/// feed, or both (applying it twice changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogPage {
    /// The entries, in the lease table's order (service name, then lease).
    pub entries: Vec<CatalogEntry>,
    /// Where the next page starts, if there are more.
    pub next: Option<LeaseCursor>,
    /// The event number the feed goes on from, as of this page.
    pub seq: u64,
}

/// Which node of a registry cluster answered, and which writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNodes {
    /// The node that answered.
    pub answered_by: String,
    /// The cluster's writer, which registers and expires, and holds every lease not
    /// renewed at another node ([`LeaseInfo::holder`]); `None` while none is elected.
    pub writer: Option<String>,
}
