//! Wire-level limits both ends of a connection must agree on. Each is defined here once;
//! the registry enforces them, and clients and vendors stay within them.

use std::time::Duration;

/// Length of a frame's header: the body's length, 4 bytes big-endian.
pub const FRAME_HEADER_LEN: usize = 4;

/// Hard cap on a frame's body: a component (12 MiB at most) plus its manifest fits.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Largest request frame the registry reads for anything but a registration (which may
/// carry a component, up to [`MAX_FRAME_LEN`]).
pub const MAX_SMALL_FRAME: usize = 64 * 1024;

/// How long one request may take: a client waits this long for an answer, and the registry
/// gives a client this long to send a whole request frame (and finishes a kept stream idle
/// for as long).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest rotation chain of vendor keys anyone follows (far more than a vendor needs; a
/// bound against loops and work, not a rule of trust).
pub const MAX_CHAIN: usize = 64;

/// Most rows in one page of the lease table (about 200 bytes each).
pub const MAX_LEASE_PAGE: u32 = 1000;

/// Most entries in a page of the catalog ([`crate::Request::Catalog`]).
pub const MAX_CATALOG_PAGE: u32 = 256;

/// Most bytes of signed manifests in a page of the catalog: a page is cut short there
/// (always at least one entry), so that it stays far below the frame cap.
pub const MAX_CATALOG_BYTES: usize = 4 * 1024 * 1024;

/// Most keys one key-statements request may ask about.
pub const MAX_STATEMENT_KEYS: usize = 256;
/// Most freshness statements one `FreshnessStatements` answer holds.
pub const MAX_FRESHNESS_ANSWER: usize = 1_024;

/// Most clients in one page.
pub const MAX_CLIENT_PAGE: u32 = 500;

/// Most audit entries in one answer.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Most system-data facts a client shares at once, and most attributes it registers with.
pub const MAX_CLIENT_FACTS: usize = 64;

/// Largest system-data snapshot, encoded (a package list of a few thousand lines fits).
pub const MAX_SYSTEM_DATA_BYTES: usize = 512 * 1024;

/// Longest reason an operator gives for an action.
pub const MAX_REASON_LEN: usize = 512;

/// Most events in one batch sent to a subscriber.
pub const MAX_EVENT_BATCH: usize = 1024;

/// Most registrations one listening frame names; a transition told to more registrations
/// of one listening stream goes out in several frames.
pub const MAX_LISTEN_IDS: usize = 1024;

/// Most history entries one answer holds.
pub const MAX_HISTORY: usize = 1000;

/// Most bytes of history one answer holds (entries are up to [`MAX_REPORT_BYTES`] each).
pub const MAX_HISTORY_BYTES: usize = 1024 * 1024;

/// Longest client id in a report.
pub const MAX_CLIENT_LEN: usize = 128;

/// Largest encoded report (an outcome with its time).
pub const MAX_REPORT_BYTES: usize = 16 * 1024;

/// Limits on a manifest's contents, so that a hostile one cannot blow up a registry.
pub mod manifest {
    /// Longest service name.
    pub const NAME_LEN: usize = 128;
    /// Most exported interfaces.
    pub const EXPORTS: usize = 32;
    /// Most functions per exported interface.
    pub const FUNCTIONS: usize = 256;
    /// Most imported host interfaces.
    pub const IMPORTS: usize = 64;
    /// Most attributes.
    pub const ATTRIBUTES: usize = 64;
    /// Longest attribute key or value, function name, endpoint.
    pub const STRING_LEN: usize = 256;
    /// Most provider endpoints.
    pub const ENDPOINTS: usize = 8;
    /// Largest component a manifest may describe (16 MiB is also the frame cap).
    pub const COMPONENT_SIZE: u64 = 12 * 1024 * 1024;
}
