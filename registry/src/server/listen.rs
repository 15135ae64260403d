//! A connection's listening stream: a client listens to all its event registrations on one
//! stream (as etcd's watchers share one gRPC stream), opened by its first `Listen` and
//! followed by more `Listen` and `Unlisten` frames. For each registration it sends what the
//! ring kept from where the client asks, then live notifications; a transition told to
//! many of its registrations goes out as one frame naming them all. A stream that fell
//! behind its queue reads the ring again from where each registration is (told of what the
//! ring no longer has), so it never slows the registry. A registration's listening ends
//! when it is cancelled or lapses, or another stream takes it over.

use super::connection::Session;
use super::respond::{write_msg, write_timed};
use super::wire_errors::{ToWire, not_authenticated};
use crate::core::interests::InterestMatcher;
use crate::driver::{Heard, Registry, StreamId};
use courier_protocol::limits::{MAX_EVENT_BATCH, MAX_LISTEN_IDS, MAX_SMALL_FRAME};
use courier_protocol::{
    ErrorKind, InterestId, ListenFrame, Notification, NotificationBatch, Request, Response,
    WireError, codec,
};
use courier_transport::FrameBuffer;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Bytes of frames gathered from the queue before they are written.
const GATHER: usize = 64 << 10;

/// Serves a listening stream opened by `Listen { id, from_seq }`, until the client finishes
/// it, breaks the protocol, or the registry shuts down.
pub(super) async fn listen(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut frames: FrameBuffer,
    session: &Session,
    id: InterestId,
    from_seq: u64,
) {
    let registry = &*session.shared.registry;
    let feed = registry.open_listening();
    let _close = Closing(registry, feed.stream);
    let (mut rx, behind) = (feed.rx, feed.behind);
    let mut out = Stream {
        send,
        session,
        stream: feed.stream,
        held: HashMap::new(),
        gathered: Vec::new(),
    };
    if out.start(id, from_seq).await.is_err() {
        return;
    }
    let mut shutdown = session.shared.shutdown.clone();
    loop {
        let went_on = tokio::select! {
            _ = shutdown.changed() => break,
            // Cancel-safe: the buffer keeps what it read, and quinn's `read_chunk` takes
            // nothing from the stream when its future is dropped.
            frame = frames.read::<Request>(&mut recv, MAX_SMALL_FRAME) => match frame {
                Ok(None) => break,
                Ok(Some(Request::Listen { id, from_seq })) => out.start(id, from_seq).await,
                Ok(Some(Request::Unlisten { id })) => {
                    registry.unlisten(id, out.stream);
                    out.held.remove(&id);
                    Ok(())
                }
                Ok(Some(_)) => {
                    out.refuse("a listening stream carries only Listen and Unlisten").await;
                    break;
                }
                Err(e) => {
                    out.refuse(e).await;
                    break;
                }
            },
            heard = rx.recv() => {
                let Some(heard) = heard else { break };
                out.heard(heard);
                while out.gathered.len() < GATHER
                    && let Ok(heard) = rx.try_recv()
                {
                    out.heard(heard);
                }
                out.flush().await
            }
        };
        if went_on.is_err() {
            return;
        }
        if behind.swap(false, Ordering::Relaxed) && out.catch_up_all().await.is_err() {
            return;
        }
    }
    let _ = out.send.finish();
}

/// Lets the listening stream go when its task ends, however it ends.
struct Closing<'a>(&'a Registry, StreamId);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close_listening(self.1);
    }
}

/// A registration listened to on the stream.
struct Held {
    matcher: Arc<InterestMatcher>,
    /// The next sequence number it is to be told of.
    next: u64,
    /// Which `listen` of it this is (an end heard for an earlier one is stale).
    generation: u64,
}

/// The stream's writing side and what it listens to.
struct Stream<'a> {
    send: quinn::SendStream,
    session: &'a Session,
    stream: StreamId,
    held: HashMap<InterestId, Held>,
    /// Encoded frames not yet written.
    gathered: Vec<u8>,
}

