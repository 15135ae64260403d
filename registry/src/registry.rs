//! The registry's state and operations: the pure lease table, the catalog, the event log and
//! the store glued together, synchronously, with `now` passed in. No networking here: the
//! server drives these calls, and tests call them directly.
//!
//! Locks: `state` (table, catalog, events, dirty set) is held only for in-memory work;
//! `writer` serializes everything that commits to the store (registrations, cancellations,
//! grants, sequence reservations, the flush), always taken before `state`, never after.
//!
//! Durability: a registration, a cancellation and a grant commit durably before they are
//! applied in memory and acknowledged. A renewal only changes memory and marks the lease
//! dirty; [`Registry::flush`] writes the dirty leases and the expired ones behind, in one
//! durable transaction. See ARCHITECTURE.md (and [`Registry::open`]) for what a crash costs.

use crate::catalog::{Catalog, CatalogError, Registration};
use crate::events::{EventLog, EventRecord};
use crate::keys::{KeyBook, KeyError};
use crate::lease_table::{
    LeaseMap, LeasePolicy, LeaseTable, Millis, Op, Outcome as LeaseOutcome, Restore,
};
use crate::matcher::{self, PreparedQuery, QueryError};
use crate::store::{Batch, LeaseRow, Store, StoreError};
use courier_protocol::component::{InspectError, inspect};
use courier_protocol::{
    Candidate, ContentHash, ErrorKind, EventBatch, EventKind, HistoryEntry, KeyAction,
    KeyStatement, LeaseCursor, LeaseGrant, LeaseId, LeaseInfo, LeasePage, MAX_LEASE_PAGE,
    ManifestError, Outcome, Register, ServiceQuery, SignedKeyStatement, StatementError, VendorKey,
    VerifyError, WireError,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// How a registry runs. [`RegistryConfig::new`] gives sensible defaults.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Where the store, the component blobs and the TLS identity live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Shortest lease granted.
    pub min_ttl: Duration,
    /// Longest lease granted.
    pub max_ttl: Duration,
    /// Grace period after a restart for leases that ran out while the registry was down;
    /// `None` means 2 × `flush_interval` + 10 s.
    pub grace: Option<Duration>,
    /// How often renewals and expiries are written behind.
    pub flush_interval: Duration,
    /// Most concurrent connections; more are answered `Busy` and closed.
    pub max_connections: usize,
    /// Most concurrent connections from one peer address; more are answered `Busy`.
    pub max_connections_per_peer: usize,
    /// Most concurrent streams (requests) per connection.
    pub max_streams_per_connection: u32,
    /// Most one-shot requests being handled at once across all connections; more are
    /// answered `Busy` at once (subscriptions and keep-alive streams are not counted once
    /// they are open).
    pub max_requests_in_flight: usize,
    /// Requests per second one connection may make, with a burst of as many (renewals on
    /// its keep-alive stream included); more are answered `Busy`. 0: no cap.
    pub request_rate_per_connection: u32,
    /// Requests per second the whole registry accepts, with a burst of as many; more are
    /// answered `Busy` rather than queued. 0: no cap.
    pub request_rate: u32,
    /// A connection idle this long is closed.
    pub idle_timeout: Duration,
    /// How long a new connection has to send its Hello.
    pub handshake_timeout: Duration,
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
    /// Opened by an operator's command while the registry is stopped (`courier registry
    /// grant`, `revoke`): the restart rule is applied in memory only, and nothing of it is
    /// written (no lease graced, dropped or marked alive), so the next start decides as if
    /// this open had not happened. Such a registry must not serve.
    pub offline: bool,
    /// How long a peer has to take one response (or event batch); a peer that does not read
    /// gets the stream reset and what it held is let go.
    pub response_timeout: Duration,
    /// Bytes all connections together may hold in responses above the small-frame size
    /// (components being fetched, lease pages, history) until their peers take them; past
    /// it, such answers are `Busy`.
    pub large_response_budget: usize,
    /// The part of `large_response_budget` the connections of one peer address may hold
    /// together, so that one peer that does not read cannot hold it all.
    pub large_response_budget_per_peer: usize,
    /// Service-history entries kept in all; past it the oldest go, whichever client they
    /// belong to.
    pub history_limit: u64,
}

impl RegistryConfig {
    /// Defaults: listen on 127.0.0.1:7700, leases of 5 s to 5 min, flush every 500 ms
    /// (so grace 11 s), 1,024 connections (64 per peer address) of 256 streams, 4,096
    /// requests in flight, 25,000 requests/s per connection and 100,000/s in all (about
    /// half and twice what this registry serves on two cores), 100,000 history entries.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            grace: None,
            flush_interval: Duration::from_millis(500),
            max_connections: 1024,
            max_connections_per_peer: 64,
            max_streams_per_connection: 256,
            max_requests_in_flight: 4096,
            request_rate_per_connection: 25_000,
            request_rate: 100_000,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            event_ring: 32_768,
            subscriber_buffer: 4096,
            max_candidates: 100,
            store_cache_bytes: 1024 * 1024,
            seq_block: 1 << 20,
            history_limit: 100_000,
            response_timeout: Duration::from_secs(30),
            large_response_budget: 64 * 1024 * 1024,
            large_response_budget_per_peer: 32 * 1024 * 1024,
            offline: false,
        }
    }

    /// The grace period in force.
    pub fn grace(&self) -> Duration {
        self.grace
            .unwrap_or(self.flush_interval * 2 + Duration::from_secs(10))
    }

    /// The lease policy in force.
    pub fn policy(&self) -> LeasePolicy {
        LeasePolicy {
            min_ttl_ms: self.min_ttl.as_millis() as u64,
            max_ttl_ms: self.max_ttl.as_millis() as u64,
            grace_ms: self.grace().as_millis() as u64,
        }
    }
}

