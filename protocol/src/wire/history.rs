//! Service history: outcomes of proxy runs that clients report.

use crate::hash::ContentHash;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
