//! Serving a service over QUIC with the provider's own TLS identity (the pin that goes into
//! the manifest), and the small client that calls such a service.
//!
//! Protocol: the client opens the first bidirectional stream and sends
//! [`ProviderHello`]; the provider answers with its own (another version closes the
//! connection with [`close_code::UNSUPPORTED_VERSION`]). Then every call travels on a stream
//! of its own: one [`Call`] frame, one [`Reply`] frame. Calls on one connection run
//! concurrently; each handler is a plain async function of the payload bytes.

use courier_protocol::codec::{self, CodecError};
use courier_protocol::provider::{Call, ProviderHello, Reply};
use courier_protocol::{PROTOCOL_VERSION, SpkiPin};
use courier_transport::{
    FrameBuffer, HelloError, Identity, ServerLimits, TransportError, client_endpoint, connect,
    provider_hello, read_one, server_endpoint, write_frame,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// What a handler returns: the reply bytes, or an error message for the caller.
pub type HandlerResult = Result<Vec<u8>, String>;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = Arc<dyn Fn(Vec<u8>) -> BoxFuture + Send + Sync>;

/// Default cap on a call's payload.
pub const DEFAULT_MAX_REQUEST: usize = 1024 * 1024;
/// Default cap on a reply frame.
pub const DEFAULT_MAX_REPLY: usize = 8 * 1024 * 1024;
/// Longest method name.
pub const MAX_METHOD_LEN: usize = 128;
/// Framing overhead of a call beyond its payload: the method name and postcard lengths.
const CALL_OVERHEAD: usize = MAX_METHOD_LEN + 32;

/// QUIC application codes used by providers to close connections and stop streams.
pub use courier_transport::close_code;

/// Limits and deadlines of a served service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Largest call payload accepted; a larger call gets `Reply::Err` (default 1 MiB).
    pub max_request_size: usize,
    /// Largest reply frame sent; a handler's larger answer becomes `Reply::Err` (8 MiB).
    pub max_reply_size: usize,
    /// Most concurrent connections; more are refused at the QUIC level (1,024).
    pub max_connections: usize,
    /// Most concurrent calls (streams) per connection (256).
    pub max_streams_per_connection: u32,
    /// Time a new connection has to complete QUIC and the Hello (10 s).
    pub handshake_timeout: Duration,
    /// Time a client has to send a whole call frame (30 s).
    pub request_timeout: Duration,
    /// Time a handler may take before the call fails (60 s).
    pub call_timeout: Duration,
    /// How long shutdown waits for calls in flight (5 s).
    pub shutdown_grace: Duration,
    /// An idle connection is closed after this long (60 s).
    pub idle_timeout: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_request_size: DEFAULT_MAX_REQUEST,
            max_reply_size: DEFAULT_MAX_REPLY,
            max_connections: 1024,
            max_streams_per_connection: 256,
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A service under construction: its methods and limits.
#[derive(Clone, Default)]
pub struct ServiceBuilder {
    methods: BTreeMap<String, Handler>,
    config: ServiceConfig,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish()
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the socket or setting up TLS failed.
    #[error("cannot serve: {0}")]
    Transport(#[from] TransportError),
    /// The bound socket has no local address.
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

impl ServiceBuilder {
    /// An empty service with default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the handler of `name`.
    pub fn method<F, Fut>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |payload| Box::pin(handler(payload)));
        self.methods.insert(name.into(), handler);
        self
    }

    /// Sets the cap on a call's payload.
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.config.max_request_size = bytes;
        self
    }

    /// Sets the time a handler may take.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// Sets how long shutdown waits for calls in flight.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Replaces all limits at once.
    pub fn config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    /// The limits in force.
    pub fn current_config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The method names, sorted.
    pub fn method_names(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// Binds `addr` with `identity` and serves until [`ServiceHandle::shutdown`].
    pub async fn serve(
        self,
        addr: SocketAddr,
        identity: &Identity,
    ) -> Result<ServiceHandle, ServeError> {
        let limits = ServerLimits {
            max_streams_per_connection: self.config.max_streams_per_connection,
            idle_timeout: self.config.idle_timeout,
            ..ServerLimits::default()
        };
        let endpoint = server_endpoint(addr, identity, &limits)?;
        let local_addr = endpoint.local_addr()?;
        let pin = identity.pin();
        let grace = self.config.shutdown_grace;
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        let ctx = Arc::new(Ctx {
            methods: self.methods,
            config: self.config,
            stop: stop_rx,
        });
        let accept = tokio::spawn(accept_loop(endpoint.clone(), ctx, done_tx.clone()));
        tracing::info!(%local_addr, %pin, "provider listening");
        Ok(ServiceHandle {
            local_addr,
            pin,
            endpoint,
            stop,
            accept: Some(accept),
            grace,
            done_tx: Some(done_tx),
            done_rx,
        })
    }
}

/// A running service. Dropping it closes the endpoint at once; [`ServiceHandle::shutdown`]
/// lets calls in flight finish first.
#[derive(Debug)]
pub struct ServiceHandle {
    local_addr: SocketAddr,
    pin: SpkiPin,
    endpoint: quinn::Endpoint,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    grace: Duration,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

impl ServiceHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The pin of the provider's TLS key: what goes into the manifest's `provider_pin`.
    pub fn pin(&self) -> SpkiPin {
        self.pin
    }

    /// Stops accepting connections and calls, waits for calls in flight (up to the
    /// configured grace), then closes every connection.
    pub async fn shutdown(mut self) {
        let grace = self.grace;
        let _ = self.stop.send(true);
        self.endpoint.set_server_config(None);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        self.done_tx = None;
        if tokio::time::timeout(grace, self.done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "calls still running at the end of the shutdown grace"
            );
        }
        self.endpoint
            .close(close_code::SHUTDOWN.into(), b"provider shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        tracing::info!(local_addr = %self.local_addr, "provider stopped");
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.endpoint
            .close(close_code::SHUTDOWN.into(), b"provider stopped");
    }
}

/// Shared by every connection and call task.
struct Ctx {
    methods: BTreeMap<String, Handler>,
    config: ServiceConfig,
    stop: watch::Receiver<bool>,
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<Ctx>, done: mpsc::Sender<()>) {
    let connections = Arc::new(Semaphore::new(ctx.config.max_connections.max(1)));
    let mut stop = ctx.stop.clone();
    loop {
        let incoming = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(peer = %incoming.remote_address(), "connection cap reached: refusing");
            incoming.refuse();
            continue;
        };
        let (ctx, done) = (ctx.clone(), done.clone());
        tokio::spawn(async move {
            serve_connection(incoming, ctx, done).await;
            drop(permit);
        });
    }
}