/// Why the registry could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The configuration is inconsistent.
    #[error("config: {0}")]
    Config(String),
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The connection has not authenticated.
    #[error("connection is not authenticated")]
    NotAuthenticated,
    /// The connection is authenticated as another key than the manifest's.
    #[error("connection is authenticated as {auth}, the manifest is signed by {manifest}")]
    WrongVendor {
        /// The connection's key.
        auth: VendorKey,
        /// The manifest's key.
        manifest: VendorKey,
    },
    /// The manifest's signature or encoding is bad.
    #[error("manifest: {0}")]
    Verify(#[from] VerifyError),
    /// The manifest is expired or not yet valid.
    #[error("manifest: {0}")]
    Times(ManifestError),
    /// The component is not the one the manifest names.
    #[error("component: {0}")]
    Component(ManifestError),
    /// The component cannot be read.
    #[error("component: {0}")]
    Inspect(#[from] InspectError),
    /// The manifest names an interface or function the component does not export.
    #[error("component does not export {0}")]
    NotExported(String),
    /// The name belongs to another key.
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// The vendor key was revoked or rotated away.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl RegisterError {
    /// The error for the caller.
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            RegisterError::NotAuthenticated | RegisterError::WrongVendor { .. } => {
                ErrorKind::NotAuthenticated
            }
            RegisterError::Verify(
                VerifyError::BadSignature | VerifyError::InvalidKey | VerifyError::WeakKey,
            ) => ErrorKind::BadSignature,
            RegisterError::Verify(_) | RegisterError::Times(_) => ErrorKind::BadManifest,
            RegisterError::Component(_)
            | RegisterError::Inspect(_)
            | RegisterError::NotExported(_) => ErrorKind::BadComponent,
            RegisterError::Catalog(CatalogError::NotOwner { .. }) => ErrorKind::NotOwner,
            RegisterError::Catalog(CatalogError::Interface(_)) => ErrorKind::BadManifest,
            RegisterError::Key(e) => key_error_kind(e),
            RegisterError::Store(_) => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}

fn key_error_kind(e: &KeyError) -> ErrorKind {
    match e {
        KeyError::Revoked(_) | KeyError::TargetRevoked(_) => ErrorKind::Revoked,
        KeyError::Rotated { .. } | KeyError::TargetRotated(_) | KeyError::ChainTooLong => {
            ErrorKind::Rotated
        }
    }
}

/// Why a key statement was refused.
#[derive(Debug, thiserror::Error)]
pub enum StatementRefused {
    /// The connection has not authenticated.
    #[error("connection is not authenticated")]
    NotAuthenticated,
    /// The statement is about another key than the connection's.
    #[error("connection is authenticated as {auth}, the statement is about {key}")]
    WrongKey {
        /// The connection's key.
        auth: VendorKey,
        /// The statement's key.
        key: VendorKey,
    },
    /// The statement does not verify.
    #[error("{0}")]
    Verify(#[from] StatementError),
    /// The statement conflicts with the key book (revoked, already rotated...).
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl StatementRefused {
    /// The error for the caller.
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            StatementRefused::NotAuthenticated | StatementRefused::WrongKey { .. } => {
                ErrorKind::NotAuthenticated
            }
            StatementRefused::Verify(StatementError::Verify(
                VerifyError::BadSignature | VerifyError::InvalidKey | VerifyError::WeakKey,
            )) => ErrorKind::BadSignature,
            StatementRefused::Verify(_) => ErrorKind::BadQuery,
            StatementRefused::Key(e) => key_error_kind(e),
            StatementRefused::Store(_) => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}

/// Why a renewal or cancellation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The connection has not authenticated.
    #[error("connection is not authenticated")]
    NotAuthenticated,
    /// No live lease with this id.
    #[error("no live lease {0}")]
    Unknown(LeaseId),
    /// The lease belongs to another key.
    #[error("lease {0} belongs to another vendor key")]
    NotOwner(LeaseId),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl LeaseError {
    /// The error for the caller.
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            LeaseError::NotAuthenticated => ErrorKind::NotAuthenticated,
            LeaseError::Unknown(_) => ErrorKind::UnknownLease,
            LeaseError::NotOwner(_) => ErrorKind::NotOwner,
            LeaseError::Store(_) => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The query is malformed.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl FindError {
    /// The error for the caller.
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            FindError::Query(_) => ErrorKind::BadQuery,
            FindError::Store(_) => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}

/// Why a read (fetch, leases, history) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing stored under that key.
    #[error("no component {0}")]
    NotFound(ContentHash),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl ReadError {
    /// The error for the caller.
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            ReadError::NotFound(_) => ErrorKind::NotFound,
            ReadError::Store(_) => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A field is empty or too large.
    #[error("invalid report: {0}")]
    Invalid(&'static str),
    /// The store failed; nothing was acknowledged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl ReportError {
    /// The error for the caller.
    pub fn to_wire(&self) -> WireError {
        let kind = match self {
            ReportError::Invalid(_) => ErrorKind::BadQuery,
            ReportError::Store(_) => ErrorKind::Internal,
        };
        WireError::new(kind, self.to_string())
    }
}

/// Why an operator grant failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The name is not a valid service name.
    #[error("invalid service name {0:?}")]
    Name(String),
    /// The store failed; nothing was granted.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushStats {
    /// Lease rows written.
    pub leases: usize,
    /// Registrations deleted (expired).
    pub deleted: usize,
    /// Whether a transaction was committed at all.
    pub committed: bool,
}

/// Most history entries one request returns.
pub const MAX_HISTORY: usize = 1000;
/// Most bytes of history in one answer (entries are up to [`MAX_REPORT_BYTES`] each).
pub const MAX_HISTORY_BYTES: usize = 1024 * 1024;
/// Longest client id in a report.
pub const MAX_CLIENT_LEN: usize = 128;
/// Largest encoded report.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;
/// Most events in one batch for a subscriber.
pub const MAX_BATCH: usize = 1024;

/// A component a registration wrote before it was admitted: unless the registration was
/// committed, its file goes when this is dropped (still under the writer lock), if no
/// stored registration names it.
struct UnclaimedBlob<'a> {
    store: &'a Store,
    hash: ContentHash,
    claimed: bool,
}

impl Drop for UnclaimedBlob<'_> {
    fn drop(&mut self) {
        if !self.claimed
            && let Err(e) = self.store.drop_unclaimed_blob(&self.hash)
        {
            tracing::warn!(hash = %self.hash, "cannot delete the component of a refused registration: {e}");
        }
    }
}

/// A live lease as a page of the lease table lists it. Ordered by its fields in turn: the
/// (name, lease) key comes first and is unique, so the rest never decides.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct PageRow {
    name: Arc<str>,
    lease: LeaseId,
    remaining_ms: u64,
    ttl_ms: u64,
    renewals: u32,
    in_grace: bool,
}

impl PageRow {
    fn key(&self) -> (&str, &LeaseId) {
        (&self.name, &self.lease)
    }
}

/// The monotonic clock of a registry, and its wall-clock reading at the origin.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: tokio::time::Instant,
    wall_base_ms: u64,
}

