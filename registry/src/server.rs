//! The QUIC driver: a thin tokio/quinn layer around [`Registry`]. It accepts connections
//! (capped by a semaphore), runs the Hello/Welcome handshake, serves one request per stream,
//! and runs two background tasks: expiry (sleeps until the next lease deadline, woken early
//! when an earlier one appears) and the write-behind flush.
//!
//! Every bad input gets a typed `Response::Error` and a `tracing` warning; the connection
//! (or, for a broken handshake, the registry) keeps serving everyone else.

use crate::events::EventRecord;
use crate::limits::{NoRoom, PeerConnections, RateLimit, Room};
use crate::registry::{MAX_BATCH, Registry};
use courier_protocol::signing::{AUTH_DOMAIN, auth_message};
use courier_protocol::{
    ErrorKind, EventBatch, PROTOCOL_VERSION, Request, Response, SpkiPin, VendorKey, Welcome,
    WireError, codec,
};
use courier_transport::{FrameBuffer, Identity, ServerLimits, TransportError, server_endpoint};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// Largest frame accepted for anything but a registration (which may carry a component).
pub const SMALL_FRAME: usize = 64 * 1024;
/// Bytes all connections together may hold in large request frames being read.
pub const LARGE_FRAME_BUDGET: usize = 64 * 1024 * 1024;
/// How long a client has to send a whole request frame.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a large response waits for room in the large-response budget
/// ([`RegistryConfig::large_response_budget`](crate::RegistryConfig)) before it is
/// answered `Busy` (or a quarter of the response timeout, if shorter).
pub const RESPONSE_BUDGET_WAIT: Duration = Duration::from_secs(5);

/// QUIC application close codes.
mod close {
    pub const SHUTDOWN: u32 = 0;
    pub const UNSUPPORTED_VERSION: u32 = 1;
    pub const BAD_HANDSHAKE: u32 = 2;
    pub const BUSY: u32 = 3;
    /// Stream reset: the peer did not take a response in time.
    pub const TOO_SLOW: u32 = 4;
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
    /// The registry was opened offline (for an operator's command) and must not serve.
    #[error("a registry opened offline cannot serve")]
    Offline,
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

    /// Stops gracefully: stops accepting, closes connections, waits for the handlers, and
    /// writes a final durable flush. When it returns, the data directory can be reopened.
    pub async fn shutdown(self) {
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
        endpoint.close(close::SHUTDOWN.into(), b"registry shutting down");
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
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        let reg = registry.clone();
        match tokio::task::spawn_blocking(move || reg.flush(reg.now())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("final flush failed: {e}"),
            Err(e) => tracing::error!("final flush panicked: {e}"),
        }
        tracing::info!("registry stopped");
    }
}

/// Shared by every connection task.
struct Ctx {
    registry: Arc<Registry>,
    pin: SpkiPin,
    shutdown: watch::Receiver<bool>,
    large_frames: Arc<Semaphore>,
    /// Bytes of large responses not yet taken by their peers
    /// ([`RegistryConfig::large_response_budget`](crate::RegistryConfig)).
    large_responses: Arc<Semaphore>,
    /// How long a peer has to take one response.
    response_timeout: Duration,
    /// One-shot requests being handled ([`RegistryConfig::max_requests_in_flight`]).
    in_flight: Arc<Semaphore>,
    /// The registry-wide request rate.
    rate: RateLimit,
    done: mpsc::Sender<()>,
}

impl Registry {
    /// Binds `config.listen` with the identity kept in the data directory and serves until
    /// [`RegistryHandle::shutdown`].
    pub async fn serve(self) -> Result<RegistryHandle, ServeError> {
        serve(Arc::new(self)).await
    }
}