/// Serves one connection until it closes or the service stops (calls already running go on
/// in their own tasks).
async fn serve_connection(incoming: quinn::Incoming, ctx: Arc<Ctx>, done: mpsc::Sender<()>) {
    let mut stop = ctx.stop.clone();
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = connection(incoming, ctx.clone(), done) => {}
    }
}

async fn connection(incoming: quinn::Incoming, ctx: Arc<Ctx>, done: mpsc::Sender<()>) {
    let peer = incoming.remote_address();
    let timeout = ctx.config.handshake_timeout;
    let conn = match tokio::time::timeout(timeout, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "connection failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "connection handshake timed out");
            return;
        }
    };
    let hello = tokio::time::timeout(timeout, async {
        let (send, mut recv) = conn.accept_bi().await?;
        let hello: ProviderHello = read_one(&mut recv, 64).await?;
        Ok::<_, TransportError>((send, hello))
    })
    .await;
    let mut send = match hello {
        Ok(Ok((send, hello))) if hello.version == PROTOCOL_VERSION => send,
        Ok(Ok((_, hello))) => {
            tracing::warn!(%peer, version = hello.version, "unsupported provider protocol version");
            let reason = format!(
                "unsupported version {}; this provider speaks {PROTOCOL_VERSION}",
                hello.version
            );
            conn.close(close_code::UNSUPPORTED_VERSION.into(), reason.as_bytes());
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "bad provider handshake");
            conn.close(close_code::BAD_HANDSHAKE.into(), b"expected ProviderHello");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "no ProviderHello in time");
            conn.close(
                close_code::BAD_HANDSHAKE.into(),
                b"no ProviderHello in time",
            );
            return;
        }
    };
    let welcome = ProviderHello {
        version: PROTOCOL_VERSION,
    };
    if write_frame(&mut send, &welcome).await.is_err() || send.finish().is_err() {
        return;
    }
    tracing::debug!(%peer, "provider connection open");
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "provider connection closed");
                break;
            }
        };
        let (ctx, done) = (ctx.clone(), done.clone());
        tokio::spawn(async move {
            serve_call(send, recv, &ctx).await;
            drop(done);
        });
    }
}