struct State {
    table: LeaseTable,
    catalog: Catalog,
    keys: KeyBook,
    events: EventLog,
    dirty: LeaseMap<()>,
    deleted: Vec<LeaseId>,
    last_commit: Millis,
}

/// A registry: state plus store. Share it as `Arc<Registry>`.
pub struct Registry {
    config: RegistryConfig,
    store: Store,
    state: Mutex<State>,
    writer: Mutex<()>,
    clock: Clock,
    registry_id: String,
    history_seq: AtomicU64,
    deadline_changed: Notify,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry_id", &self.registry_id)
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn deadline_moved_earlier(before: Option<Millis>, after: Option<Millis>) -> bool {
    match (before, after) {
        (None, Some(_)) => true,
        (Some(b), Some(a)) => a < b,
        _ => false,
    }
}

impl Registry {
    /// Opens the registry in `config.data_dir` at the current wall-clock time.
    ///
    /// Restart rule: a stored lease whose wall-clock expiry is still ahead keeps exactly the
    /// time it has left. One whose expiry has passed but is not before the last flush the
    /// registry wrote (it was alive when the registry last wrote, so it ran out while the
    /// registry was down or in the unflushed window before a crash) gets one grace period
    /// ([`RegistryConfig::grace`]) to renew; that grace is written down at once, so a
    /// second restart within it finds the lease still in grace with only what is left of
    /// it (restarts never extend a grace). One that expired before the last flush was
    /// already dead while the registry ran: it is dropped. With
    /// [`RegistryConfig::offline`] none of this is written.
    pub fn open(config: RegistryConfig) -> Result<Self, OpenError> {
        Self::open_at(config, wall_clock_ms())
    }