/// Serves a shared registry (see [`Registry::serve`]).
pub async fn serve(registry: Arc<Registry>) -> Result<RegistryHandle, ServeError> {
    let config = registry.config().clone();
    if config.offline {
        return Err(ServeError::Offline);
    }
    let (identity, created) = Identity::load_or_generate(&config.data_dir)?;
    let pin = identity.pin();
    let limits = ServerLimits {
        max_streams_per_connection: config.max_streams_per_connection,
        idle_timeout: config.idle_timeout,
        ..ServerLimits::default()
    };
    let endpoint = server_endpoint(config.listen, &identity, &limits)?;
    let local_addr = endpoint.local_addr()?;
    tracing::info!(%local_addr, %pin, new_identity = created, registry_id = registry.registry_id(), "registry listening");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel(1);
    let ctx = Arc::new(Ctx {
        registry: registry.clone(),
        pin,
        shutdown: shutdown_rx.clone(),
        large_frames: Arc::new(Semaphore::new(LARGE_FRAME_BUDGET)),
        large_responses: Arc::new(Semaphore::new(config.large_response_budget)),
        response_timeout: config.response_timeout,
        in_flight: Arc::new(Semaphore::new(config.max_requests_in_flight.max(1))),
        rate: RateLimit::new(config.request_rate),
        done: done_tx.clone(),
    });
    let tasks = vec![
        tokio::spawn(accept_loop(endpoint.clone(), ctx.clone())),
        tokio::spawn(expiry_task(registry.clone(), shutdown_rx.clone())),
        tokio::spawn(flush_task(registry.clone(), shutdown_rx)),
    ];
    Ok(RegistryHandle {
        local_addr,
        pin,
        registry,
        endpoint,
        shutdown: shutdown_tx,
        tasks,
        done_tx,
        done_rx,
    })
}

async fn accept_loop(endpoint: quinn::Endpoint, ctx: Arc<Ctx>) {
    let config = ctx.registry.config();
    let max_connections = config.max_connections;
    let connections = Arc::new(Semaphore::new(max_connections.max(1)));
    let peers = PeerConnections::new(
        config.max_connections_per_peer,
        config.large_response_budget_per_peer,
    );
    // Connections over a cap get a Busy answer; a flood beyond that is refused outright.
    let busy = Arc::new(Semaphore::new(max_connections.max(64) / 4));
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            _ = shutdown.changed() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let peer = incoming.remote_address();
        let admitted = match connections.clone().try_acquire_owned() {
            Err(_) => Err("registry is at its connection cap; try later"),
            Ok(permit) => match peers.admit(peer.ip()) {
                None => Err("too many connections from your address; try later"),
                Some(slot) => Ok((permit, slot)),
            },
        };
        match admitted {
            Ok((permit, slot)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let done = ctx.done.clone();
                    handle_connection(incoming, ctx, slot.room().clone()).await;
                    drop((permit, slot, done));
                });
            }
            Err(why) => match busy.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::warn!(%peer, "{why}: answering busy");
                    let done = ctx.done.clone();
                    let timeout = config.handshake_timeout;
                    tokio::spawn(async move {
                        answer_busy(incoming, timeout, why).await;
                        drop((permit, done));
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, "connection flood: refusing");
                    incoming.refuse();
                }
            },
        }
    }
}

async fn answer_busy(incoming: quinn::Incoming, timeout: Duration, why: &'static str) {
    let work = async {
        let conn = incoming.await.ok()?;
        let (mut send, mut recv) = conn.accept_bi().await.ok()?;
        let _ = read_request(&mut recv, SMALL_FRAME, None).await;
        let resp = Response::Error(WireError::new(ErrorKind::Busy, why));
        close_with(&conn, &mut send, &resp, close::BUSY, b"busy").await;
        Some(())
    };
    let _ = tokio::time::timeout(timeout, work).await;
}

/// Admits one request of a connection: its own rate, then the registry's.
fn admit_request(ctx: &Ctx, rate: &RateLimit) -> Result<(), &'static str> {
    let now = std::time::Instant::now();
    if !rate.admit(now) {
        return Err("request rate of this connection exceeded; slow down");
    }
    if !ctx.rate.admit(now) {
        return Err("registry request rate exceeded; try later");
    }
    Ok(())
}

/// Admits one one-shot request: the rates, then a place among the requests in flight
/// (held by the returned permit until the request is answered).
fn admit_one_shot(ctx: &Ctx, rate: &RateLimit) -> Result<OwnedSemaphorePermit, &'static str> {
    admit_request(ctx, rate)?;
    ctx.in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| "registry has too many requests in flight; try later")
}

