//! Clients the registry knows: their registration as recipients of services, the system
//! data they choose to share, and what an operator (or the client itself) reads of them.
//!
//! A client is its ed25519 key: it authenticates its connection as a vendor does, and only
//! that key (or an operator's) reads or writes its history and its data.

use super::HistoryEntry;
use crate::signing::VendorKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A client registering as a recipient of services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProfile {
    /// Attributes the client describes itself with (e.g. `site=lab`, `role=build`).
    pub attributes: BTreeMap<String, String>,
}

/// System data a client shares: the facts its own policy chooses, which may differ from
/// what a proxy may read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemData {
    /// Fact name to value (`os`, `arch`, `kernel`, `packages`, ...).
    pub facts: BTreeMap<String, String>,
}

/// The latest system data of a client, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemSnapshot {
    /// When the registry received it, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The facts.
    pub facts: BTreeMap<String, String>,
}

/// What the registry knows of one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client's key.
    pub key: VendorKey,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// When it registered (or last registered again), milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
    /// When it last reached the registry.
    pub last_contact_ms: u64,
    /// Its latest system data, if it shared any.
    pub system: Option<SystemSnapshot>,
    /// Its latest reported outcome, if any.
    pub last_outcome: Option<HistoryEntry>,
}

impl ClientInfo {
    /// The operating system it reported (`os-release`'s pretty name, else `os`).
    pub fn os(&self) -> Option<&str> {
        let facts = &self.system.as_ref()?.facts;
        facts
            .get("os-name")
            .or_else(|| facts.get("os"))
            .map(String::as_str)
    }

    /// How many installed packages it reported (lines of the `packages` fact).
    pub fn package_count(&self) -> Option<usize> {
        let packages = self.system.as_ref()?.facts.get("packages")?;
        Some(packages.lines().filter(|l| !l.trim().is_empty()).count())
    }
}

/// One page of the clients, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientPage {
    /// The clients.
    pub clients: Vec<ClientInfo>,
    /// Where the next page starts (after this key), if there are more.
    pub next: Option<VendorKey>,
}
