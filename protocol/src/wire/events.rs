//! Events: what happened to a registration, numbered.

use super::LeaseId;
use serde::{Deserialize, Serialize};
use std::fmt;

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
