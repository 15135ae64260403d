//! A child registry's link to its parent: it authenticates with the child's own key,
//! says hello (refused until the parent's operator allows the key), takes its place in the
//! hierarchy, and then keeps a copy of what its rules let in of the parent's catalog.
//!
//! The copy is metadata first: signed manifests and lease state. On first contact, or
//! when its anchor means nothing to the parent (another parent, a feed gap longer than the
//! parent's ring, a parent restored from a backup whose feed is behind the anchor), the
//! child copies the parent's catalog in pages ([`copy`]); from then on it follows the
//! parent's event feed from its anchor, the next event number to apply, committed with
//! what each batch changed ([`follow`]). A restart or a broken link resumes from the anchor.
//! Components come later, when a client first asks (see the driver's `mirror.rs` and
//! [`source`]).
//!
//! A link that fails is made again after a backoff (200 ms doubling to 10 s). While it is
//! down, mirrored registrations are served until their lease's last known end plus the
//! mirror grace, and lease pages mark the ones past their end.

mod copy;
mod follow;
mod source;

use crate::Registry;
use crate::driver::LinkEvent;
use courier_protocol::{SigningKey, SpkiPin, VendorKey};
use courier_transport::{ClientError, RegistryClient};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How a child reaches its parent.
#[derive(Clone)]
pub struct ParentConfig {
    /// The parent's address.
    pub addr: SocketAddr,
    /// The parent's TLS pin.
    pub pin: SpkiPin,
    /// The child's own key (`registry.key`): the parent's operator allows it.
    pub key: SigningKey,
    /// How often the child reports to its parent.
    pub report_every: Duration,
    /// How often the child reads its mirrored vendors' freshness and key statements again
    /// (the feed does not announce them).
    pub refresh_every: Duration,
    /// Fetch the component of every registration the rules let in as soon as it is
    /// mirrored, instead of when a client first asks.
    pub prefetch: bool,
    /// How long one component fetch from the parent may take (a parent that stalls
    /// mid-component fails it; the next client's ask tries again).
    pub fetch_deadline: Duration,
}

impl std::fmt::Debug for ParentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentConfig")
            .field("addr", &self.addr)
            .field("pin", &self.pin)
            .field("report_every", &self.report_every)
            .field("refresh_every", &self.refresh_every)
            .field("prefetch", &self.prefetch)
            .field("fetch_deadline", &self.fetch_deadline)
            .finish_non_exhaustive()
    }
}

/// How long one component fetch from the parent may take by default.
pub const DEFAULT_FETCH_DEADLINE: Duration = Duration::from_secs(20);
/// How often a child reports to its parent by default.
pub const DEFAULT_REPORT_EVERY: Duration = Duration::from_secs(30);
/// How often a child reads its mirrored vendors' statements again by default (vendors
/// publish a freshness statement every 5 minutes, valid for 10).
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// Why one session with the parent ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The parent could not be reached, or a request failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A request got no answer in time.
    #[error("the parent did not answer within {0:?}")]
    Timeout(Duration),
    /// The parent closed the feed.
    #[error("the parent closed its event feed")]
    Closed,
    /// This registry's store refused a write.
    #[error("store: {0}")]
    Store(#[from] crate::StoreError),
    /// A blocking task failed.
    #[error("internal: {0}")]
    Internal(String),
}

/// The running link; dropping it leaves the task running, [`ParentLink::stop`] ends it.
#[derive(Debug)]
pub struct ParentLink {
    task: tokio::task::JoinHandle<()>,
}

impl ParentLink {
    /// Ends the link.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Starts following the parent in `config` as `registry`'s link. The registry must be
/// placed in the hierarchy with its own key already (its ancestors are set on each hello).
pub fn follow_parent(registry: Arc<Registry>, config: ParentConfig) -> ParentLink {
    let source = Arc::new(source::ParentSource::new(
        tokio::runtime::Handle::current(),
        config.fetch_deadline,
    ));
    registry.set_parent(config.addr.to_string(), source.clone(), source.clone());
    let task = tokio::spawn(run(registry, config, source));
    ParentLink { task }
}

/// Sessions with the parent, one after the other, with a backoff between failures. A
/// failure is logged when its message changes (a parent that stays away, or a refusal,
/// is not logged every few seconds).
async fn run(registry: Arc<Registry>, config: ParentConfig, source: Arc<source::ParentSource>) {
    let mut backoff = Duration::from_millis(200);
    let mut last_error = String::new();
    loop {
        let session = Session {
            registry: &registry,
            config: &config,
            source: &source,
        };
        let result = session.run().await;
        registry.link_event(LinkEvent::Connected(false));
        source.set(None);
        match result {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    tracing::warn!(parent = %config.addr, "link to the parent: {msg}; retrying");
                    last_error = msg;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One session: connect, hello, copy or resume, follow.
struct Session<'a> {
    registry: &'a Arc<Registry>,
    config: &'a ParentConfig,
    source: &'a Arc<source::ParentSource>,
}

/// How long one request to the parent may take.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

impl Session<'_> {
    async fn run(self) -> Result<(), LinkError> {
        let client = timed(RegistryClient::connect(
            self.config.addr,
            self.config.pin,
            "courier-child",
        ))
        .await?;
        timed(client.authenticate(&self.config.key)).await?;
        let welcome = timed(client.child_hello()).await?;
        let own = VendorKey::of(&self.config.key);
        self.registry
            .place_in_hierarchy(own, welcome.ancestors.clone());
        tracing::info!(parent = %self.config.addr, name = %welcome.name, "welcomed by the parent registry");
        self.source.set(Some(client.clone()));
        let mut link = follow::Follow::new(self.registry.clone(), client, self.config.clone());
        link.run().await
    }
}

/// `f` within [`REQUEST_DEADLINE`].
async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, LinkError> {
    match tokio::time::timeout(REQUEST_DEADLINE, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LinkError::Timeout(REQUEST_DEADLINE)),
    }
}

/// Runs a blocking registry call on the blocking pool.
async fn blocking<T: Send + 'static>(
    registry: &Arc<Registry>,
    f: impl FnOnce(&Registry) -> T + Send + 'static,
) -> Result<T, LinkError> {
    let r = registry.clone();
    tokio::task::spawn_blocking(move || f(&r))
        .await
        .map_err(|e| LinkError::Internal(e.to_string()))
}
