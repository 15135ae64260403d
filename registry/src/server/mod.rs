//! The QUIC server: a thin tokio/quinn driver around [`Registry`]. Its rooms:
//! - `accept`: the accept loop and connection admission (caps in all and per address);
//! - `connection`: a connection's handshake, authentication and streams, each request
//!   admitted (rate, requests in flight) before it is read;
//! - `dispatch`: the answer to each request, each arm saying whether it runs inline or on
//!   the blocking pool, with the room large answers take;
//! - `people`: clients' and operators' requests, and who may make them;
//! - `respond`: writing answers within their budgets and deadlines;
//! - `kept`: streams a request takes over (keep-alive renewals, event subscriptions);
//!   `listen`: a listener of a leased event registration;
//! - `tasks`: the background tasks (expiry, write-behind flush);
//! - `admission`: the caps themselves; `wire_errors`: what each error means on the wire.
//!
//! Every bad input gets a typed `Response::Error` and a `tracing` warning; the connection
//! (or, for a broken handshake, the registry) keeps serving everyone else.

mod accept;
mod admission;
mod connection;
mod dispatch;
mod kept;
mod listen;
mod people;
mod respond;
mod tasks;
mod wire_errors;

use crate::driver::Registry;
use crate::http::HttpConfig;
use crate::notify::NotifyConfig;
use crate::observe::Observer;
use crate::ops::OpsError;
use admission::RateLimit;
use courier_protocol::SpkiPin;
use courier_protocol::limits::REQUEST_TIMEOUT;
use courier_transport::{Identity, ServerLimits, TransportError, server_endpoint};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// The address a registry listens on by default.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7800);

/// Connections a registry serves at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// What a server admits and how long it waits. [`ServerConfig::default`] gives the
/// defaults; the registry's own state is [`crate::RegistryConfig`]'s.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
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
    /// How long a peer has to send a whole request frame; a kept stream idle this long is
    /// finished.
    pub request_timeout: Duration,
    /// How long a peer has to take one response (or event batch); a peer that does not read
    /// gets the stream reset and what it held is let go.
    pub response_timeout: Duration,
    /// Bytes all connections together may hold in request frames above the small-frame
    /// size while they are read (registrations carrying components).
    pub large_request_budget: usize,
    /// Bytes all connections together may hold in responses above the small-frame size
    /// (components being fetched, lease pages, history) until their peers take them; past
    /// it, such answers are `Busy`.
    pub large_response_budget: usize,
    /// The part of `large_response_budget` the connections of one peer address may hold
    /// together, so that one peer that does not read cannot hold it all.
    pub large_response_budget_per_peer: usize,
    /// Longest a large answer waits for room before it is answered `Busy` (or a quarter of
    /// the response timeout, if shorter).
    pub large_response_wait: Duration,
    /// The HTTP listener for operators (`/metrics`, the dashboard); `None`: none, and
    /// nothing is counted.
    pub http: Option<HttpConfig>,
    /// Webhooks to alert; `None`: none.
    pub notify: Option<NotifyConfig>,
}