/// Answers a stream refused at admission with `Busy`, without reading its request.
async fn refuse_stream(
    mut send: quinn::SendStream,
    why: &'static str,
    timeout: Duration,
    peer: SocketAddr,
) {
    let resp = Response::Error(WireError::new(ErrorKind::Busy, why));
    if write_msg(&mut send, &resp, timeout, peer).await.is_ok() {
        let _ = send.finish();
    }
}

/// Writes `resp` (within 2 s), finishes the stream, waits (briefly) until the peer has it,
/// then closes.
async fn close_with(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    resp: &Response,
    code: u32,
    reason: &[u8],
) {
    let (timeout, peer) = (Duration::from_secs(2), conn.remote_address());
    if write_msg(send, resp, timeout, peer).await.is_ok() && send.finish().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    }
    conn.close(code.into(), reason);
}

async fn handle_connection(incoming: quinn::Incoming, ctx: Arc<Ctx>, room: Arc<Semaphore>) {
    let peer = incoming.remote_address();
    let config = ctx.registry.config();
    let conn = match tokio::time::timeout(config.handshake_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "connection failed: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let Some(challenge) = handshake(&conn, peer, config.handshake_timeout).await else {
        return;
    };
    let auth: Arc<OnceLock<VendorKey>> = Arc::new(OnceLock::new());
    let rate = Arc::new(RateLimit::new(config.request_rate_per_connection));
    let mut warned = false;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (send, recv) = tokio::select! {
            _ = shutdown.changed() => break,
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "connection ended: {e}");
                    break;
                }
            },
        };
        let admitted = admit_one_shot(&ctx, &rate);
        let permit = match admitted {
            Ok(p) => p,
            Err(why) => {
                if !warned {
                    tracing::warn!(%peer, "{why} (further refusals on this connection are not logged)");
                    warned = true;
                }
                drop(recv);
                tokio::spawn(refuse_stream(send, why, ctx.response_timeout, peer));
                continue;
            }
        };
        let ctx = ctx.clone();
        let auth = auth.clone();
        let conn = conn.clone();
        let rate = rate.clone();
        let room = room.clone();
        tokio::spawn(async move {
            let done = ctx.done.clone();
            let stream = Stream {
                ctx: &ctx,
                conn: &conn,
                peer,
                challenge: &challenge,
                auth: &auth,
                rate: &rate,
                room: &room,
            };
            handle_stream(send, recv, stream, permit).await;
            drop(done);
        });
    }
    conn.close(close::SHUTDOWN.into(), b"bye");
}

/// Runs the Hello/Welcome exchange on the first stream; `None` if it failed (the
/// connection is then closed).
async fn handshake(
    conn: &quinn::Connection,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<[u8; 32]> {
    let (mut send, mut recv) = match tokio::time::timeout(timeout, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "connection ended before hello: {e}");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "no hello in time");
            conn.close(close::BAD_HANDSHAKE.into(), b"no hello");
            return None;
        }
    };
    let first =
        match tokio::time::timeout(timeout, read_request(&mut recv, SMALL_FRAME, None)).await {
            Ok(r) => r,
            Err(_) => Err(WireError::new(ErrorKind::BadHandshake, "no hello in time")),
        };
    let (err, code, reason): (WireError, u32, &[u8]) = match first {
        Ok(Request::Hello(h)) if h.version == PROTOCOL_VERSION => {
            let challenge: [u8; 32] = rand::random();
            let welcome = Response::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                challenge,
            });
            if write_msg(&mut send, &welcome, timeout, peer).await.is_err()
                || send.finish().is_err()
            {
                return None;
            }
            tracing::debug!(%peer, agent = %h.agent, "hello");
            return Some(challenge);
        }
        Ok(Request::Hello(h)) => (
            WireError::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this registry speaks {PROTOCOL_VERSION}",
                    h.version
                ),
            ),
            close::UNSUPPORTED_VERSION,
            b"unsupported version",
        ),
        Ok(_) => (
            WireError::new(ErrorKind::BadHandshake, "the first message must be Hello"),
            close::BAD_HANDSHAKE,
            b"bad handshake",
        ),
        Err(e) => (e, close::BAD_HANDSHAKE, b"bad handshake"),
    };
    tracing::warn!(%peer, kind = ?err.kind, "handshake refused: {}", err.message);
    close_with(conn, &mut send, &Response::Error(err), code, reason).await;
    None
}

