//! Child registries: registries that mirror a parent's catalog and serve their own
//! clients (a site, a branch, a customer's network). A child authenticates to its parent
//! with its own key, as vendors do, and is refused until the parent's operator allows the
//! key ([`crate::AdminAction::AllowChild`]).

use crate::signing::VendorKey;
use serde::{Deserialize, Serialize};

/// The parent's answer to an allowed child's [`crate::Request::ChildHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildWelcome {
    /// The name the parent's operator gave the child.
    pub name: String,
    /// The parent's own key, then its parent's, up to the root: a registry never takes a
    /// child that is one of these (a loop in the hierarchy).
    pub ancestors: Vec<VendorKey>,
    /// The parent's operator asked for a report now ([`crate::Request::AskChildReport`]).
    pub report_wanted: bool,
}

/// A child registry as its parent knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// The child's key.
    pub key: VendorKey,
    /// The name the operator gave it.
    pub name: String,
    /// When the operator allowed it, ms since the Unix epoch.
    pub allowed_at_ms: u64,
    /// When it last said hello since this registry started (`None`: not yet).
    pub last_seen_ms: Option<u64>,
    /// Its last report since this registry started, and when it came (ms since the Unix
    /// epoch).
    pub report: Option<(u64, crate::ChildReport)>,
}