impl Default for ServerConfig {
    /// Listen on 127.0.0.1:7800; 1,024 connections (64 per peer address) of 256 streams;
    /// 4,096 requests in flight; 25,000 requests/s per connection and 100,000/s in all
    /// (about half and twice what a registry serves on two cores); 30 s to send a request
    /// or take an answer; 64 MiB for large requests and for large answers (32 MiB per peer
    /// address); no HTTP listener and no webhooks.
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: 64,
            max_streams_per_connection: 256,
            max_requests_in_flight: 4096,
            request_rate_per_connection: 25_000,
            request_rate: 100_000,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: REQUEST_TIMEOUT,
            response_timeout: REQUEST_TIMEOUT,
            large_request_budget: 64 * 1024 * 1024,
            large_response_budget: 64 * 1024 * 1024,
            large_response_budget_per_peer: 32 * 1024 * 1024,
            large_response_wait: Duration::from_secs(5),
            http: None,
            notify: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS identity or the socket failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The endpoint has no local address.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP listener or the webhooks could not start.
    #[error(transparent)]
    Ops(#[from] OpsError),
}

/// QUIC application close codes of the registry.
mod close {
    pub const SHUTDOWN: u32 = 0;
    pub const UNSUPPORTED_VERSION: u32 = 1;
    pub const BAD_HANDSHAKE: u32 = 2;
    pub const BUSY: u32 = 3;
    /// Stream reset: the peer did not take a response in time.
    pub const TOO_SLOW: u32 = 4;
}

/// A running registry server.
pub struct RegistryHandle {
    local_addr: SocketAddr,
    pin: SpkiPin,
    registry: Arc<Registry>,
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
    /// The HTTP listener's address and the dashboard token of this start.
    http: Option<(SocketAddr, String)>,
}

impl std::fmt::Debug for RegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryHandle")
            .field("local_addr", &self.local_addr)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl RegistryHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The pin clients must use: SHA-256 of the registry's TLS public key.
    pub fn pin(&self) -> SpkiPin {
        self.pin
    }

    /// The registry behind the server (for in-process operator actions and benchmarks).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The address of the HTTP listener (`/metrics`, the dashboard), if there is one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(addr, _)| *addr)
    }

    /// The dashboard token made at this start (valid until the server stops), if there is
    /// an HTTP listener.
    pub fn dashboard_token(&self) -> Option<&str> {
        self.http.as_ref().map(|(_, token)| token.as_str())
    }

    /// Stops gracefully: stops accepting, closes connections, waits for the handlers, and
    /// writes a final durable flush. When it returns, the data directory can be reopened.
    pub async fn shutdown(self) {
        let (registry, endpoint) = self.stop(true).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        final_flush(registry).await;
    }

    /// Stops serving this registry but keeps its listening socket for the next server
    /// ([`serve_after`]): a cluster node elected writer stops serving as a standby and
    /// serves as the writer on the same address without a moment in which nothing listens
    /// there. Connections are closed one by one (their clients connect again); ones that
    /// arrive meanwhile wait for the next server. The registry gets its final flush, as at
    /// shutdown (a standby's: the rows of the leases it renewed).
    pub async fn hand_over(self) -> Listener {
        let (registry, endpoint) = self.stop(false).await;
        final_flush(registry).await;
        Listener(endpoint)
    }

    /// Tells every task to stop (closing the endpoint too, when `close`) and waits for
    /// them and every connection's handler.
    async fn stop(self, close: bool) -> (Arc<Registry>, quinn::Endpoint) {
        let RegistryHandle {
            registry,
            endpoint,
            shutdown,
            tasks,
            done_tx,
            mut done_rx,
            ..
        } = self;
        let _ = shutdown.send(true);
        if close {
            endpoint.close(close::SHUTDOWN.into(), b"registry shutting down");
        }
        for t in tasks {
            let _ = t.await;
        }
        drop(done_tx);
        if tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("connection handlers did not finish in 10 s");
        }
        (registry, endpoint)
    }
}

/// The final durable flush of a registry that stopped serving (a standby's writes the rows
/// of the leases it renewed, nothing else).
async fn final_flush(registry: Arc<Registry>) {
    match tokio::task::spawn_blocking(move || registry.flush(registry.now())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!("final flush failed: {e}"),
        Err(e) => tracing::error!("final flush panicked: {e}"),
    }
    tracing::info!("registry stopped");
}

/// A listening socket one server handed over to the next ([`RegistryHandle::hand_over`]).
pub struct Listener(quinn::Endpoint);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Listener")
            .field(&self.0.local_addr().ok())
            .finish()
    }
}

