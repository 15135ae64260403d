//! A listener of a leased event registration: what the ring kept from where it asks, then
//! live notifications. A listener that fell behind its queue reads the ring again from where
//! it is (told of what the ring no longer has), so it never slows the registry. The stream
//! ends when the registration does (cancelled, or its lease ran out), or another listener
//! of the same registration takes over.

use super::connection::Session;
use super::respond::{refusal, write_msg};
use super::wire_errors::{ToWire, not_authenticated};
use crate::core::interests::InterestMatcher;
use courier_protocol::limits::MAX_EVENT_BATCH;
use courier_protocol::{InterestId, NotificationBatch, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Serves `Listen { id, from_seq }` on a stream it takes over.
pub(super) async fn listen(
    mut send: quinn::SendStream,
    session: &Session,
    id: InterestId,
    from_seq: u64,
) {
    let registry = &session.shared.registry;
    let (peer, timeout) = (session.peer, session.shared.config.response_timeout);
    let feed = match session.auth.get() {
        None => Err(not_authenticated()),
        Some(key) => registry.listen(*key, id).map_err(|e| e.to_wire()),
    };
    let mut feed = match feed {
        Ok(f) => f,
        Err(e) => {
            let _ = write_msg(&mut send, &refusal(e, peer, "listen"), timeout, peer).await;
            let _ = send.finish();
            return;
        }
    };
    let mut next = from_seq;
    if !catch_up(&mut send, session, &feed.matcher, &mut next, true).await {
        return;
    }
    let mut shutdown = session.shared.shutdown.clone();
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => break,
            _ = session.conn.closed() => break,
            n = feed.rx.recv() => n,
        };
        let Some(first) = first else {
            break;
        };
        let mut notifications = Vec::new();
        let mut pending = Some(first);
        while let Some(n) = pending.take().or_else(|| feed.rx.try_recv().ok()) {
            if n.seq >= next {
                next = n.seq + 1;
                notifications.push(Arc::unwrap_or_clone(n));
            }
            if notifications.len() >= MAX_EVENT_BATCH {
                break;
            }
        }
        if !notifications.is_empty() {
            let batch = NotificationBatch {
                notifications,
                missed: None,
            };
            if write_msg(&mut send, &Response::Notifications(batch), timeout, peer)
                .await
                .is_err()
            {
                return;
            }
        }
        if feed.behind.swap(false, Ordering::Relaxed)
            && !catch_up(&mut send, session, &feed.matcher, &mut next, false).await
        {
            return;
        }
    }
    let _ = send.finish();
}

/// Sends what the ring holds for `matcher` from `next` on, in batches, until level (always
/// one batch first, even empty, when `first`: the listener's acknowledgement); `false` if
/// the stream broke.
async fn catch_up(
    send: &mut quinn::SendStream,
    session: &Session,
    matcher: &InterestMatcher,
    next: &mut u64,
    first: bool,
) -> bool {
    let registry = &session.shared.registry;
    let (peer, timeout) = (session.peer, session.shared.config.response_timeout);
    let mut must_send = first;
    loop {
        let (batch, n) = registry.notifications_since(matcher, *next, MAX_EVENT_BATCH);
        let progressed = n > *next;
        *next = n;
        if (must_send || !batch.notifications.is_empty() || batch.missed.is_some())
            && write_msg(send, &Response::Notifications(batch), timeout, peer)
                .await
                .is_err()
        {
            return false;
        }
        must_send = false;
        if !progressed || *next >= registry.next_seq() {
            return true;
        }
    }
}
