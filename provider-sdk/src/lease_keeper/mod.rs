//! Keeping a registration alive: register, renew at about half the granted time (with
//! jitter), register again when the registry no longer knows the lease, reconnect with
//! backoff when the connection drops, and cancel on graceful shutdown.
//!
//! With a registry cluster's nodes ([`KeeperConfig::other_nodes`]), writes (register,
//! freshness, cancel) go to the node that takes them, and renewals to the node given first
//! (every node renews; a node that fails gives way to the next).
//!
//! At every registration, and every [`KeeperConfig::freshness_interval`] after, it also signs
//! and publishes a freshness statement (the bundle's version is the current one of its
//! service, for [`KeeperConfig::freshness_validity`]), which clients require with every
//! candidate; it is published before the lease is reported active.
//!
//! One background task does the work; the vendor's code watches [`LeaseState`] through a
//! `tokio::sync::watch` channel. All timing is in [`KeeperConfig`], so tests can run with
//! leases of a few hundred milliseconds.

mod link;
mod nodes;

use crate::bundle::Bundle;
use courier_protocol::{ErrorKind, LeaseGrant, LeaseId, SigningKey, SpkiPin};
use courier_transport::{
    ClientError, NODE_REQUEST_TIMEOUT, PinBook, RegistryClient, TransportError,
};
use nodes::Nodes;
use rand::Rng;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long the freshness statements a keeper signs are valid unless
/// [`KeeperConfig::freshness_validity`] says otherwise.
pub const DEFAULT_FRESHNESS_VALIDITY: Duration = Duration::from_secs(10 * 60);

/// Timing and identity of a [`LeaseKeeper`].
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// The lease duration asked for; the registry clamps it.
    pub requested_ttl: Duration,
    /// Renew after this fraction of the granted duration (default 0.5).
    pub renew_fraction: f64,
    /// Relative jitter on the renewal delay, e.g. 0.1 for ±10% (default 0.1).
    pub jitter: f64,
    /// First retry delay after a failure (default 200 ms); doubles per failure.
    pub backoff_initial: Duration,
    /// Longest retry delay (default 10 s).
    pub backoff_max: Duration,
    /// Deadline of one connect, register, renew or cancel (default 15 s; with
    /// `other_nodes`, at most 2 s for a connection and 3 s for a renewal, so that a node
    /// that died gives way to the next soon).
    pub request_timeout: Duration,
    /// Agent name sent in the Hello, for the registry's logs.
    pub agent: String,
    /// How long each freshness statement the keeper signs is valid (default 10 minutes,
    /// at most an hour).
    pub freshness_validity: Duration,
    /// How often the keeper signs and publishes a new freshness statement (default 5
    /// minutes); also at every registration.
    pub freshness_interval: Duration,
    /// Where the moves of the registry's pin are kept: when the registry presents a new
    /// key with a rotation signed by the pinned one, the keeper moves its pin and records
    /// it here, so it keeps reaching the registry after the overlap (default: memory
    /// only, for the keeper's life).
    pub registry_pins: PinBook,
    /// Further nodes of a registry cluster (address and pin each). Writes go to the node
    /// that takes them (the others are tried in turn); renewals go to the registry given,
    /// while it answers, and otherwise to the next node that does, with the same lease
    /// (default: none).
    pub other_nodes: Vec<(SocketAddr, SpkiPin)>,
    /// Register the bundle staged, for an operator's rollout: no client sees it until a
    /// rollout's wave takes it, and it replaces nothing. A staged keeper publishes no
    /// freshness statement: the service's current version is still the one before it
    /// (clients refuse versions below the one a statement names, and remember it), and
    /// a staged version at or above it passes (default: false).
    pub staged: bool,
}