impl Stream<'_> {
    /// Starts listening to `id` from `from_seq`: what the ring kept (always one batch, even
    /// empty: the acknowledgement), or the refusal.
    async fn start(&mut self, id: InterestId, from_seq: u64) -> Result<(), ()> {
        let registry = &self.session.shared.registry;
        let listened = match (self.session.admit(), self.session.auth.get()) {
            (Err(why), _) => Err(WireError::new(ErrorKind::Busy, why)),
            (Ok(()), None) => Err(not_authenticated()),
            (Ok(()), Some(key)) => registry
                .listen(*key, id, self.stream)
                .map_err(|e| e.to_wire()),
        };
        match listened {
            Ok((matcher, generation)) => {
                let held = Held {
                    matcher,
                    next: from_seq,
                    generation,
                };
                self.held.insert(id, held);
                self.catch_up(id, true).await
            }
            Err(e) => {
                tracing::warn!(peer = %self.session.peer, kind = ?e.kind, "listen refused: {}", e.message);
                self.held.remove(&id);
                self.gather(ListenFrame::Ended { id, error: Some(e) });
                self.flush().await
            }
        }
    }

    /// Gathers the frames for what the stream heard.
    fn heard(&mut self, heard: Heard) {
        match heard {
            Heard::Told { ids, notification } => self.told(ids, &notification),
            Heard::Ended { id, generation } => {
                if self
                    .held
                    .get(&id)
                    .is_some_and(|h| h.generation == generation)
                {
                    self.held.remove(&id);
                    self.gather(ListenFrame::Ended { id, error: None });
                }
            }
        }
    }

    /// Gathers `n` for those of `ids` that have not been told of it yet, in frames of at
    /// most [`MAX_LISTEN_IDS`] registrations.
    fn told(&mut self, ids: Vec<InterestId>, n: &Notification) {
        let mut due = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(h) = self.held.get_mut(&id)
                && n.seq >= h.next
            {
                h.next = n.seq + 1;
                due.push(id);
            }
        }
        for ids in due.chunks(MAX_LISTEN_IDS) {
            let batch = NotificationBatch {
                notifications: vec![n.clone()],
                missed: None,
            };
            let ids = ids.to_vec();
            self.gather(ListenFrame::Batch { ids, batch });
        }
    }

    fn gather(&mut self, frame: ListenFrame) {
        self.gathered
            .extend(codec::encode_frame(&Response::Listening(frame)));
    }

    /// Writes what was gathered.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let (peer, timeout) = (
            self.session.peer,
            self.session.shared.config.response_timeout,
        );
        write_timed(
            &mut self.send,
            std::mem::take(&mut self.gathered),
            timeout,
            peer,
        )
        .await
    }

    /// After the stream fell behind: each registration it listens to reads the ring from
    /// where it is, and those it no longer listens to are told they ended.
    async fn catch_up_all(&mut self) -> Result<(), ()> {
        let registry = &self.session.shared.registry;
        let ids: Vec<InterestId> = self.held.keys().copied().collect();
        for id in ids {
            if registry.listens(&id, self.stream) {
                self.catch_up(id, false).await?;
            } else {
                self.held.remove(&id);
                self.gather(ListenFrame::Ended { id, error: None });
            }
        }
        self.flush().await
    }

    /// Sends what the ring holds for `id` from where it is on, in batches, until level
    /// (when `first`, the first batch, even empty, is the listen's `Started`).
    async fn catch_up(&mut self, id: InterestId, first: bool) -> Result<(), ()> {
        let registry = &self.session.shared.registry;
        let mut must_send = first;
        loop {
            let Some(h) = self.held.get_mut(&id) else {
                return Ok(());
            };
            let (batch, n) = registry.notifications_since(&h.matcher, h.next, MAX_EVENT_BATCH);
            let progressed = n > h.next;
            h.next = n;
            if must_send {
                self.gather(ListenFrame::Started { id, batch });
                self.flush().await?;
            } else if !batch.notifications.is_empty() || batch.missed.is_some() {
                self.gather(ListenFrame::Batch {
                    ids: vec![id],
                    batch,
                });
                self.flush().await?;
            }
            must_send = false;
            if !progressed || n >= registry.next_seq() {
                return Ok(());
            }
        }
    }

    /// Answers a frame the stream does not carry with `BadFrame`.
    async fn refuse(&mut self, why: impl std::fmt::Display) {
        let e = WireError::new(ErrorKind::BadFrame, why.to_string());
        tracing::warn!(peer = %self.session.peer, "listening stream refused: {}", e.message);
        let (peer, timeout) = (
            self.session.peer,
            self.session.shared.config.response_timeout,
        );
        let _ = write_msg(&mut self.send, &Response::Error(e), timeout, peer).await;
    }
}
