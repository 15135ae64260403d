//! Leased event registrations (Jini's remote events): a client or operator registers
//! interest in a template, under a lease it must renew; matching transitions arrive with
//! their sequence numbers, and a listener that was away gets what it missed, or an explicit
//! gap. A registered client may also ask for recommendations: new proxies that fit the
//! system data it shared.

use super::{AttributeConstraint, LeaseId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An event registration's id (128 random bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InterestId(pub [u8; 16]);

impl fmt::Display for InterestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InterestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InterestId({})", hex::encode(self.0))
    }
}

impl std::str::FromStr for InterestId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }
}

/// What happened to a matching registration, from the listener's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transition {
    /// A registration that matches appeared.
    Appeared,
    /// A matching registration was replaced by its vendor's new one.
    Changed,
    /// A matching registration is gone (expired, cancelled, revoked).
    Gone,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transition::Appeared => "appeared",
            Transition::Changed => "changed",
            Transition::Gone => "gone",
        })
    }
}

/// What a registration of interest watches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    /// The interface (`namespace:package/interface`), if any; none: every interface.
    pub interface: Option<String>,
    /// A semver requirement on its version.
    pub version_req: Option<String>,
    /// Attribute constraints on the registration, all of which must hold.
    pub attributes: Vec<AttributeConstraint>,
    /// The transitions wanted; none: all three.
    pub transitions: Vec<Transition>,
    /// Also tell of new registrations that fit the system data the (registered) client
    /// shared: a registration whose `os`, `arch` or `package` attributes all agree with it.
    pub recommendations: bool,
    /// The lease asked for, in milliseconds (the registry clamps it).
    pub ttl_ms: u64,
}

/// A granted (or renewed) registration of interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterestGrant {
    /// Its id.
    pub id: InterestId,
    /// Granted lease from now, in milliseconds.
    pub ttl_ms: u64,
    /// The number the next notification will have at least (where a listener starts).
    pub next_seq: u64,
}

/// One transition a registration of interest is told of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The event's sequence number in the registry's event feed.
    pub seq: u64,
    /// What happened.
    pub transition: Transition,
    /// Whether it is told as a recommendation (it fits the client's system data).
    pub recommended: bool,
    /// The lease concerned.
    pub lease: LeaseId,
    /// The service name.
    pub name: String,
    /// The registration's interfaces.
    pub interfaces: Vec<String>,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A batch of notifications for one registration of interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationBatch {
    /// The notifications, in sequence order.
    pub notifications: Vec<Notification>,
    /// Set when events the listener asked for are no longer kept, or were dropped because
    /// it read too slowly: the range `[from, to)` of sequence numbers it missed.
    pub missed: Option<(u64, u64)>,
}

/// What a listening stream carries: one stream per connection serves every registration
/// the client listens to, so a transition told to many of them is written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenFrame {
    /// The answer to a `Listen`: what the registry kept for `id` from where it asked (it
    /// may be empty). Batches for `id` written before it belong to an earlier listen.
    Started {
        /// The registration.
        id: InterestId,
        /// Its first notifications.
        batch: NotificationBatch,
    },
    /// The same batch for each of `ids` (at most
    /// [`MAX_LISTEN_IDS`](crate::limits::MAX_LISTEN_IDS)).
    Batch {
        /// The registrations it is for.
        ids: Vec<InterestId>,
        /// Their notifications.
        batch: NotificationBatch,
    },
    /// Listening to `id` ended: its registration was cancelled or lapsed, another listener
    /// took it over, or (`error`) the `Listen` was refused.
    Ended {
        /// The registration.
        id: InterestId,
        /// Why it was refused, if it was.
        error: Option<super::WireError>,
    },
}
