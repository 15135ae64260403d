//! How a registry keeps its state: leases, events, history and the store. What a server
//! admits, and how long it waits, is [`crate::ServerConfig`]'s.

use crate::core::lease_table::LeasePolicy;
use crate::core::state::StateConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Shortest lease granted by default.
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(5);
/// Longest lease granted by default.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);
/// How often renewals and expiries are written behind by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// The grace after a restart by default: a vendor's lease keeper retries with a backoff
/// capped at 10 s, so it gets three tries.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How long a child cut off from its parent serves a mirrored registration past its
/// lease's last known end, by default.
pub const DEFAULT_MIRROR_GRACE: Duration = Duration::from_secs(600);
/// Service-history entries kept by default.
pub const DEFAULT_HISTORY_LIMIT: u64 = 100_000;
/// The longest lease a registry may be configured to grant.
pub const MAX_CONFIGURED_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a registry keeps its state. [`RegistryConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Where the store, the component files and the TLS identity live.
    pub data_dir: PathBuf,
    /// Shortest lease granted.
    pub min_ttl: Duration,
    /// Longest lease granted.
    pub max_ttl: Duration,
    /// Grace period after a restart for leases that ran out while the registry was down.
    pub grace: Duration,
    /// How often renewals and expiries are written behind.
    pub flush_interval: Duration,
    /// Recent events kept for subscribers that ask from a sequence number.
    pub event_ring: usize,
    /// Events buffered per live subscriber before it counts as lagging.
    pub subscriber_buffer: usize,
    /// Most candidates one query returns.
    pub max_candidates: usize,
    /// redb page cache (default 1 MiB: manifests are read only for the candidates a query
    /// returns, and the OS page cache serves them; a bigger cache costs resident memory).
    pub store_cache_bytes: usize,
    /// Event numbers reserved durably at a time.
    pub seq_block: u64,
    /// Service-history entries kept in all; past it the oldest go, whichever client they
    /// belong to.
    pub history_limit: u64,
    /// Operator keys: connections authenticated with one may act on the registry and read
    /// what it knows of clients.
    pub operators: Vec<courier_protocol::VendorKey>,
    /// A child registry: how long past its last known end a lease mirrored from the parent
    /// is still served (while the link to the parent is cut).
    pub mirror_grace: Duration,
}

impl RegistryConfig {
    /// Defaults: leases of 5 s to 5 min, a flush every 500 ms, a grace of 30 s after a
    /// restart, 32,768 events kept, 100 candidates per query at most, 100,000 history
    /// entries.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            min_ttl: DEFAULT_MIN_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            grace: DEFAULT_GRACE,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            event_ring: 32_768,
            subscriber_buffer: 4096,
            max_candidates: 100,
            store_cache_bytes: 1024 * 1024,
            seq_block: 1 << 20,
            history_limit: DEFAULT_HISTORY_LIMIT,
            operators: Vec::new(),
            mirror_grace: DEFAULT_MIRROR_GRACE,
        }
    }

    /// The lease policy in force.
    pub fn policy(&self) -> LeasePolicy {
        LeasePolicy {
            min_ttl_ms: millis(self.min_ttl),
            max_ttl_ms: millis(self.max_ttl),
            grace_ms: millis(self.grace),
        }
    }

    /// What the state machine needs of it.
    pub(crate) fn state(&self) -> StateConfig {
        StateConfig {
            policy: self.policy(),
            event_ring: self.event_ring,
            seq_block: self.seq_block,
            mirror_grace_ms: millis(self.mirror_grace),
        }
    }

    /// Whether the settings hold together.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.min_ttl.is_zero() || self.min_ttl > self.max_ttl {
            return Err("need 0 < min_ttl <= max_ttl".into());
        }
        if self.max_ttl > MAX_CONFIGURED_TTL {
            return Err("max_ttl above a year".into());
        }
        if self.flush_interval.is_zero() {
            return Err("flush_interval must be above zero".into());
        }
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
