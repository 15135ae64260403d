//! Streams a request takes over for its whole life: a vendor's keep-alive stream (renewals
//! in, grants out, in order, like etcd's `LeaseKeepAlive`) and an event subscription (what
//! the ring kept from a number, then live batches).

use super::connection::Session;
use super::respond::{refusal, write_msg};
use super::wire_errors::{ToWire, not_authenticated};
use crate::core::events::EventRecord;
use courier_protocol::limits::{MAX_EVENT_BATCH, MAX_SMALL_FRAME};
use courier_protocol::{ErrorKind, Event, EventBatch, Request, Response, WireError};
use courier_transport::FrameBuffer;
use tokio::sync::broadcast;

/// Serves a keep-alive stream until the client finishes it, breaks the protocol, or the
/// registry shuts down. Between renewals it may idle as long as the connection lives.
/// Renewals work in memory and are answered where they arrive (at a cluster's standby, once
/// their rows are written).
pub(super) async fn keep_alive(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut frames: FrameBuffer,
    session: &Session,
) {
    let (registry, peer) = (&session.shared.registry, session.peer);
    let timeout = session.shared.config.response_timeout;
    let mut shutdown = session.shared.shutdown.clone();
    let stop = shutdown.changed();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            r = frames.read::<Request>(&mut recv, MAX_SMALL_FRAME) => r,
        };
        let resp = match next {
            Ok(None) => break,
            Ok(Some(Request::Renew { lease, ttl_ms })) => {
                let renewed = match (session.admit(), session.auth.get()) {
                    (Err(why), _) => Err(WireError::new(ErrorKind::Busy, why)),
                    (Ok(()), None) => Err(not_authenticated()),
                    (Ok(()), Some(key)) => registry
                        .renew_durably(registry.now(), key, lease, ttl_ms)
                        .await
                        .map_err(|e| e.to_wire()),
                };
                match renewed {
                    Ok(grant) => {
                        if let Some(o) = &session.shared.observer {
                            o.renewed();
                        }
                        Response::Renewed(grant)
                    }
                    Err(e) if e.kind == ErrorKind::Busy => Response::Error(e),
                    Err(e) => refusal(e, peer, "renew"),
                }
            }
            Ok(Some(_)) => {
                let e = WireError::new(
                    ErrorKind::BadFrame,
                    "a keep-alive stream carries only renewals",
                );
                let _ = write_msg(&mut send, &refusal(e, peer, "keep-alive"), timeout, peer).await;
                break;
            }
            Err(e) => {
                let e = WireError::new(ErrorKind::BadFrame, e.to_string());
                let _ = write_msg(&mut send, &refusal(e, peer, "keep-alive"), timeout, peer).await;
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
/// goes away or the registry shuts down. A subscriber too slow for the live feed, or that
/// sees a gap in the numbers, is caught up from the ring, with `missed` set when the ring
/// no longer has what it needs.
pub(super) async fn subscribe(
    mut send: quinn::SendStream,
    session: &Session,
    interface: Option<String>,
    from_seq: u64,
) {
    let registry = &session.shared.registry;
    let (peer, timeout) = (session.peer, session.shared.config.response_timeout);
    let filter = interface.as_deref();
    let _live = session
        .shared
        .observer
        .as_ref()
        .map(|o| o.metrics.subscribers.hold());
    let (batch, mut next, mut rx) = registry.subscribe(from_seq, filter);
    if write_msg(&mut send, &Response::Events(batch), timeout, peer)
        .await
        .is_err()
    {
        return;
    }
    // Catch up in batches if more was kept than one batch holds.
    if !catch_up(&mut send, session, filter, &mut next).await {
        return;
    }
    let mut shutdown = session.shared.shutdown.clone();
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            _ = session.conn.closed() => break,
            r = rx.recv() => r,
        };
        let mut events = Vec::new();
        let mut behind = match first {
            Ok(rec) => !absorb(rec, &mut next, filter, &mut events),
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            Err(broadcast::error::RecvError::Closed) => break,
        };
        while !behind && events.len() < MAX_EVENT_BATCH {
            match rx.try_recv() {
                Ok(rec) => behind = !absorb(rec, &mut next, filter, &mut events),
                Err(broadcast::error::TryRecvError::Lagged(_)) => behind = true,
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
        // Re-read from the ring: exact, and says what is gone.
        if behind && !catch_up(&mut send, session, filter, &mut next).await {
            return;
        }
    }
    let _ = send.finish();
}

/// Sends what the ring holds from `next` on, in batches, until the subscriber is level;
/// `false` if the stream broke.
async fn catch_up(
    send: &mut quinn::SendStream,
    session: &Session,
    filter: Option<&str>,
    next: &mut u64,
) -> bool {
    let registry = &session.shared.registry;
    let (peer, timeout) = (session.peer, session.shared.config.response_timeout);
    while *next < registry.next_seq() {
        let (batch, n) = registry.events_since(*next, filter);
        let progressed = n > *next;
        *next = n;
        if (!batch.events.is_empty() || batch.missed.is_some())
            && write_msg(send, &Response::Events(batch), timeout, peer)
                .await
                .is_err()
        {
            return false;
        }
        if !progressed {
            break;
        }
    }
    true
}

/// Takes a live event if it is the next one; `false` if one was missed (the ring must be
/// read again). Events already sent are ignored.
fn absorb(rec: EventRecord, next: &mut u64, filter: Option<&str>, events: &mut Vec<Event>) -> bool {
    if rec.seq < *next {
        return true;
    }
    if rec.after > *next {
        return false;
    }
    *next = rec.seq + 1;
    if rec.matches(filter) {
        events.push(rec.to_wire());
    }
    true
}