impl KeeperConfig {
    /// Defaults for a lease of `requested_ttl`.
    pub fn new(requested_ttl: Duration) -> Self {
        Self {
            requested_ttl,
            renew_fraction: 0.5,
            jitter: 0.1,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            agent: concat!("courier-provider/", env!("CARGO_PKG_VERSION")).to_string(),
            freshness_validity: DEFAULT_FRESHNESS_VALIDITY,
            freshness_interval: DEFAULT_FRESHNESS_VALIDITY / 2,
            registry_pins: PinBook::in_memory(),
            other_nodes: Vec::new(),
            staged: false,
        }
    }

    fn renew_delay(&self, granted: Duration) -> Duration {
        let jitter = self.jitter.clamp(0.0, 0.9);
        let factor = self.renew_fraction.clamp(0.05, 0.95)
            * (1.0 + rand::thread_rng().gen_range(-jitter..=jitter));
        granted.mul_f64(factor)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.backoff_max);
        // "Equal jitter": between half and all of the exponential delay.
        exp.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// What the keeper is doing, as the vendor's code sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Connecting and registering (at start, or after the registry forgot the lease).
    Registering,
    /// The registry holds the lease.
    Active {
        /// The lease.
        lease: LeaseId,
        /// Duration granted by the last registration or renewal.
        ttl: Duration,
        /// When that grant was received.
        renewed_at: Instant,
        /// Renewals of this lease so far.
        renewals: u64,
    },
    /// The last attempt failed; the keeper tries again after a backoff.
    Retrying {
        /// The failure, one line.
        error: String,
        /// Consecutive failures so far.
        attempt: u32,
        /// The lease still held from before, if any (it may run out meanwhile).
        lease: Option<LeaseId>,
    },
    /// The registry refused the bundle or presented another key: retrying cannot help.
    Failed {
        /// The refusal, one line.
        error: String,
    },
    /// The keeper stopped (its lease, if any, was cancelled).
    Cancelled,
}

impl LeaseState {
    /// The lease, when active.
    pub fn lease(&self) -> Option<LeaseId> {
        match self {
            LeaseState::Active { lease, .. } => Some(*lease),
            _ => None,
        }
    }

    /// Renewals of the lease, when active; 0 otherwise.
    pub fn renewals(&self) -> u64 {
        match self {
            LeaseState::Active { renewals, .. } => *renewals,
            _ => 0,
        }
    }
}

/// Why waiting for an active lease ended without one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The registry refused the registration for good.
    #[error("registration failed: {0}")]
    Failed(String),
    /// The keeper stopped.
    #[error("the lease keeper stopped")]
    Stopped,
}

/// Why the lease could not be cancelled on shutdown (it runs out by itself).
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    /// Reaching the registry or cancelling failed.
    #[error("cannot cancel lease {lease}: {source}")]
    Cancel {
        /// The lease that stays until it runs out.
        lease: LeaseId,
        /// What failed.
        source: ClientError,
    },
    /// The keeper task panicked or was aborted.
    #[error("the lease keeper task ended abnormally")]
    Task,
}

/// Keeps one bundle registered in the background. Dropping it without
/// [`LeaseKeeper::shutdown`] stops the renewals without cancelling: the lease runs out.
#[derive(Debug)]
pub struct LeaseKeeper {
    state: watch::Receiver<LeaseState>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<Option<LeaseId>, ShutdownError>>>,
}

impl LeaseKeeper {
    /// Starts keeping `bundle` registered at the registry `registry_addr` pinned to
    /// `registry_pin`, asking for leases of `requested_ttl`. Needs a tokio runtime.
    pub fn start(
        registry_addr: SocketAddr,
        registry_pin: SpkiPin,
        key: SigningKey,
        bundle: Bundle,
        requested_ttl: Duration,
    ) -> Self {
        Self::start_with(
            registry_addr,
            registry_pin,
            key,
            bundle,
            KeeperConfig::new(requested_ttl),
        )
    }

