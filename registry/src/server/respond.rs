//! Writing answers: every write must be taken by the peer within the response timeout or
//! the stream is reset; an answer above the small-frame size holds room in its peer
//! address's share and the registry's budget of large answers until the peer has it.

use super::admission::{AnswerRoom, NoRoom};
use super::close;
use super::connection::Session;
use crate::observe::Refusal;
use courier_protocol::limits::MAX_SMALL_FRAME;
use courier_protocol::{ErrorKind, Response, WireError, codec};
use std::net::SocketAddr;
use std::time::Duration;

/// A refused request's answer, logged once as a refusal of `what`.
pub(super) fn refusal(err: WireError, peer: SocketAddr, what: &str) -> Response {
    tracing::warn!(%peer, kind = ?err.kind, "{what} refused: {}", err.message);
    Response::Error(err)
}

/// The refusal of a large answer that found no room in time (counted).
fn sending_too_much(session: &Session) -> WireError {
    session.shared.refused(Refusal::LargeAnswer);
    WireError::new(ErrorKind::Busy, "registry is sending too much; try later")
}

/// Room for a large answer of (at most) `bytes`, for the session's peer address and in
/// all, waiting at most the configured time (or a quarter of the response timeout); the
/// refusal to answer with when there is none.
pub(super) async fn reserve(session: &Session, bytes: usize) -> Result<AnswerRoom, Response> {
    let shared = &*session.shared;
    let config = &shared.config;
    let refused = |why: NoRoom| {
        let e = match why {
            NoRoom::Busy => sending_too_much(session),
            NoRoom::TooLarge => WireError::new(
                ErrorKind::Internal,
                format!(
                    "an answer of {bytes} bytes is larger than this registry's room for answers"
                ),
            ),
        };
        refusal(e, session.peer, "answer")
    };
    if AnswerRoom::never_fits(
        bytes,
        config.large_response_budget_per_peer,
        config.large_response_budget,
    ) {
        return Err(refused(NoRoom::TooLarge));
    }
    let wait = config.large_response_wait.min(config.response_timeout / 4);
    AnswerRoom::reserve(&session.room, &shared.large_responses, bytes, wait)
        .await
        .map_err(refused)
}

/// Writes one response frame. A frame above [`MAX_SMALL_FRAME`] is counted against the
/// large-answer room of its peer address and of the registry until the peer has taken it
/// (`room` if the handler reserved it before building the answer, shrunk to the frame's
/// size or grown to it if there is room at once; otherwise reserved now); without room the
/// answer is `Busy`.
pub(super) async fn write_response(
    send: &mut quinn::SendStream,
    resp: Response,
    room: Option<AnswerRoom>,
    session: &Session,
) -> Result<(), ()> {
    let shared = &*session.shared;
    let peer = session.peer;
    let mut frame = codec::encode_frame(&resp);
    drop(resp);
    let _room = match room {
        Some(mut r) if frame.len() <= r.bytes() => {
            r.shrink_to(frame.len());
            Some(r)
        }
        Some(mut r) => {
            let more = frame.len() - r.bytes();
            if r.try_grow(&session.room, &shared.large_responses, more) {
                Some(r)
            } else {
                drop(r);
                frame = codec::encode_frame(&refusal(sending_too_much(session), peer, "answer"));
                None
            }
        }
        None if frame.len() <= MAX_SMALL_FRAME => None,
        None => match reserve(session, frame.len()).await {
            Ok(r) => Some(r),
            Err(refused) => {
                frame = codec::encode_frame(&refused);
                None
            }
        },
    };
    write_timed(send, frame, shared.config.response_timeout, peer).await
}

/// Writes one small message within `timeout` (see [`write_timed`]).
pub(super) async fn write_msg(
    send: &mut quinn::SendStream,
    resp: &Response,
    timeout: Duration,
    peer: SocketAddr,
) -> Result<(), ()> {
    write_timed(send, codec::encode_frame(resp), timeout, peer).await
}

/// Writes an encoded frame within `timeout`; a peer too slow to take it gets the stream
/// reset, and the frame is let go.
pub(super) async fn write_timed(
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

/// Writes `resp` (within 2 s), finishes the stream, waits (briefly) until the peer has it,
/// then closes the connection with `code`.
pub(super) async fn close_with(
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