    /// [`Registry::open`] with the wall-clock time given (for tests that simulate time).
    pub fn open_at(config: RegistryConfig, wall_now_ms: u64) -> Result<Self, OpenError> {
        if config.min_ttl > config.max_ttl || config.min_ttl.is_zero() {
            return Err(OpenError::Config("need 0 < min_ttl <= max_ttl".into()));
        }
        if config.max_ttl > Duration::from_secs(365 * 24 * 3600) {
            return Err(OpenError::Config("max_ttl above a year".into()));
        }
        let (store, meta) = Store::open(&config.data_dir, config.store_cache_bytes)?;
        let start_seq = meta.seq_reserved.max(1);
        let block = config.seq_block.max(1024);
        let reserved = start_seq + block;
        store.commit(&Batch {
            seq_reserved: Some(reserved),
            ..Default::default()
        })?;
        let last_alive_ms = meta.last_alive_ms;
        let clock = Clock {
            origin: tokio::time::Instant::now(),
            wall_base_ms: wall_now_ms,
        };
        let now = Millis(0);
        let mut table = LeaseTable::new(config.policy());
        let mut catalog = Catalog::new();
        let (names, grants) = store.load_names()?;
        for (name, key) in &names {
            catalog.claim(name, key);
        }
        for (name, key) in &grants {
            catalog.grant(name, key);
        }
        let mut keys = KeyBook::new();
        let (rotations, revocations) = store.load_keys()?;
        for (key, signed) in rotations {
            match signed.verify() {
                Ok(st) if st.key == key => keys.apply(&st, signed),
                _ => {
                    return Err(OpenError::Store(StoreError::Corrupt(format!(
                        "stored rotation of {key} does not verify"
                    ))));
                }
            }
        }
        for (key, signed) in revocations {
            match signed {
                None => keys.revoke_by_operator(key),
                Some(signed) => match signed.verify() {
                    Ok(st) if st.key == key => keys.apply(&st, signed),
                    _ => {
                        return Err(OpenError::Store(StoreError::Corrupt(format!(
                            "stored revocation of {key} does not verify"
                        ))));
                    }
                },
            }
        }
        // Freed before the registrations load, so their memory is reused rather than left
        // as holes under long-lived allocations.
        drop((names, grants));
        let mut drop_ids = Vec::new();
        let (mut kept, mut in_grace) = (0usize, 0usize);
        let mut graced: Vec<(LeaseId, LeaseRow)> = Vec::new();
        let bad = store.load(|s| {
            let manifest = match s.manifest.peek() {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(lease = %s.lease, "dropping stored registration: {e}");
                    drop_ids.push(s.lease);
                    return;
                }
            };
            if keys.is_revoked(&manifest.vendor_key) {
                drop_ids.push(s.lease);
                return;
            }
            let ahead = s
                .row
                .expires_at_ms
                .checked_sub(wall_now_ms)
                .filter(|&ms| ms > 0);
            let how = match (ahead, s.row.in_grace) {
                (Some(ms), false) => Restore::Remaining(ms),
                (Some(ms), true) => Restore::InGrace(ms),
                // It was alive at the last write (its grace included): it ran out while
                // the registry was down, or in the unflushed window before a crash, where
                // a renewal may have been lost.
                (None, _) if s.row.expires_at_ms >= last_alive_ms => Restore::Lapsed,
                // Dead while the registry ran.
                (None, _) => {
                    drop_ids.push(s.lease);
                    return;
                }
            };
            let renewals = u32::try_from(s.row.renewals).unwrap_or(u32::MAX);
            let Some(state) = table.restore(now, s.lease, how, s.row.ttl_ms, renewals) else {
                return;
            };
            if let Err(e) = catalog.insert(s.lease, &manifest, state.deadline) {
                tracing::warn!(lease = %s.lease, "dropping stored registration: {e}");
                table.handle(now, Op::Cancel { id: s.lease });
                drop_ids.push(s.lease);
                return;
            }
            match how {
                Restore::Lapsed => {
                    // Its grace is written down, so that a second restart within it does
                    // not take it for dead (nor give it a second grace).
                    graced.push((
                        s.lease,
                        LeaseRow {
                            expires_at_ms: wall_now_ms.saturating_add(state.deadline.since(now)),
                            in_grace: true,
                            ..s.row
                        },
                    ));
                }
                Restore::InGrace(_) => in_grace += 1,
                Restore::Remaining(_) => kept += 1,
            }
        })?;
        drop_ids.extend(bad);
        catalog.shrink_to_fit();
        let graced_count = graced.len();
        if config.offline {
            // An operator's command on a stopped registry: the next start applies the
            // restart rule as if this open had not happened.
            tracing::debug!("opened offline: the restart rule is left to the next start");
        } else {
            // Alive now: a lease that runs out after this point ran out while this process
            // ran.
            store.commit(&Batch {
                leases: graced,
                delete: drop_ids.clone(),
                last_alive_ms: Some(wall_now_ms),
                ..Default::default()
            })?;
        }
        tracing::info!(
            registry_id = %meta.registry_id,
            kept,
            graced = graced_count,
            still_in_grace = in_grace,
            dropped = drop_ids.len(),
            start_seq,
            "registry state loaded"
        );
        let events = EventLog::new(
            start_seq,
            reserved,
            config.event_ring,
            config.subscriber_buffer,
        );
        Ok(Self {
            store,
            state: Mutex::new(State {
                table,
                catalog,
                keys,
                events,
                dirty: LeaseMap::default(),
                deleted: Vec::new(),
                last_commit: now,
            }),
            writer: Mutex::new(()),
            clock,
            registry_id: meta.registry_id,
            history_seq: AtomicU64::new(meta.history_seq),
            deadline_changed: Notify::new(),
            config,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// This registry's id (made at first open, kept in the store).
    pub fn registry_id(&self) -> &str {
        &self.registry_id
    }

    /// The monotonic time now (milliseconds since the registry opened).
    pub fn now(&self) -> Millis {
        Millis(self.clock.origin.elapsed().as_millis() as u64)
    }

    /// The wall-clock time (ms since the Unix epoch) of monotonic time `t`.
    pub fn wall_ms(&self, t: Millis) -> u64 {
        self.clock.wall_base_ms.saturating_add(t.0)
    }

    /// The monotonic instant of monotonic time `t` (for sleeping until it).
    pub fn instant(&self, t: Millis) -> tokio::time::Instant {
        self.clock.origin + Duration::from_millis(t.0)
    }

    /// Notified when a deadline earlier than the previous earliest appears.
    pub fn deadline_changed(&self) -> &Notify {
        &self.deadline_changed
    }

    /// Registers a proxy for the vendor the connection is authenticated as (`auth`).
    /// Checks, in order: authentication, signature, vendor key, validity window, component
    /// hash and size, the component's real exports, name ownership. Then it stores the blob,
    /// commits durably, and only then applies and answers.
    pub fn register(
        &self,
        now: Millis,
        auth: Option<&VendorKey>,
        req: Register,
    ) -> Result<LeaseGrant, RegisterError> {
        let auth = auth.ok_or(RegisterError::NotAuthenticated)?;
        let manifest = req.manifest.verify()?;
        if manifest.vendor_key != *auth {
            return Err(RegisterError::WrongVendor {
                auth: *auth,
                manifest: manifest.vendor_key,
            });
        }
        manifest
            .check_times(self.wall_ms(now))
            .map_err(RegisterError::Times)?;
        manifest
            .check_component(&req.component)
            .map_err(RegisterError::Component)?;
        let real = inspect(&req.component)?;
        real.check_claims(&manifest.exports)
            .map_err(RegisterError::NotExported)?;
        self.store
            .put_blob(&manifest.component_hash, &req.component)?;

        let _w = self.writer();
        // Written above outside the lock (its fsync must not hold up other writers); again
        // under it, which costs a stat, in case a commit in between deleted the file as
        // the last reference of a registration that went away.
        let mut unclaimed = UnclaimedBlob {
            store: &self.store,
            hash: manifest.component_hash,
            claimed: false,
        };
        self.store
            .put_blob(&manifest.component_hash, &req.component)?;
        let (admission, reserve) = {
            let st = self.state();
            st.keys.check_active(auth)?;
            let admission = st.catalog.admit(&manifest.name, auth)?;
            (admission, self.reservation_needed(&st, 2))
        };
        let lease = LeaseId(rand::random());
        let policy = self.config.policy();
        let ttl_ms = policy.clamp(req.ttl_ms);
        let batch = Batch {
            registrations: vec![(lease, req.manifest)],
            leases: vec![(
                lease,
                LeaseRow {
                    expires_at_ms: self.wall_ms(now.plus(ttl_ms)),
                    ttl_ms,
                    renewals: 0,
                    in_grace: false,
                },
            )],
            delete: admission.replaces.into_iter().collect(),
            names: if admission.claims_name {
                vec![(manifest.name.clone(), *auth)]
            } else {
                vec![]
            },
            seq_reserved: reserve,
            ..Default::default()
        };
        self.store.commit(&batch)?;
        unclaimed.claimed = true;

        let mut st = self.state();
        if let Some(r) = reserve {
            st.events.set_reserved(r);
        }
        let at = self.wall_ms(now);
        if let Some(old) = admission.replaces {
            st.table.handle(now, Op::Cancel { id: old });
            st.dirty.remove(&old);
            if let Some(reg) = st.catalog.remove(&old) {
                st.events.push(EventKind::Replaced, at, reg);
            }
        }
        let before = st.table.next_deadline();
        st.table.handle(now, Op::Grant { id: lease, ttl_ms });
        let reg = st.catalog.insert(lease, &manifest, now.plus(ttl_ms))?;
        st.events.push(EventKind::Registered, at, reg);
        if deadline_moved_earlier(before, st.table.next_deadline()) {
            self.deadline_changed.notify_one();
        }
        drop(st);
        tracing::info!(%lease, name = %manifest.name, ttl_ms, replaced = ?admission.replaces, "registered");
        Ok(LeaseGrant {
            lease,
            ttl_ms,
            replaced: admission.replaces,
        })
    }

    /// The new reserved mark to commit if fewer than `need` event numbers (plus a margin)
    /// are left.
    fn reservation_needed(&self, st: &State, need: u64) -> Option<u64> {
        let block = self.config.seq_block.max(1024);
        let margin = (st.table.len() as u64).saturating_add(need);
        (st.events.headroom() < margin.max(block / 2))
            .then(|| st.events.next_seq() + block.max(margin.saturating_mul(2)))
    }

    /// Durably reserves more event numbers if the headroom is low.
    fn reserve_seqs(&self, need: u64) -> Result<(), StoreError> {
        let _w = self.writer();
        let Some(target) = self.reservation_needed(&self.state(), need) else {
            return Ok(());
        };
        self.store.commit(&Batch {
            seq_reserved: Some(target),
            ..Default::default()
        })?;
        self.state().events.set_reserved(target);
        Ok(())
    }

    /// Renews a lease of the vendor the connection is authenticated as. Memory only: the
    /// new expiry is written by the next [`Registry::flush`].
    pub fn renew(
        &self,
        now: Millis,
        auth: Option<&VendorKey>,
        lease: LeaseId,
        ttl_ms: u64,
    ) -> Result<LeaseGrant, LeaseError> {
        let auth = auth.ok_or(LeaseError::NotAuthenticated)?;
        loop {
            let mut st = self.state();
            if st.events.headroom() == 0 {
                drop(st);
                self.reserve_seqs(1)?;
                continue;
            }
            let st = &mut *st;
            let Some(reg) = st.catalog.get(&lease) else {
                return Err(LeaseError::Unknown(lease));
            };
            if st.table.remaining(&lease, now).is_none() {
                return Err(LeaseError::Unknown(lease));
            }
            if !st.keys.may_act_for(&reg.vendor, auth) {
                return Err(LeaseError::NotOwner(lease));
            }
            let reg = reg.clone();
            let before = st.table.next_deadline();
            return match st.table.handle(now, Op::Renew { id: lease, ttl_ms }) {
                LeaseOutcome::Renewed {
                    ttl_ms, deadline, ..
                } => {
                    st.catalog.set_deadline(&lease, deadline);
                    st.dirty.insert(lease, ());
                    st.events.push(EventKind::Renewed, self.wall_ms(now), reg);
                    if deadline_moved_earlier(before, st.table.next_deadline()) {
                        self.deadline_changed.notify_one();
                    }
                    Ok(LeaseGrant {
                        lease,
                        ttl_ms,
                        replaced: None,
                    })
                }
                _ => Err(LeaseError::Unknown(lease)),
            };
        }
    }

    /// Cancels a lease of the vendor the connection is authenticated as, durably.
    pub fn cancel(
        &self,
        now: Millis,
        auth: Option<&VendorKey>,
        lease: LeaseId,
    ) -> Result<(), LeaseError> {
        let auth = auth.ok_or(LeaseError::NotAuthenticated)?;
        let _w = self.writer();
        let reserve = {
            let st = self.state();
            let Some(reg) = st.catalog.get(&lease) else {
                return Err(LeaseError::Unknown(lease));
            };
            if st.table.remaining(&lease, now).is_none() {
                return Err(LeaseError::Unknown(lease));
            }
            if !st.keys.may_act_for(&reg.vendor, auth) {
                return Err(LeaseError::NotOwner(lease));
            }
            self.reservation_needed(&st, 1)
        };
        self.store.commit(&Batch {
            delete: vec![lease],
            seq_reserved: reserve,
            ..Default::default()
        })?;
        let mut st = self.state();
        if let Some(r) = reserve {
            st.events.set_reserved(r);
        }
        let out = st.table.handle(now, Op::Cancel { id: lease });
        st.dirty.remove(&lease);
        let reg = st.catalog.remove(&lease);
        match (out, reg) {
            (LeaseOutcome::Cancelled { .. }, Some(reg)) => {
                st.events.push(EventKind::Cancelled, self.wall_ms(now), reg);
                drop(st);
                tracing::info!(%lease, "cancelled");
                Ok(())
            }
            // It ran out between the check and the commit: the expiry reported it.
            _ => Err(LeaseError::Unknown(lease)),
        }
    }

    /// Collects every lease whose deadline is at or before `now`: they leave the catalog,
    /// get an `Expired` event, and are deleted from the store by the next flush. Returns how
    /// many expired.
    pub fn expire(&self, now: Millis) -> usize {
        loop {
            let mut st = self.state();
            let due = st.table.next_deadline().is_some_and(|d| d <= now);
            if !due {
                return 0;
            }
            if st.events.headroom() < st.table.len() as u64 {
                drop(st);
                if let Err(e) = self.reserve_seqs(1) {
                    tracing::warn!("cannot reserve event numbers: {e}");
                    return 0;
                }
                continue;
            }
            let st = &mut *st;
            let ids = st.table.expire(now);
            let at = self.wall_ms(now);
            for id in &ids {
                st.dirty.remove(id);
                st.deleted.push(*id);
                if let Some(reg) = st.catalog.remove(id) {
                    st.events.push(EventKind::Expired, at, reg);
                }
            }
            if ids.len() < 16 {
                for id in &ids {
                    tracing::info!(lease = %id, "expired");
                }
            } else {
                tracing::info!(count = ids.len(), "leases expired");
            }
            return ids.len();
        }
    }

    /// The earliest lease deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.state().table.next_deadline()
    }

    /// Writes renewed and expired leases behind, in one durable transaction. Skips the
    /// commit when nothing changed and the last commit is recent.
    pub fn flush(&self, now: Millis) -> Result<FlushStats, StoreError> {
        let _w = self.writer();
        let (batch, reserve) = {
            let mut st = self.state();
            let st = &mut *st;
            let dirty = std::mem::take(&mut st.dirty);
            let deleted = std::mem::take(&mut st.deleted);
            let leases: Vec<(LeaseId, LeaseRow)> = dirty
                .keys()
                .filter_map(|id| {
                    st.table.get(id).map(|s| {
                        (
                            *id,
                            LeaseRow {
                                expires_at_ms: self.wall_ms(s.deadline),
                                ttl_ms: s.ttl_ms(),
                                renewals: u64::from(s.renewals()),
                                in_grace: s.in_grace(),
                            },
                        )
                    })
                })
                .collect();
            let reserve = self.reservation_needed(st, 1);
            let stale = now.since(st.last_commit) >= 5_000;
            if leases.is_empty() && deleted.is_empty() && reserve.is_none() && !stale {
                return Ok(FlushStats::default());
            }
            (
                Batch {
                    leases,
                    delete: deleted,
                    seq_reserved: reserve,
                    last_alive_ms: Some(self.wall_ms(now)),
                    ..Default::default()
                },
                reserve,
            )
        };
        if let Err(e) = self.store.commit(&batch) {
            // Keep the work for the next flush.
            let mut st = self.state();
            for (id, _) in &batch.leases {
                if st.table.get(id).is_some() {
                    st.dirty.insert(*id, ());
                }
            }
            st.deleted.extend(batch.delete);
            return Err(e);
        }
        let mut st = self.state();
        st.last_commit = now;
        if let Some(r) = reserve {
            st.events.set_reserved(r);
        }
        Ok(FlushStats {
            leases: batch.leases.len(),
            deleted: batch.delete.len(),
            committed: true,
        })
    }

    /// Ranked candidates for `query` at `now` (metadata only; the payload is fetched by hash).
    pub fn find(&self, now: Millis, query: &ServiceQuery) -> Result<Vec<Candidate>, FindError> {
        let prepared = PreparedQuery::new(query, self.config.max_candidates)?;
        let matches = {
            let st = self.state();
            matcher::find(&st.catalog, now, &prepared)
        };
        if matches.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<LeaseId> = matches.iter().map(|m| m.lease).collect();
        let manifests = self.store.manifests(&ids)?;
        Ok(matches
            .into_iter()
            .zip(manifests)
            .filter_map(|(m, manifest)| {
                manifest.map(|manifest| Candidate {
                    lease: m.lease,
                    manifest,
                    interface: m.interface,
                    remaining_ms: m.remaining_ms,
                })
            })
            .collect())
    }

    /// Runs the matcher only, without reading manifests (for the in-process benchmark).
    pub fn match_leases(&self, now: Millis, query: &PreparedQuery) -> Vec<matcher::Match> {
        let st = self.state();
        matcher::find(&st.catalog, now, query)
    }

    /// The size of a stored component (without reading it).
    pub fn component_size(&self, hash: &ContentHash) -> Result<u64, ReadError> {
        self.store
            .blob_size(hash)?
            .ok_or(ReadError::NotFound(*hash))
    }

    /// A stored component's bytes.
    pub fn fetch(&self, hash: &ContentHash) -> Result<Vec<u8>, ReadError> {
        self.store
            .read_blob(hash)?
            .ok_or(ReadError::NotFound(*hash))
    }

    /// The live leases at `now`, sorted by service name then lease (every page of
    /// [`Registry::leases_page`]).
    pub fn leases(&self, now: Millis) -> Result<Vec<LeaseInfo>, ReadError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.leases_page(now, after.as_ref(), MAX_LEASE_PAGE)?;
            out.extend(page.leases);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// One page of the live leases at `now`, sorted by service name then lease: at most
    /// `limit` rows (capped at [`MAX_LEASE_PAGE`]) after `after`. The order comes from
    /// memory (names are in the catalog) and only the page's manifests are read, so a page
    /// costs one pass over the lease table plus `limit` reads, whatever the table's size.
    pub fn leases_page(
        &self,
        now: Millis,
        after: Option<&LeaseCursor>,
        limit: u32,
    ) -> Result<LeasePage, ReadError> {
        let limit = limit.clamp(1, MAX_LEASE_PAGE) as usize;
        // The `limit` smallest rows after the cursor, in a max-heap; one row more tells
        // whether another page follows.
        let mut heap = std::collections::BinaryHeap::<PageRow>::with_capacity(limit + 2);
        {
            let st = self.state();
            for (id, s) in st.table.iter() {
                if s.deadline <= now {
                    continue;
                }
                let Some(reg) = st.catalog.get(id) else {
                    continue;
                };
                let key = (&*reg.name, id);
                if after.is_some_and(|a| key <= (a.name.as_str(), &a.lease))
                    || (heap.len() > limit && heap.peek().is_some_and(|top| key >= top.key()))
                {
                    continue;
                }
                heap.push(PageRow {
                    name: reg.name.clone(),
                    lease: *id,
                    remaining_ms: s.deadline.since(now),
                    ttl_ms: s.ttl_ms(),
                    renewals: s.renewals(),
                    in_grace: s.in_grace(),
                });
                if heap.len() > limit + 1 {
                    heap.pop();
                }
            }
        }
        let mut rows = heap.into_sorted_vec();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more.then(|| rows.last()).flatten().map(|r| LeaseCursor {
            name: r.name.to_string(),
            lease: r.lease,
        });
        let ids: Vec<LeaseId> = rows.iter().map(|r| r.lease).collect();
        let manifests = self.store.manifests(&ids)?;
        let leases = rows
            .into_iter()
            .zip(manifests)
            .filter_map(|(r, m)| {
                // Gone since the pass over the table: not listed.
                let m = m?.peek().ok()?;
                Some(LeaseInfo {
                    lease: r.lease,
                    name: m.name,
                    version: m.version,
                    vendor: m.vendor_key,
                    interfaces: m.exports.into_iter().map(|e| e.interface).collect(),
                    component: m.component_hash,
                    endpoints: m.endpoints,
                    remaining_ms: r.remaining_ms,
                    ttl_ms: r.ttl_ms,
                    renewals: u64::from(r.renewals),
                    in_grace: r.in_grace,
                })
            })
            .collect();
        Ok(LeasePage { leases, next })
    }

    /// Events from `from_seq` matching `interface` (at most [`MAX_BATCH`]), the number to
    /// go on from, and a live feed of everything after that. Taken under one lock, so
    /// nothing falls between the batch and the feed.
    pub fn subscribe(
        &self,
        from_seq: u64,
        interface: Option<&str>,
    ) -> (EventBatch, u64, broadcast::Receiver<EventRecord>) {
        let st = self.state();
        let rx = st.events.subscribe();
        let (batch, next) = st.events.since(from_seq, interface, MAX_BATCH);
        (batch, next, rx)
    }

    /// Events from `from_seq` matching `interface`, at most [`MAX_BATCH`], and the number
    /// to go on from.
    pub fn events_since(&self, from_seq: u64, interface: Option<&str>) -> (EventBatch, u64) {
        self.state().events.since(from_seq, interface, MAX_BATCH)
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.state().events.next_seq()
    }

    /// Records a run's outcome in the client's service history, durably.
    pub fn report(&self, now: Millis, outcome: Outcome) -> Result<(), ReportError> {
        if outcome.client.is_empty() || outcome.client.len() > MAX_CLIENT_LEN {
            return Err(ReportError::Invalid("client id must be 1..=128 bytes"));
        }
        let entry = HistoryEntry {
            at_ms: self.wall_ms(now),
            outcome,
        };
        if courier_protocol::codec::encode(&entry).len() > MAX_REPORT_BYTES {
            return Err(ReportError::Invalid("report larger than 16 KiB"));
        }
        let seq = self.history_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.store.append_history(
            &entry.outcome.client,
            seq,
            &entry,
            self.config.history_limit,
        )?;
        Ok(())
    }

    /// A client's history, newest first, at most `limit` (capped at [`MAX_HISTORY`]) and
    /// at most [`MAX_HISTORY_BYTES`] of it.
    pub fn history(&self, client: &str, limit: u32) -> Result<Vec<HistoryEntry>, ReadError> {
        Ok(self
            .store
            .history(client, (limit as usize).min(MAX_HISTORY), MAX_HISTORY_BYTES)?)
    }

    /// Operator action: lets `key` register (and so replace, renew, cancel its own
    /// registrations of) `name`. An unowned name becomes `key`'s. Durable before it returns.
    pub fn grant(&self, name: &str, key: &VendorKey) -> Result<(), GrantError> {
        if name.is_empty()
            || name.len() > courier_protocol::manifest::limits::NAME_LEN
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(GrantError::Name(name.to_string()));
        }
        let _w = self.writer();
        let owned = self.state().catalog.owner(name).is_some();
        let batch = if owned {
            Batch {
                grants: vec![(name.to_string(), *key)],
                ..Default::default()
            }
        } else {
            Batch {
                names: vec![(name.to_string(), *key)],
                ..Default::default()
            }
        };
        self.store.commit(&batch)?;
        self.state().catalog.grant(name, key);
        tracing::info!(name, %key, "name granted");
        Ok(())
    }