    /// Like [`LeaseKeeper::start`], with explicit timing.
    pub fn start_with(
        registry_addr: SocketAddr,
        registry_pin: SpkiPin,
        key: SigningKey,
        bundle: Bundle,
        config: KeeperConfig,
    ) -> Self {
        let (state_tx, state) = watch::channel(LeaseState::Registering);
        let (stop, stop_rx) = watch::channel(false);
        let worker = Worker {
            nodes: Nodes::new((registry_addr, registry_pin), &config.other_nodes),
            key,
            bundle,
            config,
            state: state_tx,
            stop: stop_rx,
            endpoint: None,
            client: None,
            fresh_due: Instant::now(),
            fresh_failures: 0,
        };
        Self {
            state,
            stop,
            task: Some(tokio::spawn(worker.run())),
        }
    }

    /// A receiver of the state, for the vendor's code to watch.
    pub fn state(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// The current state.
    pub fn current(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// Waits until the lease is active and returns it. While the registry stays unreachable
    /// this keeps waiting (the state says `Retrying`): wrap it in a timeout if needed.
    pub async fn wait_active(&self) -> Result<LeaseId, WaitError> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|s| {
                matches!(
                    s,
                    LeaseState::Active { .. } | LeaseState::Failed { .. } | LeaseState::Cancelled
                )
            })
            .await
            .map_err(|_| WaitError::Stopped)?;
        match &*state {
            LeaseState::Active { lease, .. } => Ok(*lease),
            LeaseState::Failed { error } => Err(WaitError::Failed(error.clone())),
            _ => Err(WaitError::Stopped),
        }
    }