/// Reads one request frame. Frames above [`SMALL_FRAME`] take their size from the shared
/// budget for the time they are read (a `large` budget of `None` refuses them).
async fn read_request(
    recv: &mut quinn::RecvStream,
    max: usize,
    large: Option<&Semaphore>,
) -> Result<Request, WireError> {
    read_request_opt(recv, max, large)
        .await?
        .ok_or_else(|| WireError::new(ErrorKind::BadFrame, "empty stream: no request frame"))
}

/// Like [`read_request`], with `Ok(None)` when the stream ended cleanly before a frame.
async fn read_request_opt(
    recv: &mut quinn::RecvStream,
    max: usize,
    large: Option<&Semaphore>,
) -> Result<Option<Request>, WireError> {
    let bad = |m: String| WireError::new(ErrorKind::BadFrame, m);
    let mut header = [0u8; codec::FRAME_HEADER_LEN];
    let mut got = 0;
    while got < header.len() {
        match recv.read(&mut header[got..]).await {
            Ok(Some(n)) => got += n,
            Ok(None) if got == 0 => return Ok(None),
            Ok(None) => return Err(bad("truncated frame header".into())),
            // The peer went away (connection closed, stream reset) between requests: the
            // normal end of a kept stream, not a bad frame.
            Err(
                quinn::ReadError::ConnectionLost(_)
                | quinn::ReadError::Reset(_)
                | quinn::ReadError::ClosedStream,
            ) if got == 0 => return Ok(None),
            Err(e) => return Err(bad(format!("read: {e}"))),
        }
    }
    let len = codec::frame_len(header, max).map_err(|e| bad(e.to_string()))?;
    let _permit = if len > SMALL_FRAME {
        let budget =
            large.ok_or_else(|| bad(format!("frame of {len} bytes exceeds {SMALL_FRAME}")))?;
        let n = u32::try_from(len).map_err(|_| bad("frame too large".into()))?;
        Some(
            budget
                .acquire_many(n)
                .await
                .map_err(|_| WireError::new(ErrorKind::Busy, "shutting down"))?,
        )
    } else {
        None
    };
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(n) => {
            bad(format!("truncated frame: {n} of {len} bytes"))
        }
        quinn::ReadExactError::ReadError(e) => bad(format!("read: {e}")),
    })?;
    codec::decode(&body)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

fn error(err: WireError, peer: SocketAddr, what: &str) -> Response {
    tracing::warn!(%peer, kind = ?err.kind, "{what} refused: {}", err.message);
    Response::Error(err)
}

/// Runs `f` on the registry on the blocking pool: `ok` of its value, or its error (logged
/// as a refusal of `what`).
async fn on_blocking<T: Send + 'static>(
    registry: &Arc<Registry>,
    peer: SocketAddr,
    what: &str,
    f: impl FnOnce(&Registry) -> Result<T, WireError> + Send + 'static,
    ok: impl FnOnce(T) -> Response,
) -> Response {
    let registry = registry.clone();
    match blocking(move || f(&registry)).await {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) | Err(e) => error(e, peer, what),
    }
}

/// Runs a blocking registry call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WireError::new(ErrorKind::Internal, format!("handler failed: {e}")))
}

/// What a stream's handler knows of its connection.
struct Stream<'a> {
    ctx: &'a Ctx,
    conn: &'a quinn::Connection,
    peer: SocketAddr,
    challenge: &'a [u8; 32],
    auth: &'a OnceLock<VendorKey>,
    /// The connection's request rate.
    rate: &'a RateLimit,
    /// The room for large answers of the connection's peer address.
    room: &'a Arc<Semaphore>,
}

