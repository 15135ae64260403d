//! One connection: its TLS and Hello handshake, its authentication, and its streams. A
//! stream carries requests one after the other, each admitted (the connection's rate, the
//! registry's rate, a place among the requests in flight) before it is read and answered
//! in order; a request may take the stream over (`kept`).

use super::admission::RateLimit;
use super::respond::{close_with, write_msg, write_response};
use super::{Shared, close, dispatch, kept, listen};
use crate::observe::Refusal;
use courier_protocol::limits::{MAX_FRAME_LEN, MAX_SMALL_FRAME};
use courier_protocol::{
    ErrorKind, PROTOCOL_VERSION, Request, Response, VendorKey, Welcome, WireError,
};
use courier_transport::{FrameBudget, FrameBuffer, TransportError};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// What a connection's handlers know of it.
pub(super) struct Session {
    /// What every connection shares.
    pub shared: Arc<Shared>,
    /// The connection.
    pub conn: quinn::Connection,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The challenge a vendor signs to authenticate.
    pub challenge: [u8; 32],
    /// The vendor key the connection authenticated as, once it has.
    pub auth: OnceLock<VendorKey>,
    /// The connection's request rate.
    pub rate: RateLimit,
    /// The room for large answers of the connection's peer address.
    pub room: Arc<Semaphore>,
    /// Whether a request that needs an operator key was refused already (logged once).
    pub refused_admin: std::sync::atomic::AtomicBool,
}

impl Session {
    /// Admits one request: the connection's rate, then the registry's.
    pub fn admit(&self) -> Result<(), &'static str> {
        if !self.rate.admit() {
            self.shared.refused(Refusal::ConnectionRate);
            return Err("request rate of this connection exceeded; slow down");
        }
        if !self.shared.rate.admit() {
            self.shared.refused(Refusal::RegistryRate);
            return Err("registry request rate exceeded; try later");
        }
        Ok(())
    }

    /// Admits one one-shot request: the rates, then a place among the requests in flight
    /// (held by the returned permit until the request is answered).
    fn admit_one_shot(&self) -> Result<OwnedSemaphorePermit, &'static str> {
        self.admit()?;
        self.shared
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.shared.refused(Refusal::InFlight);
                "registry has too many requests in flight; try later"
            })
    }
}