    /// Applies a key statement published by the key it is about (`auth`): verifies it,
    /// checks it against the statements in force, commits it durably, then follows it. A
    /// rotation passes the old key's names and grants to the new key; a revocation removes
    /// the key's registrations at once (event `revoked`). Returns the statement, and whether
    /// it changed anything (the same revocation twice changes nothing).
    pub fn key_statement(
        &self,
        now: Millis,
        auth: Option<&VendorKey>,
        signed: SignedKeyStatement,
    ) -> Result<(KeyStatement, bool), StatementRefused> {
        let auth = auth.ok_or(StatementRefused::NotAuthenticated)?;
        let statement = signed.verify()?.into_inner();
        if statement.key != *auth {
            return Err(StatementRefused::WrongKey {
                auth: *auth,
                key: statement.key,
            });
        }
        let changed = self.apply_key_change(now, &statement, Some(signed))?;
        tracing::info!(%statement, changed, "key statement");
        Ok((statement, changed))
    }

    /// Operator action: revokes `key` (without a statement of the key itself, so clients
    /// do not learn of it; the registry stops matching its proxies and refuses it). Durable
    /// before it returns. Returns whether it was new.
    pub fn revoke_by_operator(
        &self,
        now: Millis,
        key: &VendorKey,
    ) -> Result<bool, StatementRefused> {
        let statement = KeyStatement::revoke(*key, self.wall_ms(now));
        self.apply_key_change(now, &statement, None)
    }