/// Serves one stream: a sequence of requests, each answered in order, until the client
/// finishes the stream (a client may keep a stream for its next requests rather than open
/// one per request). A subscription or a keep-alive request takes the stream over. The
/// first request was admitted when the stream was accepted (`permit`); each later one is
/// admitted when it arrives, and a stream idle for [`REQUEST_TIMEOUT`] is finished.
async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    stream: Stream<'_>,
    permit: OwnedSemaphorePermit,
) {
    let ctx = stream.ctx;
    let peer = stream.peer;
    let mut permit = Some(permit);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let read = tokio::time::timeout(
            REQUEST_TIMEOUT,
            read_request_opt(&mut recv, codec::MAX_FRAME_LEN, Some(&ctx.large_frames)),
        );
        let next = tokio::select! {
            _ = shutdown.changed() => break,
            r = read => r,
        };
        let req = match next {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) if permit.is_none() => break,
            Ok(Ok(None)) => {
                let e = WireError::new(ErrorKind::BadFrame, "empty stream: no request frame");
                let _ = write_msg(
                    &mut send,
                    &error(e, peer, "frame"),
                    ctx.response_timeout,
                    peer,
                )
                .await;
                break;
            }
            Ok(Err(e)) => {
                let _ = write_msg(
                    &mut send,
                    &error(e, peer, "frame"),
                    ctx.response_timeout,
                    peer,
                )
                .await;
                break;
            }
            Err(_) if permit.is_none() => break,
            Err(_) => {
                let e = WireError::new(ErrorKind::BadFrame, "request not received in time");
                let _ = write_msg(
                    &mut send,
                    &error(e, peer, "frame"),
                    ctx.response_timeout,
                    peer,
                )
                .await;
                break;
            }
        };
        let admitted = match permit.take() {
            Some(p) => Ok(p),
            None => admit_one_shot(ctx, stream.rate),
        };
        // The place among the requests in flight is held until the peer has the answer,
        // so a peer that does not read cannot make the registry hold more answers. A
        // subscription or a keep-alive stream gives its place up once it is open.
        let (resp, room, _in_flight) = match (admitted, req) {
            (Err(why), _) => (
                Response::Error(WireError::new(ErrorKind::Busy, why)),
                None,
                None,
            ),
            (
                Ok(in_flight),
                Request::Subscribe {
                    interface,
                    from_seq,
                },
            ) => {
                drop(in_flight);
                return subscribe(send, ctx, stream.conn, interface, from_seq).await;
            }
            (Ok(in_flight), Request::KeepAlive) => {
                drop(in_flight);
                return keep_alive(send, recv, ctx, peer, stream.auth, stream.rate).await;
            }
            (Ok(in_flight), req) => {
                let (resp, room) = answer(req, &stream).await;
                (resp, room, Some(in_flight))
            }
        };
        if write_response(&mut send, resp, room, &stream)
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = send.finish();
}

/// How long a large answer waits for room: [`RESPONSE_BUDGET_WAIT`], or a quarter of the
/// response timeout if that is shorter.
fn room_wait(ctx: &Ctx) -> Duration {
    RESPONSE_BUDGET_WAIT.min(ctx.response_timeout / 4)
}

/// Room for a large answer of (at most) `bytes`, for the stream's peer address and in all;
/// the error answer when there is none.
async fn reserve(stream: &Stream<'_>, bytes: usize) -> Result<Room, Response> {
    let ctx = stream.ctx;
    let config = ctx.registry.config();
    let (peer_total, all_total) = (
        config.large_response_budget_per_peer,
        config.large_response_budget,
    );
    let refused = |why: NoRoom| {
        let e = match why {
            NoRoom::Busy => sending_too_much(),
            NoRoom::TooLarge => WireError::new(
                ErrorKind::Internal,
                format!(
                    "an answer of {bytes} bytes is larger than this registry's room for answers"
                ),
            ),
        };
        error(e, stream.peer, "answer")
    };
    if Room::never_fits(bytes, peer_total, all_total) {
        return Err(refused(NoRoom::TooLarge));
    }
    Room::reserve(stream.room, &ctx.large_responses, bytes, room_wait(ctx))
        .await
        .map_err(refused)
}

/// The refusal of a large answer that found no room in time.
fn sending_too_much() -> WireError {
    WireError::new(ErrorKind::Busy, "registry is sending too much; try later")
}

