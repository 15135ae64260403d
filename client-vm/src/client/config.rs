//! How a client is set up: [`ClientConfig`], with every default written once in
//! [`ClientConfig::new`], and [`ReportMode`].

use crate::host::HostFacts;
use crate::policy::Policy;
use crate::sandbox::SandboxConfig;
use crate::trust::TrustStore;
use courier_protocol::{SigningKey, SpkiPin};
use courier_transport::PinBook;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// When the outcome of a run is reported to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    /// Never.
    Off,
    /// In a background task after the call returns (best effort, adds no latency).
    Background,
    /// Before the call returns (best effort: a failed report is logged, not an error).
    Inline,
}

/// The longest a query's candidates are reused by default, even when the registry's
/// event feed shows no change (a bound on what a lost event could cost).
pub const DEFAULT_LOOKUP_TTL: Duration = Duration::from_secs(30);

/// How a client is set up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client's key: its registry connection authenticates with it, and the registry
    /// keeps the client's history and system data under it (a registered client: `courier
    /// client register`). Without one, no outcome is reported.
    pub key: Option<SigningKey>,
    /// Whether a report carries the proxy's answer (clipped to 200 characters). Off by
    /// default: a report then says only whether the call succeeded and how long it took.
    pub report_detail: bool,
    /// What the client lends proxies, and the limits.
    pub policy: Policy,
    /// The host facts proxies may read (still only those the policy allows); `None`
    /// gathers this system's own. For embedders that know the machine better than its
    /// files say, and for tests.
    pub facts: Option<HostFacts>,
    /// Trusted vendor keys.
    pub trust: TrustStore,
    /// The sandbox (compiler, cache, concurrency).
    pub sandbox: SandboxConfig,
    /// When outcomes are reported.
    pub report: ReportMode,
    /// Most candidates asked of the registry per call.
    pub max_candidates: u32,
    /// Reuse a query's candidates for at most this long (never beyond the shortest
    /// remaining lease among them) while the registry's event feed for their interface
    /// shows no change (the watched lookup cache): a registration, replacement,
    /// cancellation, expiry or revocation drops them within an event's delivery time. The
    /// default, [`DEFAULT_LOOKUP_TTL`], saves a long-running client the registry round trip
    /// on every call after the first per query. Zero asks the registry on every call
    /// (read-your-writes: what a vendor just registered is seen by the very next call,
    /// not one event delivery later); a one-shot client such as `courier call` uses zero,
    /// since a subscription would cost it a round trip and save none.
    pub lookup_ttl: Duration,
    /// Where the client remembers the highest proxy versions it accepted and the key
    /// statements it learned, across runs. `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// Service names pinned to one exact proxy version: that version is accepted even if
    /// an older one than the highest accepted, and no other version of the name is.
    pub pins: BTreeMap<String, semver::Version>,
    /// How often key statements are asked of the registry (with the next query). Zero
    /// asks on every call.
    pub key_refresh: Duration,
    /// Where moves of the registry's pin are kept: a registry that presents a new key
    /// with a rotation signed by the pinned one is followed, and the move recorded here
    /// (by the first connection and by every reconnection), so the pin the client was
    /// given keeps working after the overlap. Memory only by default.
    pub registry_pins: PinBook,
    /// The other nodes of the registry's cluster (address and pin): when the connection is
    /// lost and its node does not answer again, the client connects to the next of these.
    pub other_nodes: Vec<(SocketAddr, SpkiPin)>,
    /// How deep a chain of prerequisites may go (a proxy's prerequisite's installer's
    /// prerequisite is depth 2), [`DEFAULT_PREREQUISITE_DEPTH`](super::DEFAULT_PREREQUISITE_DEPTH)
    /// by default.
    pub prerequisite_depth: usize,
}

impl ClientConfig {
    /// The configuration of a client that trusts `trust`, with every other setting at its
    /// default: no key (nothing reported), [`Policy::default`], this system's own facts,
    /// [`SandboxConfig::default`], outcomes (once there is a key) reported in the
    /// background without the proxy's answer, at most 8 candidates per call, the watched
    /// lookup cache for up to [`DEFAULT_LOOKUP_TTL`], no state directory (memory only), no
    /// pins, key statements asked for at most every 60 s, registry pin moves kept in
    /// memory, no other nodes, prerequisite chains up to
    /// [`DEFAULT_PREREQUISITE_DEPTH`](super::DEFAULT_PREREQUISITE_DEPTH) deep.
    pub fn new(trust: TrustStore) -> Self {
        Self {
            key: None,
            report_detail: false,
            policy: Policy::default(),
            facts: None,
            trust,
            sandbox: SandboxConfig::default(),
            report: ReportMode::Background,
            max_candidates: 8,
            lookup_ttl: DEFAULT_LOOKUP_TTL,
            state_dir: None,
            pins: BTreeMap::new(),
            key_refresh: Duration::from_secs(60),
            registry_pins: PinBook::in_memory(),
            other_nodes: Vec::new(),
            prerequisite_depth: super::DEFAULT_PREREQUISITE_DEPTH,
        }
    }
}