/// What every connection task shares.
struct Shared {
    registry: Arc<Registry>,
    config: ServerConfig,
    pin: SpkiPin,
    shutdown: watch::Receiver<bool>,
    /// Bytes of large request frames being read ([`ServerConfig::large_request_budget`]).
    large_requests: Arc<Semaphore>,
    /// Bytes of large answers not yet taken by their peers
    /// ([`ServerConfig::large_response_budget`]).
    large_responses: Arc<Semaphore>,
    /// One-shot requests being handled ([`ServerConfig::max_requests_in_flight`]).
    in_flight: Arc<Semaphore>,
    /// The registry-wide request rate.
    rate: RateLimit,
    /// The counters operators read (`None`: no HTTP listener and no webhooks).
    observer: Option<Arc<Observer>>,
    /// Dropped by every task when it ends, so shutdown can wait for them all.
    done: mpsc::Sender<()>,
}

impl Shared {
    /// Counts an admission refusal, if anything reads the counts.
    fn refused(&self, cause: crate::observe::Refusal) {
        if let Some(o) = &self.observer {
            o.refused(cause);
        }
    }
}

/// Serves `registry` on `config.listen` with the TLS identity kept in the registry's data
/// directory (made on first start), until [`RegistryHandle::shutdown`]. The one way to
/// start a server.
pub async fn serve(
    registry: Arc<Registry>,
    config: ServerConfig,
) -> Result<RegistryHandle, ServeError> {
    serve_on(registry, config, None).await
}

/// Serves `registry` like [`serve`], on the socket another server handed over (same
/// address, same TLS identity: the registry's data directory must be the one the other
/// server's registry kept its identity in).
pub async fn serve_after(
    registry: Arc<Registry>,
    config: ServerConfig,
    listener: Listener,
) -> Result<RegistryHandle, ServeError> {
    serve_on(registry, config, Some(listener.0)).await
}

async fn serve_on(
    registry: Arc<Registry>,
    config: ServerConfig,
    endpoint: Option<quinn::Endpoint>,
) -> Result<RegistryHandle, ServeError> {
    let data_dir = registry.config().data_dir.clone();
    let (identity, created) =
        tokio::task::spawn_blocking(move || Identity::load_or_generate(&data_dir))
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
    let pin = identity.pin();
    let limits = ServerLimits {
        max_streams_per_connection: config.max_streams_per_connection,
        idle_timeout: config.idle_timeout,
        ..ServerLimits::default()
    };
    let endpoint = match endpoint {
        Some(e) => e,
        None => server_endpoint(config.listen, &identity, &limits)?,
    };
    let local_addr = endpoint.local_addr()?;
    tracing::info!(%local_addr, %pin, new_identity = created, registry_id = registry.registry_id(), "registry listening");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    let ops = crate::ops::start(
        config.http.as_ref(),
        config.notify.as_ref(),
        &registry,
        pin,
        &shutdown_rx,
    )
    .await?;
    let shared = Arc::new(Shared {
        registry: registry.clone(),
        pin,
        shutdown: shutdown_rx.clone(),
        large_requests: Arc::new(Semaphore::new(config.large_request_budget)),
        large_responses: Arc::new(Semaphore::new(config.large_response_budget)),
        in_flight: Arc::new(Semaphore::new(config.max_requests_in_flight.max(1))),
        rate: RateLimit::new(config.request_rate),
        observer: ops.observer.clone(),
        done: done_tx.clone(),
        config,
    });
    let mut tasks = vec![tokio::spawn(accept::accept_loop(endpoint.clone(), shared))];
    // A standby does not expire (the cluster's writer does); its flushes write the rows
    // of the leases it renewed.
    if !registry.is_standby() {
        tasks.push(tokio::spawn(tasks::expiry(
            registry.clone(),
            ops.observer,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(tasks::rollouts(
            registry.clone(),
            shutdown_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(tasks::flush(
        registry.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(tasks::notifications(
        registry.clone(),
        shutdown_rx,
    )));
    tasks.extend(ops.tasks);
    Ok(RegistryHandle {
        local_addr,
        pin,
        registry,
        endpoint,
        shutdown: shutdown_tx,
        tasks,
        done_tx,
        done_rx,
        http: ops.http,
    })
}