/// Writes one response frame. A frame above [`SMALL_FRAME`] is counted against the
/// large-answer room of its peer address and of the registry until the peer has taken it
/// (`room` if the handler reserved it before building the answer, shrunk to the frame's
/// size or grown to it if there is room at once; otherwise reserved now); without room the
/// answer is `Busy`. A peer that does not take the frame within the response timeout gets
/// the stream reset.
async fn write_response(
    send: &mut quinn::SendStream,
    resp: Response,
    room: Option<Room>,
    stream: &Stream<'_>,
) -> Result<(), ()> {
    let (ctx, peer) = (stream.ctx, stream.peer);
    let mut frame = codec::encode_frame(&resp);
    drop(resp);
    let _room = match room {
        Some(mut r) if frame.len() <= r.bytes() => {
            r.shrink_to(frame.len());
            Some(r)
        }
        Some(mut r) => {
            let more = frame.len() - r.bytes();
            if r.try_grow(stream.room, &ctx.large_responses, more) {
                Some(r)
            } else {
                drop(r);
                frame = codec::encode_frame(&error(sending_too_much(), peer, "answer"));
                None
            }
        }
        None if frame.len() <= SMALL_FRAME => None,
        None => match reserve(stream, frame.len()).await {
            Ok(r) => Some(r),
            Err(refusal) => {
                frame = codec::encode_frame(&refusal);
                None
            }
        },
    };
    write_timed(send, frame, ctx.response_timeout, peer).await
}

/// Writes one small message within `timeout` (see [`write_timed`]).
async fn write_msg(
    send: &mut quinn::SendStream,
    resp: &Response,
    timeout: Duration,
    peer: SocketAddr,
) -> Result<(), ()> {
    write_timed(send, codec::encode_frame(resp), timeout, peer).await
}

/// Writes an encoded frame within `timeout`; a peer too slow to take it gets the stream
/// reset, and the frame is let go.
async fn write_timed(
    send: &mut quinn::SendStream,
    frame: Vec<u8>,
    timeout: Duration,
    peer: SocketAddr,
) -> Result<(), ()> {
    match tokio::time::timeout(timeout, send.write_chunk(frame.into())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(()),
        Err(_) => {
            tracing::warn!(%peer, "peer did not take a response in {timeout:?}; stream reset");
            let _ = send.reset(close::TOO_SLOW.into());
            Err(())
        }
    }
}

/// Answers one one-shot request. The answers that can be large (a component, a page of the
/// lease table, a history) take their room before they are built, so what answers in
/// flight hold is counted before it exists.
async fn answer(req: Request, stream: &Stream<'_>) -> (Response, Option<Room>) {
    let reserved = match &req {
        Request::Fetch { hash } => {
            let reg = stream.ctx.registry.clone();
            let hash = *hash;
            match blocking(move || reg.component_size(&hash).map_err(|e| e.to_wire())).await {
                // Its bytes and its frame, both alive while it is encoded.
                Ok(Ok(n)) => usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(2)
                    .saturating_add(64),
                Ok(Err(e)) | Err(e) => return (error(e, stream.peer, "fetch"), None),
            }
        }
        Request::History { .. } => 2 * crate::registry::MAX_HISTORY_BYTES + (64 << 10),
        Request::Leases { limit, .. } => {
            let rows = (*limit).clamp(1, courier_protocol::MAX_LEASE_PAGE) as usize;
            2 * rows * LEASE_ROW_BYTES
        }
        _ => return (answer_small(req, stream).await, None),
    };
    let room = match reserve(stream, reserved).await {
        Ok(r) => r,
        Err(refusal) => return (refusal, None),
    };
    (answer_small(req, stream).await, Some(room))
}

/// Room a lease-table row is given before a page is built (a typical row is about 250 bytes;
/// a longer one takes more room when the page is encoded, if there is some at once).
const LEASE_ROW_BYTES: usize = 512;