/// Serves one stream: calls one after the other, each answered in order, until the client
/// finishes the stream (clients keep streams for their next calls), it idles for the
/// request timeout, or the service stops. A call that cannot be read ends the stream after
/// its error reply.
async fn serve_call(mut send: quinn::SendStream, mut recv: quinn::RecvStream, ctx: &Ctx) {
    let max = ctx.config.max_request_size;
    let frame_cap = max.saturating_add(CALL_OVERHEAD);
    let mut stop = ctx.stop.clone();
    let mut first = true;
    let mut frames = FrameBuffer::new();
    loop {
        let read = tokio::time::timeout(
            ctx.config.request_timeout,
            frames.read::<Call>(&mut recv, frame_cap),
        );
        let read = tokio::select! {
            // Between calls: a stop ends the stream; during a call's read it waits.
            _ = stop.wait_for(|s| *s), if !first => break,
            r = read => r,
        };
        let (reply, go_on) = match read {
            Err(_) if !first => break,
            Err(_) => {
                let _ = recv.stop(close_code::REQUEST_TOO_LARGE.into());
                (Reply::Err("request not received in time".into()), false)
            }
            Ok(Ok(None)) => break,
            Ok(Err(TransportError::Codec(CodecError::FrameTooLarge { len, .. }))) => {
                let _ = recv.stop(close_code::REQUEST_TOO_LARGE.into());
                tracing::warn!(len, max, "oversized call refused");
                (
                    Reply::Err(format!(
                        "request of {len} bytes exceeds the provider's cap of {max} bytes"
                    )),
                    false,
                )
            }
            Ok(Err(TransportError::Codec(e))) => {
                tracing::warn!(error = %e, "malformed call");
                (Reply::Err(format!("malformed call: {e}")), false)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "call stream failed");
                return;
            }
            Ok(Ok(Some(call))) if call.payload.len() > max => (
                Reply::Err(format!(
                    "request of {} bytes exceeds the provider's cap of {max} bytes",
                    call.payload.len()
                )),
                true,
            ),
            Ok(Ok(Some(call))) => (dispatch(ctx, call).await, true),
        };
        first = false;
        let reply = cap_reply(reply, ctx.config.max_reply_size);
        if write_frame(&mut send, &reply).await.is_err() {
            return;
        }
        if !go_on || *stop.borrow() {
            break;
        }
    }
    if send.finish().is_ok() {
        // Keep the stream until the peer has the last reply, so a shutdown right after a
        // call does not cut it off.
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    }
}

async fn dispatch(ctx: &Ctx, call: Call) -> Reply {
    let Call { method, payload } = call;
    let Some(handler) = ctx.methods.get(&method) else {
        let mut shown: String = method.chars().take(MAX_METHOD_LEN).collect();
        if shown.len() < method.len() {
            shown.push('…');
        }
        return Reply::Err(format!("unknown method {shown:?}"));
    };
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(move || handler(payload))) {
        Ok(fut) => fut,
        Err(_) => return Reply::Err(format!("handler of {method} panicked")),
    };
    match tokio::time::timeout(ctx.config.call_timeout, CatchUnwind(fut)).await {
        Ok(Ok(Ok(bytes))) => Reply::Ok(bytes),
        Ok(Ok(Err(message))) => Reply::Err(message),
        Ok(Err(Panicked)) => {
            tracing::error!(%method, "handler panicked");
            Reply::Err(format!("handler of {method} panicked"))
        }
        Err(_) => {
            tracing::warn!(%method, "handler timed out");
            Reply::Err(format!(
                "handler of {method} timed out after {:?}",
                ctx.config.call_timeout
            ))
        }
    }
}