    /// Stops renewing and cancels the lease. Returns the cancelled lease, or `None` if none
    /// was held. An in-flight registration or renewal finishes first (bounded by
    /// [`KeeperConfig::request_timeout`]).
    pub async fn shutdown(mut self) -> Result<Option<LeaseId>, ShutdownError> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => task.await.map_err(|_| ShutdownError::Task)?,
            None => Ok(None),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What a failed step means for the keeper.
enum Failure {
    /// Retrying cannot help.
    Permanent(String),
    /// The connection is unusable: reconnect, then retry.
    Connection(String),
    /// The registry refused for now: retry on the same connection.
    Refused(String),
    /// This node cannot write now (a cluster's standby, or a node without its store's
    /// quorum): retry, at the next node if there are several.
    Elsewhere(String),
}

fn classify(e: &ClientError) -> Failure {
    let text = e.to_string();
    match e {
        ClientError::Transport(
            TransportError::PinMismatch { .. } | TransportError::RotationRefused { .. },
        ) => Failure::Permanent(text),
        ClientError::Transport(_) | ClientError::Unexpected(_) => Failure::Connection(text),
        ClientError::Registry(w) => match w.kind {
            ErrorKind::UnsupportedVersion
            | ErrorKind::BadSignature
            | ErrorKind::BadManifest
            | ErrorKind::BadComponent
            | ErrorKind::NotOwner
            | ErrorKind::Revoked
            | ErrorKind::Rotated
            | ErrorKind::LeaseRevoked
            | ErrorKind::Banned => Failure::Permanent(text),
            ErrorKind::NotAuthenticated | ErrorKind::BadHandshake | ErrorKind::BadFrame => {
                Failure::Connection(text)
            }
            ErrorKind::Unavailable => Failure::Elsewhere(text),
            _ => Failure::Refused(text),
        },
    }
}

/// Whether the registry answered that it does not know the lease (or that it is not this
/// key's).
fn unknown(e: &ClientError) -> bool {
    matches!(e, ClientError::Registry(w)
        if matches!(w.kind, ErrorKind::UnknownLease | ErrorKind::NotOwner))
}

/// Marks that the keeper was asked to stop while waiting.
struct Stopped;

struct Worker {
    /// The registry given, then `other_nodes`.
    nodes: Nodes,
    key: SigningKey,
    bundle: Bundle,
    config: KeeperConfig,
    state: watch::Sender<LeaseState>,
    stop: watch::Receiver<bool>,
    endpoint: Option<quinn::Endpoint>,
    client: Option<RegistryClient>,
    /// When the next freshness statement is due.
    fresh_due: Instant,
    /// Consecutive failures to publish one.
    fresh_failures: u32,
}

/// The lease held by the worker.
struct Held {
    lease: LeaseId,
    renew_at: Instant,
    renewals: u64,
    /// A node said it does not know the lease: another is asked before registering again.
    doubted: bool,
}

impl Worker {
    async fn run(mut self) -> Result<Option<LeaseId>, ShutdownError> {
        let mut held: Option<Held> = None;
        let mut attempt: u32 = 0;
        loop {
            if *self.stop.borrow() {
                break;
            }
            let step = match held
                .as_ref()
                .map(|h| (h.lease, h.renew_at, h.renewals, h.doubted))
            {
                None => match self.register().await {
                    Ok(grant) => {
                        self.publish_freshness().await;
                        held = Some(self.grant(grant, 0));
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Some((lease, renew_at, renewals, doubted)) => {
                    let wake = renew_at.min(self.fresh_due);
                    if until(&self.stop, tokio::time::sleep_until(wake))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    if Instant::now() < renew_at {
                        self.publish_freshness().await;
                        continue;
                    }
                    match self.renew(lease).await {
                        Ok(grant) => {
                            held = Some(self.grant(grant, renewals + 1));
                            if Instant::now() >= self.fresh_due {
                                self.publish_freshness().await;
                            }
                            Ok(())
                        }
                        // A cluster's node may not have followed the registration yet (it
                        // copies the component first): another node is asked once before
                        // the keeper registers again.
                        Err(e) if unknown(&e) && self.nodes.several() && !doubted => {
                            tracing::info!(%lease, error = %e, "a node does not know the lease: renewing at another");
                            self.drop_client();
                            self.nodes.step();
                            self.log_node();
                            if let Some(h) = &mut held {
                                h.doubted = true;
                            }
                            continue;
                        }
                        Err(e) if unknown(&e) => {
                            tracing::warn!(%lease, error = %e, "registry no longer knows the lease: registering again");
                            held = None;
                            attempt = 0;
                            self.state.send_replace(LeaseState::Registering);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            let error = match step {
                Ok(()) => {
                    attempt = 0;
                    continue;
                }
                Err(_) if *self.stop.borrow() => break,
                Err(e) => e,
            };
            let message = match classify(&error) {
                Failure::Permanent(message) => {
                    tracing::error!(error = %message, "registration refused for good");
                    self.state
                        .send_replace(LeaseState::Failed { error: message });
                    return Ok(None);
                }
                Failure::Connection(message) => {
                    self.drop_client();
                    message
                }
                Failure::Refused(message) => message,
                Failure::Elsewhere(message) => {
                    if self.nodes.several() {
                        self.drop_client();
                        self.next_node();
                    }
                    message
                }
            };
            attempt = attempt.saturating_add(1);
            let lease = held.as_ref().map(|h| h.lease);
            tracing::warn!(error = %message, attempt, "lease keeper retrying");
            self.state.send_replace(LeaseState::Retrying {
                error: message,
                attempt,
                lease,
            });
            let delay = self.config.backoff(attempt);
            if until(&self.stop, tokio::time::sleep(delay)).await.is_err() {
                break;
            }
            if let Some(h) = &mut held {
                // Renew as soon as the connection is back.
                h.renew_at = Instant::now();
            }
        }
        let result = match held {
            Some(h) => self.cancel(h.lease).await.map(|()| Some(h.lease)),
            None => Ok(None),
        };
        if let Some(client) = self.client.take() {
            client.close();
        }
        self.state.send_replace(LeaseState::Cancelled);
        result
    }

    /// Records a grant and publishes the active state.
    fn grant(&self, grant: LeaseGrant, renewals: u64) -> Held {
        let ttl = Duration::from_millis(grant.ttl_ms);
        let now = Instant::now();
        if renewals == 0 {
            tracing::info!(lease = %grant.lease, ttl_ms = grant.ttl_ms, "registered");
        } else {
            tracing::debug!(lease = %grant.lease, ttl_ms = grant.ttl_ms, renewals, "renewed");
        }
        self.state.send_replace(LeaseState::Active {
            lease: grant.lease,
            ttl,
            renewed_at: now,
            renewals,
        });
        Held {
            lease: grant.lease,
            renew_at: now + self.config.renew_delay(ttl),
            renewals,
            doubted: false,
        }
    }

    async fn register(&mut self) -> Result<LeaseGrant, ClientError> {
        let mut request = self.bundle.register_request(self.config.requested_ttl);
        request.staged = self.config.staged;
        self.at_writer(false, |client| {
            let request = request.clone();
            async move { client.register(request).await }
        })
        .await
    }

    async fn renew(&mut self, lease: LeaseId) -> Result<LeaseGrant, ClientError> {
        let stop = self.stop.clone();
        let client = until(&stop, self.client())
            .await
            .map_err(|Stopped| stopped_error())??;
        let ttl_ms = u64::try_from(self.config.requested_ttl.as_millis()).unwrap_or(u64::MAX);
        // With several nodes, a renewal sent to a node that died (no answer, the connection
        // not timed out yet) gives way to the next node soon.
        let limit = if self.nodes.several() {
            self.config.request_timeout.min(NODE_REQUEST_TIMEOUT)
        } else {
            self.config.request_timeout
        };
        self.timed_within(limit, client.renew(lease, ttl_ms)).await
    }

    /// Signs and publishes a freshness statement for the bundle, and sets when the next is
    /// due: after the interval, or sooner (with backoff) if this one did not get through. A
    /// registry that holds a newer statement already (`Stale`) counts as published.
    async fn publish_freshness(&mut self) {
        if self.config.staged {
            self.fresh_due = Instant::now() + self.config.freshness_interval;
            self.go_home();
            return;
        }
        let validity = self.config.freshness_validity;
        let result = match self.bundle.freshness(&self.key, validity) {
            Ok(signed) => {
                self.at_writer(false, |client| {
                    let signed = signed.clone();
                    async move { client.publish_freshness(signed).await }
                })
                .await
            }
            Err(e) => {
                tracing::error!("cannot sign a freshness statement: {e}");
                Err(ClientError::Unexpected("no freshness statement"))
            }
        };
        match result {
            Ok(()) => {}
            Err(ClientError::Registry(w)) if w.kind == ErrorKind::Stale => {}
            Err(e) => {
                self.fresh_failures = self.fresh_failures.saturating_add(1);
                let delay = self.config.backoff(self.fresh_failures);
                tracing::warn!(error = %e, "freshness statement not published; retrying");
                self.fresh_due = Instant::now() + delay;
                return;
            }
        }
        self.fresh_failures = 0;
        self.fresh_due = Instant::now() + self.config.freshness_interval;
        // Registered and published: the renewals go to the node given first again.
        self.go_home();
    }

    async fn cancel(&mut self, lease: LeaseId) -> Result<(), ShutdownError> {
        let result = self
            .at_writer(true, |client| async move { client.cancel(lease).await })
            .await;
        match result {
            Ok(()) => {
                tracing::info!(%lease, "lease cancelled");
                Ok(())
            }
            // Already gone: nothing left to cancel.
            Err(ClientError::Registry(w)) if w.kind == ErrorKind::UnknownLease => Ok(()),
            Err(source) => Err(ShutdownError::Cancel { lease, source }),
        }
    }
}

/// Stands for "stopped while connecting": the loop checks the stop flag next.
fn stopped_error() -> ClientError {
    ClientError::Unexpected("stopped")
}

/// Runs `fut` unless a stop is asked first (or the keeper handle is gone).
async fn until<T>(
    stop: &watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Result<T, Stopped> {
    let mut stop = stop.clone();
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => Err(Stopped),
        v = fut => Ok(v),
    }
}