/// Builds the answer to a one-shot request.
async fn answer_small(req: Request, stream: &Stream<'_>) -> Response {
    let Stream {
        ctx,
        peer,
        challenge,
        auth,
        ..
    } = *stream;
    let reg = &ctx.registry;
    match req {
        Request::Hello(_) => error(
            WireError::new(ErrorKind::BadHandshake, "hello sent twice"),
            peer,
            "hello",
        ),
        Request::Authenticate { vendor, signature } => {
            match vendor.verify(AUTH_DOMAIN, &auth_message(challenge, &ctx.pin), &signature) {
                Err(e) => error(
                    WireError::new(ErrorKind::BadSignature, format!("authentication: {e}")),
                    peer,
                    "authenticate",
                ),
                Ok(()) => match auth.set(vendor) {
                    Ok(()) => {
                        tracing::debug!(%peer, %vendor, "authenticated");
                        Response::Authenticated
                    }
                    Err(_) if auth.get() == Some(&vendor) => Response::Authenticated,
                    Err(_) => error(
                        WireError::new(
                            ErrorKind::BadHandshake,
                            "connection is already authenticated as another key",
                        ),
                        peer,
                        "authenticate",
                    ),
                },
            }
        }
        Request::Register(r) => {
            let key = auth.get().copied();
            let register = move |reg: &Registry| {
                reg.register(reg.now(), key.as_ref(), r)
                    .map_err(|e| e.to_wire())
            };
            on_blocking(reg, peer, "register", register, Response::Registered).await
        }
        Request::Renew { lease, ttl_ms } => match reg.renew(reg.now(), auth.get(), lease, ttl_ms) {
            Ok(grant) => Response::Renewed(grant),
            Err(e) => error(e.to_wire(), peer, "renew"),
        },
        Request::Cancel { lease } => {
            let key = auth.get().copied();
            let cancel = move |reg: &Registry| {
                reg.cancel(reg.now(), key.as_ref(), lease)
                    .map_err(|e| e.to_wire())
            };
            on_blocking(reg, peer, "cancel", cancel, |()| Response::Cancelled).await
        }
        Request::Find(q) => match reg.find(reg.now(), &q) {
            Ok(c) => Response::Candidates(c),
            Err(e) => error(e.to_wire(), peer, "find"),
        },
        Request::Fetch { hash } => {
            let fetch = move |reg: &Registry| reg.fetch(&hash).map_err(|e| e.to_wire());
            on_blocking(reg, peer, "fetch", fetch, Response::Payload).await
        }
        Request::Leases { after, limit } => {
            let page = move |reg: &Registry| {
                reg.leases_page(reg.now(), after.as_ref(), limit)
                    .map_err(|e| e.to_wire())
            };
            on_blocking(reg, peer, "leases", page, Response::Leases).await
        }
        Request::Report(outcome) => {
            let report =
                move |reg: &Registry| reg.report(reg.now(), outcome).map_err(|e| e.to_wire());
            on_blocking(reg, peer, "report", report, |()| Response::Reported).await
        }
        Request::History { client, limit } => {
            let history =
                move |reg: &Registry| reg.history(&client, limit).map_err(|e| e.to_wire());
            on_blocking(reg, peer, "history", history, Response::History).await
        }
        Request::KeyStatement(statement) => {
            let key = auth.get().copied();
            let publish = move |reg: &Registry| {
                reg.key_statement(reg.now(), key.as_ref(), statement)
                    .map_err(|e| e.to_wire())
            };
            on_blocking(reg, peer, "key statement", publish, |_| {
                Response::StatementAccepted
            })
            .await
        }
        Request::KeyStatements { keys } => Response::KeyStatements(reg.key_statements(&keys)),
        Request::Subscribe { .. } | Request::KeepAlive => error(
            WireError::new(ErrorKind::Internal, "long-lived request not taken over"),
            peer,
            "request",
        ),
    }
}