    fn apply_key_change(
        &self,
        now: Millis,
        statement: &KeyStatement,
        signed: Option<SignedKeyStatement>,
    ) -> Result<bool, StatementRefused> {
        let _w = self.writer();
        let (batch, revoked_leases) = {
            let st = self.state();
            if !st.keys.admit(statement, signed.is_some())? {
                return Ok(false);
            }
            let mut batch = Batch::default();
            let mut revoked_leases = Vec::new();
            match statement.action {
                KeyAction::RotateTo(new) => {
                    let Some(signed) = signed.clone() else {
                        return Ok(false);
                    };
                    batch.rotations.push((statement.key, signed));
                    batch.transfers.push((statement.key, new));
                }
                KeyAction::Revoke => {
                    batch.revocations.push((statement.key, signed.clone()));
                    revoked_leases = st
                        .catalog
                        .iter()
                        .filter(|r| *r.vendor == statement.key)
                        .map(|r| r.lease)
                        .collect();
                    batch.delete = revoked_leases.clone();
                    batch.seq_reserved = self.reservation_needed(&st, revoked_leases.len() as u64);
                }
            }
            (batch, revoked_leases)
        };
        self.store.commit(&batch)?;
        let mut st = self.state();
        let st = &mut *st;
        if let Some(r) = batch.seq_reserved {
            st.events.set_reserved(r);
        }
        match (statement.action, signed) {
            (KeyAction::RotateTo(new), Some(signed)) => {
                st.keys.apply(statement, signed);
                st.catalog.transfer(&statement.key, &new);
            }
            (KeyAction::Revoke, Some(signed)) => st.keys.apply(statement, signed),
            (_, None) => st.keys.revoke_by_operator(statement.key),
        }
        let at = self.wall_ms(now);
        for lease in revoked_leases {
            st.table.handle(now, Op::Cancel { id: lease });
            st.dirty.remove(&lease);
            if let Some(reg) = st.catalog.remove(&lease) {
                st.events.push(EventKind::Revoked, at, reg);
            }
        }
        Ok(true)
    }