/// Serves one accepted connection until it ends or the registry shuts down.
pub(super) async fn serve(incoming: quinn::Incoming, shared: &Arc<Shared>, room: Arc<Semaphore>) {
    let peer = incoming.remote_address();
    let timeout = shared.config.handshake_timeout;
    let conn = match tokio::time::timeout(timeout, incoming).await {
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
    let Some(challenge) = handshake(&conn, peer, timeout).await else {
        return;
    };
    let session = Arc::new(Session {
        shared: shared.clone(),
        conn: conn.clone(),
        peer,
        challenge,
        auth: OnceLock::new(),
        rate: RateLimit::new(shared.config.request_rate_per_connection),
        room,
        refused_admin: std::sync::atomic::AtomicBool::new(false),
    });
    let mut warned = false;
    let mut shutdown = shared.shutdown.clone();
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
        let permit = match session.admit_one_shot() {
            Ok(p) => p,
            Err(why) => {
                if !warned {
                    tracing::warn!(%peer, "{why} (further refusals on this connection are not logged)");
                    warned = true;
                }
                drop(recv);
                let timeout = shared.config.response_timeout;
                tokio::spawn(refuse_stream(send, why, timeout, peer));
                continue;
            }
        };
        let session = session.clone();
        tokio::spawn(async move {
            let done = session.shared.done.clone();
            serve_stream(send, recv, &session, permit).await;
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
    let mut frames = FrameBuffer::new();
    let read = frames.read::<Request>(&mut recv, MAX_SMALL_FRAME);
    let first = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(Some(r))) => Ok(r),
        Ok(Ok(None)) => Err(bad_frame("empty stream: no request frame")),
        Ok(Err(e)) => Err(bad_frame(e)),
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

/// A frame that could not be read, as the peer is told.
fn bad_frame(why: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorKind::BadFrame, why.to_string())
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

/// The registry's budget for request frames above [`MAX_SMALL_FRAME`] (registrations
/// carrying components), across all connections, taken while such a frame is read.
struct LargeRequests<'a>(&'a Semaphore);

impl<'a> FrameBudget for LargeRequests<'a> {
    type Permit = Option<SemaphorePermit<'a>>;

    async fn admit(&self, len: usize) -> Result<Self::Permit, TransportError> {
        if len <= MAX_SMALL_FRAME {
            return Ok(None);
        }
        let n = u32::try_from(len).map_err(|_| TransportError::NoRoom("frame too large"))?;
        self.0
            .acquire_many(n)
            .await
            .map(Some)
            .map_err(|_| TransportError::NoRoom("shutting down"))
    }
}

/// Serves one stream: requests one after the other, each answered in order, until the
/// client finishes the stream (a client keeps a stream for its next requests rather than
/// open one per request). A subscription or a keep-alive request takes the stream over.
/// The first request was admitted when the stream was accepted (`permit`); each later one
/// is admitted when it arrives, and a stream idle for the request timeout is finished.
async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    session: &Session,
    permit: OwnedSemaphorePermit,
) {
    let shared = &*session.shared;
    let (peer, config) = (session.peer, &shared.config);
    let mut first = Some(permit);
    let mut frames = FrameBuffer::new();
    let budget = LargeRequests(&shared.large_requests);
    let mut shutdown = shared.shutdown.clone();
    loop {
        let read = tokio::time::timeout(
            config.request_timeout,
            frames.read_within::<Request, _>(&mut recv, MAX_FRAME_LEN, &budget),
        );
        let next = tokio::select! {
            _ = shutdown.changed() => break,
            r = read => r,
        };
        let req = match next {
            Ok(Ok(Some(r))) => r,
            // The end of a kept stream, or of one idle too long, after its requests.
            Ok(Ok(None)) | Err(_) if first.is_none() => break,
            Ok(Ok(None)) => {
                return refuse_frame(
                    send,
                    peer,
                    "empty stream: no request frame",
                    config.response_timeout,
                )
                .await;
            }
            Ok(Err(TransportError::NoRoom(why))) => {
                let resp = Response::Error(WireError::new(ErrorKind::Busy, why));
                let _ = write_msg(&mut send, &resp, config.response_timeout, peer).await;
                break;
            }
            Ok(Err(e)) => return refuse_frame(send, peer, e, config.response_timeout).await,
            Err(_) => {
                return refuse_frame(
                    send,
                    peer,
                    "request not received in time",
                    config.response_timeout,
                )
                .await;
            }
        };
        let admitted = match first.take() {
            Some(p) => Ok(p),
            None => session.admit_one_shot(),
        };
        // The place among the requests in flight is held until the peer has the answer,
        // so a peer that does not read cannot make the registry hold more answers. A
        // subscription or a keep-alive stream gives its place up once it is open.
        let in_flight = match admitted {
            Ok(p) => p,
            Err(why) => {
                let resp = Response::Error(WireError::new(ErrorKind::Busy, why));
                if write_msg(&mut send, &resp, config.response_timeout, peer)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        if session.shared.registry.is_standby() && !dispatch::standby_answers(&req) {
            let resp = Response::Error(dispatch::standby_refusal());
            if write_msg(&mut send, &resp, config.response_timeout, peer)
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        match req {
            Request::Subscribe {
                interface,
                from_seq,
            } => {
                drop(in_flight);
                return kept::subscribe(send, session, interface, from_seq).await;
            }
            Request::KeepAlive => {
                drop(in_flight);
                return kept::keep_alive(send, recv, frames, session).await;
            }
            Request::Listen { id, from_seq } => {
                drop(in_flight);
                return listen::listen(send, recv, frames, session, id, from_seq).await;
            }
            req => {
                let (resp, room) = dispatch::answer(req, session).await;
                if write_response(&mut send, resp, room, session)
                    .await
                    .is_err()
                {
                    return;
                }
                drop(in_flight);
            }
        }
    }
    let _ = send.finish();
}

/// Answers a frame that could not be read with `BadFrame` and finishes the stream.
async fn refuse_frame(
    mut send: quinn::SendStream,
    peer: SocketAddr,
    why: impl std::fmt::Display,
    timeout: Duration,
) {
    let err = bad_frame(why);
    tracing::warn!(%peer, kind = ?err.kind, "frame refused: {}", err.message);
    let _ = write_msg(&mut send, &Response::Error(err), timeout, peer).await;
    let _ = send.finish();
}