/// Serves a keep-alive stream: renewals in, grants out, in order, until the client finishes
/// the stream, breaks the protocol, or the registry shuts down. Between renewals the stream
/// may idle as long as the connection lives.
async fn keep_alive(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: &Ctx,
    peer: SocketAddr,
    auth: &OnceLock<VendorKey>,
    rate: &RateLimit,
) {
    let reg = &ctx.registry;
    let timeout = ctx.response_timeout;
    let mut shutdown = ctx.shutdown.clone();
    let stop = shutdown.changed();
    tokio::pin!(stop);
    let mut frames = FrameBuffer::new();
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            r = frames.read::<Request>(&mut recv, SMALL_FRAME) => {
                r.map_err(|e| WireError::new(ErrorKind::BadFrame, e.to_string()))
            }
        };
        let resp = match next {
            Ok(None) => break,
            Ok(Some(Request::Renew { lease, ttl_ms })) => match admit_request(ctx, rate) {
                Err(why) => Response::Error(WireError::new(ErrorKind::Busy, why)),
                Ok(()) => match reg.renew(reg.now(), auth.get(), lease, ttl_ms) {
                    Ok(grant) => Response::Renewed(grant),
                    Err(e) => error(e.to_wire(), peer, "renew"),
                },
            },
            Ok(Some(_)) => {
                let e = WireError::new(
                    ErrorKind::BadFrame,
                    "a keep-alive stream carries only renewals",
                );
                let _ = write_msg(&mut send, &error(e, peer, "keep-alive"), timeout, peer).await;
                break;
            }
            Err(e) => {
                let _ = write_msg(&mut send, &error(e, peer, "keep-alive"), timeout, peer).await;
                break;
            }
        };
        if write_msg(&mut send, &resp, timeout, peer).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Streams events: first what is kept from `from_seq`, then live batches until the client
/// goes away or the registry shuts down. A subscriber too slow for the live feed is caught
/// up from the ring, with `missed` set when the ring no longer has what it needs.
async fn subscribe(
    mut send: quinn::SendStream,
    ctx: &Ctx,
    conn: &quinn::Connection,
    interface: Option<String>,
    from_seq: u64,
) {
    let reg = &ctx.registry;
    let (peer, timeout) = (conn.remote_address(), ctx.response_timeout);
    let filter = interface.as_deref();
    let (batch, mut next, mut rx) = reg.subscribe(from_seq, filter);
    if write_msg(&mut send, &Response::Events(batch), timeout, peer)
        .await
        .is_err()
    {
        return;
    }
    // Catch up in batches if more was kept than one batch holds.
    while next < reg.next_seq() {
        let (batch, n) = reg.events_since(next, filter);
        if n == next {
            break;
        }
        next = n;
        if !batch.events.is_empty()
            && write_msg(&mut send, &Response::Events(batch), timeout, peer)
                .await
                .is_err()
        {
            return;
        }
    }
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            _ = conn.closed() => break,
            r = rx.recv() => r,
        };
        let mut events = Vec::new();
        let mut lagged = false;
        match first {
            Ok(rec) => absorb(rec, &mut next, filter, &mut events),
            Err(broadcast::error::RecvError::Lagged(_)) => lagged = true,
            Err(broadcast::error::RecvError::Closed) => break,
        }
        while !lagged && events.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(rec) => absorb(rec, &mut next, filter, &mut events),
                Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        if !events.is_empty() {
            let batch = EventBatch {
                events,
                missed: None,
            };
            if write_msg(&mut send, &Response::Events(batch), timeout, peer)
                .await
                .is_err()
            {
                return;
            }
        }
        if lagged {
            // Re-read from the ring: exact, and says what is gone.
            loop {
                let (batch, n) = reg.events_since(next, filter);
                let progressed = n > next;
                next = n;
                if (!batch.events.is_empty() || batch.missed.is_some())
                    && write_msg(&mut send, &Response::Events(batch), timeout, peer)
                        .await
                        .is_err()
                {
                    return;
                }
                if !progressed || next >= reg.next_seq() {
                    break;
                }
            }
        }
    }
    let _ = send.finish();
}

fn absorb(
    rec: EventRecord,
    next: &mut u64,
    filter: Option<&str>,
    events: &mut Vec<courier_protocol::Event>,
) {
    if rec.seq >= *next {
        *next = rec.seq + 1;
        if rec.matches(filter) {
            events.push(rec.to_wire());
        }
    }
}

async fn expiry_task(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let notified = registry.deadline_changed().notified();
        let wake = match registry.next_deadline() {
            Some(d) => registry.instant(d),
            None => tokio::time::Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = notified => {}
            _ = tokio::time::sleep_until(wake) => {
                registry.expire(registry.now());
            }
        }
    }
}

async fn flush_task(registry: Arc<Registry>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(registry.config().flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {
                let reg = registry.clone();
                match tokio::task::spawn_blocking(move || reg.flush(reg.now())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!("flush failed (will retry): {e}"),
                    Err(e) => tracing::error!("flush task failed: {e}"),
                }
            }
        }
    }
}
