//! Usage metering: per client and per service, over time, what was handed out and what ran
//! (what an invoicing script by usage reads).

use crate::signing::VendorKey;
use serde::{Deserialize, Serialize};

/// How usage rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageBy {
    /// One row per client.
    Client,
    /// One row per service name.
    Service,
    /// One row per client and service.
    ClientService,
}

/// Which usage to sum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageQuery {
    /// From this time on, milliseconds since the Unix epoch (rounded down to its hour).
    pub since_ms: u64,
    /// How rows are grouped.
    pub by: UsageBy,
}

/// Summed usage of one client, one service, or one client's use of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The client (`None` when grouped by service, or for anonymous fetches).
    pub client: Option<VendorKey>,
    /// The service name (`None` when grouped by client).
    pub service: Option<String>,
    /// Proxies handed out (component fetches).
    pub handed_out: u64,
    /// Component bytes fetched.
    pub bytes: u64,
    /// Calls reported.
    pub calls: u64,
    /// Of them, failed.
    pub failed: u64,
}
