//! courier's registry (the service manager): vendors register signed WebAssembly proxies
//! under leases, clients find them by interface, operators watch the leases.
//!
//! From the inside out:
//! - a pure core (`core`): the lease table, the catalog and matcher, the key book and the
//!   event ring, together the state machine [`RegistryState`], and the restart rule; it
//!   takes `now` from its caller and does no IO;
//! - durable storage behind the [`Storage`] trait ([`RedbStore`] for a single registry);
//! - [`Registry`], the driver: locks, clocks, random ids, commits, fan-out of events;
//! - [`serve`], the QUIC server around it, configured by [`ServerConfig`];
//! - for operators, started with the server when configured: counters (`observe`), an HTTP
//!   listener with `/metrics` and the dashboard ([`HttpConfig`]), webhooks
//!   ([`NotifyConfig`]);
//! - [`OfflineRegistry`], an operator's commands while the registry is stopped.

mod config;
mod core;
mod driver;
mod errors;
mod http;
mod notify;
mod observe;
mod offline;
mod ops;
mod parent;
mod server;
mod store;

pub use config::{
    DEFAULT_FLUSH_INTERVAL, DEFAULT_GRACE, DEFAULT_HISTORY_LIMIT, DEFAULT_MAX_TTL, DEFAULT_MIN_TTL,
    DEFAULT_MIRROR_GRACE, RegistryConfig,
};
pub use core::catalog::CatalogError;
pub use core::clients::ClientError;
pub use core::events::{EventRecord, EventRing};
pub use core::freshness::FreshnessConflict;
pub use core::keys::{KeyError, StoredStatementError};
pub use core::lease_table::{
    LeaseChange, LeaseEntry, LeaseOp, LeasePolicy, LeaseTable, MAX_GRANTED_TTL_MS, Millis, Restore,
};
pub use core::matcher::{Match, PreparedQuery, QueryError};
pub use core::state::{
    Change, FlushStats, LeasePageRows, MirrorApplied, MirrorDelta, MirrorPut, NoHeadroom, PageRow,
    Planned, RegistryState, RestartCounts, Restorer, StateConfig, StoreEvent,
};
pub use driver::{
    ComponentSource, EXPIRY_SLICE, Followed, Heard, LISTENING_QUEUE, LinkEvent, ListeningFeed,
    Registry, StreamId,
};
pub use errors::FreshnessRefused;
pub use errors::{
    AdminError, ClientRequestError, FindError, GrantError, LeaseError, OpenError, ReadError,
    RegisterError, ReportError, RootPublishError, StatementRefused,
};
pub use http::{
    DASHBOARD_TOKEN_DOMAIN, DEFAULT_HTTP_LISTEN, DashboardToken, HttpConfig, TokenError,
};
pub use notify::{
    AlertKind, NotifyConfig, NotifyError, UnknownAlertKind, WebhookTarget, WebhookUrlError,
};
pub use offline::OfflineRegistry;
pub use ops::OpsError;
pub use parent::{
    DEFAULT_FETCH_DEADLINE, DEFAULT_REFRESH_EVERY, DEFAULT_REPORT_EVERY, LinkError, ParentConfig,
    ParentLink, follow_parent,
};
pub use server::{
    DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, Listener, RegistryHandle, ServeError, ServerConfig,
    serve, serve_after,
};
pub use store::records as store_records;
pub use store::{
    Batch, BlobDir, BlobSweep, LeaseRow, MirrorAnchor, RedbStore, Removal, Storage, StoreError,
    StoredLease, StoredMeta, UsageRecord,
};