fn cap_reply(reply: Reply, max: usize) -> Reply {
    let len = match &reply {
        Reply::Ok(b) => b.len(),
        Reply::Err(m) => m.len(),
    };
    // postcard: enum tag + length varint + bytes.
    if len.saturating_add(16) <= max {
        return reply;
    }
    tracing::warn!(len, max, "reply over the cap");
    match reply {
        Reply::Ok(_) => Reply::Err(format!(
            "reply of {len} bytes exceeds the provider's cap of {max} bytes"
        )),
        Reply::Err(m) => Reply::Err(m.chars().take(max.saturating_sub(64).min(1024)).collect()),
    }
}

/// A handler panicked.
struct Panicked;

/// Turns a panic inside a handler's future into an error reply.
struct CatchUnwind(BoxFuture);

impl Future for CatchUnwind {
    type Output = Result<HandlerResult, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.get_mut().0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}

/// Options of a [`ProviderClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Deadline of QUIC, TLS and the Hello (default 10 s).
    pub connect_timeout: Duration,
    /// Deadline of one call (default 30 s).
    pub call_timeout: Duration,
    /// Largest reply frame read (default 8 MiB).
    pub max_reply_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            max_reply_size: DEFAULT_MAX_REPLY,
        }
    }
}

/// Why connecting to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderConnectError {
    /// QUIC, TLS or the pin failed (a different key is [`TransportError::PinMismatch`]).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The provider speaks another protocol version.
    #[error("provider refused the protocol version: {0}")]
    UnsupportedVersion(String),
    /// The provider did not complete the Hello.
    #[error("provider handshake failed: {0}")]
    Handshake(String),
}

/// Why a call to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderCallError {
    /// The connection or the stream failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The provider answered with an error.
    #[error("provider error: {0}")]
    Provider(String),
    /// No reply within the call deadline.
    #[error("provider did not answer within {0:?}")]
    Timeout(Duration),
}

/// A connection to one provider, pinned to its TLS key, after the Hello.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    options: ClientOptions,
}

impl ProviderClient {
    /// Connects to the provider at `addr` whose TLS key hashes to `pin`, and says Hello.
    pub async fn connect(addr: SocketAddr, pin: SpkiPin) -> Result<Self, ProviderConnectError> {
        let endpoint = client_endpoint(addr)?;
        Self::connect_with(endpoint, addr, pin, ClientOptions::default()).await
    }

    /// Like [`ProviderClient::connect`], on an existing client endpoint and with options.
    pub async fn connect_with(
        endpoint: quinn::Endpoint,
        addr: SocketAddr,
        pin: SpkiPin,
        options: ClientOptions,
    ) -> Result<Self, ProviderConnectError> {
        // One deadline for the QUIC handshake and the Hello together.
        let timeout = options.connect_timeout;
        let started = std::time::Instant::now();
        let conn = connect(&endpoint, addr, pin, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        provider_hello(&conn, left).await.map_err(|e| match e {
            HelloError::UnsupportedVersion(why) => ProviderConnectError::UnsupportedVersion(why),
            HelloError::Handshake(why) => ProviderConnectError::Handshake(why),
            HelloError::Timeout(d) => {
                ProviderConnectError::Handshake(format!("no ProviderHello within {d:?}"))
            }
        })?;
        Ok(Self {
            endpoint,
            conn,
            options,
        })
    }

    /// Calls `method` with `payload`; the provider's `Reply::Err` becomes
    /// [`ProviderCallError::Provider`].
    pub async fn call(
        &self,
        method: &str,
        payload: impl Into<Vec<u8>>,
    ) -> Result<Vec<u8>, ProviderCallError> {
        let call = Call {
            method: method.to_string(),
            payload: payload.into(),
        };
        let timeout = self.options.call_timeout;
        let reply = tokio::time::timeout(timeout, self.exchange(&call))
            .await
            .map_err(|_| ProviderCallError::Timeout(timeout))??;
        match reply {
            Reply::Ok(bytes) => Ok(bytes),
            Reply::Err(message) => Err(ProviderCallError::Provider(message)),
        }
    }

    async fn exchange(&self, call: &Call) -> Result<Reply, TransportError> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        match send.write_chunk(codec::encode_frame(call).into()).await {
            Ok(()) => {
                let _ = send.finish();
            }
            // The provider stopped reading (an oversized call): its reply says why.
            Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(e.into()),
        }
        read_one(&mut recv, self.options.max_reply_size).await
    }

    /// The underlying QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The client endpoint (reusable for other connections).
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Closes the connection politely.
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"bye");
    }
}