    /// The key statements about `keys` and the keys they rotated to (at most
    /// [`courier_protocol::MAX_STATEMENT_KEYS`] keys are looked at).
    pub fn key_statements(&self, keys: &[VendorKey]) -> Vec<SignedKeyStatement> {
        let keys = &keys[..keys.len().min(courier_protocol::MAX_STATEMENT_KEYS)];
        self.state().keys.statements_for(keys)
    }

    /// The key acting for `key` now (the end of its rotation chain), and whether `key` is
    /// revoked.
    pub fn key_status(&self, key: &VendorKey) -> (VendorKey, bool) {
        let st = self.state();
        (st.keys.current(key), st.keys.is_revoked(key))
    }

    /// The owner of a service name.
    pub fn owner(&self, name: &str) -> Option<VendorKey> {
        self.state().catalog.owner(name)
    }

    /// Counts: (live leases, registrations, indexed interfaces).
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.state();
        (st.table.len(), st.catalog.len(), st.catalog.interfaces())
    }

    /// Loads many registrations at once in one durable transaction, checking signatures,
    /// validity and ownership but not components (no component bytes are given, and none are
    /// stored). For benchmarks and bulk imports of trusted data; the network never reaches it.
    pub fn load_bulk(
        &self,
        now: Millis,
        items: Vec<(courier_protocol::SignedManifest, u64)>,
    ) -> Result<Vec<LeaseId>, RegisterError> {
        let policy = self.config.policy();
        let mut checked = Vec::with_capacity(items.len());
        for (signed, ttl) in items {
            let m = signed.verify()?;
            m.check_times(self.wall_ms(now))
                .map_err(RegisterError::Times)?;
            checked.push((
                LeaseId(rand::random()),
                signed,
                m.into_inner(),
                policy.clamp(ttl),
            ));
        }
        let _w = self.writer();
        let mut batch = Batch::default();
        {
            let st = self.state();
            let mut claimed = std::collections::HashSet::new();
            for (lease, signed, m, ttl) in &checked {
                st.keys.check_active(&m.vendor_key)?;
                let a = st.catalog.admit(&m.name, &m.vendor_key)?;
                if a.replaces.is_some() || !claimed.insert(m.name.clone()) {
                    return Err(RegisterError::Catalog(CatalogError::NotOwner {
                        name: m.name.clone(),
                    }));
                }
                if a.claims_name {
                    batch.names.push((m.name.clone(), m.vendor_key));
                }
                batch.registrations.push((*lease, signed.clone()));
                batch.leases.push((
                    *lease,
                    LeaseRow {
                        expires_at_ms: self.wall_ms(now.plus(*ttl)),
                        ttl_ms: *ttl,
                        renewals: 0,
                        in_grace: false,
                    },
                ));
            }
            batch.seq_reserved = self.reservation_needed(&st, checked.len() as u64);
        }
        self.store.commit(&batch)?;
        let reserve = batch.seq_reserved;
        drop(batch);
        let mut st = self.state();
        let st = &mut *st;
        if let Some(r) = reserve {
            st.events.set_reserved(r);
        }
        let before = st.table.next_deadline();
        let at = self.wall_ms(now);
        let mut out = Vec::with_capacity(checked.len());
        for (lease, _, m, ttl) in checked {
            st.table.handle(
                now,
                Op::Grant {
                    id: lease,
                    ttl_ms: ttl,
                },
            );
            let reg: Arc<Registration> = st.catalog.insert(lease, &m, now.plus(ttl))?;
            st.events.push(EventKind::Registered, at, reg);
            out.push(lease);
        }
        if deadline_moved_earlier(before, st.table.next_deadline()) {
            self.deadline_changed.notify_one();
        }
        Ok(out)
    }
}
