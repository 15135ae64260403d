//! The connection's listening stream: every [`Listener`] of a connection shares one QUIC
//! stream (as etcd's watchers share one gRPC stream), opened by the first `Listen` and
//! carrying the later `Listen` and `Unlisten` frames. A reader task hands each frame's
//! batch to the listeners it names; a writer task sends the control frames. A listener
//! that does not read keeps at most [`LISTENER_BACKLOG`] batches; past that it drops what
//! comes and is told of the gap when it reads again, so one idle listener never holds up
//! the others.

use super::{ClientError, RegistryClient};
use crate::{FrameBuffer, TransportError, write_frame};
use courier_protocol::{InterestId, ListenFrame, NotificationBatch, Request, Response, WireError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, mpsc};

/// Batches a listener may have waiting; past that it is told of a gap instead.
pub const LISTENER_BACKLOG: usize = 1024;

/// A listener of a registration of interest.
#[derive(Debug)]
pub struct Listener {
    id: InterestId,
    slot: Arc<Slot>,
    stream: Arc<Shared>,
}

impl Listener {
    /// The next batch of notifications (the first: what the registry kept from where the
    /// listener asked, possibly empty); `None` when the registration ended (cancelled,
    /// lapsed, taken over by another listener) or the connection did.
    pub async fn next(&mut self) -> Result<Option<NotificationBatch>, ClientError> {
        loop {
            {
                let mut q = self.slot.queue();
                if let Some(b) = q.batches.pop_front() {
                    return Ok(Some(b));
                }
                if let Some(missed) = q.gap.take() {
                    return Ok(Some(NotificationBatch {
                        notifications: Vec::new(),
                        missed: Some(missed),
                    }));
                }
                match q.end.take() {
                    Some(End::Refused(e)) => {
                        q.end = Some(End::Finished);
                        return Err(ClientError::Registry(e));
                    }
                    Some(End::Broken(why)) => {
                        q.end = Some(End::Finished);
                        return Err(ClientError::Unexpected(why));
                    }
                    Some(End::Finished) => {
                        q.end = Some(End::Finished);
                        return Ok(None);
                    }
                    None => {}
                }
            }
            // A notification between the check and here is kept as a permit.
            self.slot.ready.notified().await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut slots = self.stream.slots();
        if slots
            .get(&self.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            slots.remove(&self.id);
            let _ = self.stream.control.send(Request::Unlisten { id: self.id });
        }
    }
}

impl RegistryClient {
    /// Listens to a registration of interest from `from_seq` (`u64::MAX`: new ones only),
    /// on the connection's listening stream. A listener of the same registration already
    /// on this connection ends.
    pub async fn listen(&self, id: InterestId, from_seq: u64) -> Result<Listener, ClientError> {
        let stream = {
            let mut open = self.listening.lock().await;
            match open.as_ref() {
                Some(s) if s.is_open() => s.clone(),
                _ => {
                    let s = open_stream(&self.conn).await?;
                    *open = Some(s.clone());
                    s
                }
            }
        };
        let slot = stream.add(id);
        stream
            .control
            .send(Request::Listen { id, from_seq })
            .map_err(|_| TransportError::Truncated)?;
        Ok(Listener { id, slot, stream })
    }
}

/// The listening stream, shared by its listeners and its tasks.
#[derive(Debug)]
pub(super) struct Shared {
    /// Control frames for the writer task; closed once the stream is gone.
    control: mpsc::UnboundedSender<Request>,
    slots: Mutex<HashMap<InterestId, Arc<Slot>>>,
    /// Cleared when the registry's side of the stream ended.
    open: AtomicBool,
}

impl Shared {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed) && !self.control.is_closed()
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<InterestId, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new slot for `id`, awaiting its `Started`; the one it replaces ends.
    fn add(&self, id: InterestId) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        if let Some(old) = self.slots().insert(id, slot.clone()) {
            old.end(End::Finished);
        }
        slot
    }

    /// Every listener ends (the stream did).
    fn end_all(&self, end: &End) {
        self.open.store(false, Ordering::Relaxed);
        for (_, slot) in self.slots().drain() {
            slot.end(end.clone());
        }
    }
}

/// Why a listener's batches ended.
#[derive(Debug, Clone)]
enum End {
    Finished,
    Refused(WireError),
    Broken(&'static str),
}

/// One listener's queue.
#[derive(Debug, Default)]
struct Slot {
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    /// Its `Started` has come: batches before it belong to an earlier listen.
    started: bool,
    batches: VecDeque<NotificationBatch>,
    /// Sequence numbers dropped since the queue was full, `[from, to)`.
    gap: Option<(u64, u64)>,
    end: Option<End>,
}

impl Slot {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, batch: NotificationBatch, start: bool) {
        let mut q = self.queue();
        if start {
            q.started = true;
        } else if !q.started || q.end.is_some() {
            return;
        }
        if q.gap.is_some() || q.batches.len() >= LISTENER_BACKLOG {
            q.gap = widen(q.gap, &batch);
        } else {
            q.batches.push_back(batch);
        }
        drop(q);
        self.ready.notify_one();
    }

    fn end(&self, end: End) {
        self.queue().end.get_or_insert(end);
        self.ready.notify_one();
    }
}

/// `gap` widened by what `batch` holds or says it missed.
fn widen(gap: Option<(u64, u64)>, batch: &NotificationBatch) -> Option<(u64, u64)> {
    let seqs = batch.notifications.iter().map(|n| (n.seq, n.seq + 1));
    seqs.chain(batch.missed)
        .chain(gap)
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

/// Opens a listening stream and starts its tasks; its first control frame (a `Listen`)
/// opens it at the registry.
async fn open_stream(conn: &quinn::Connection) -> Result<Arc<Shared>, ClientError> {
    let (mut send, recv) = conn.open_bi().await.map_err(TransportError::from)?;
    let (control, mut rx) = mpsc::unbounded_channel::<Request>();
    let shared = Arc::new(Shared {
        control,
        slots: Mutex::default(),
        open: AtomicBool::new(true),
    });
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            if write_frame(&mut send, &req).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    });
    tokio::spawn(read_stream(recv, Arc::downgrade(&shared)));
    Ok(shared)
}

/// Hands each frame to the listeners it names, until the stream ends; then ends them all.
async fn read_stream(mut recv: quinn::RecvStream, shared: std::sync::Weak<Shared>) {
    let mut frames = FrameBuffer::new();
    let end = loop {
        let frame = frames
            .read::<Response>(&mut recv, super::MAX_RESPONSE)
            .await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match frame {
            Ok(Some(Response::Listening(frame))) => deliver(&shared, frame),
            Ok(None) => break End::Finished,
            Ok(Some(Response::Error(e))) => break End::Refused(e),
            Ok(Some(_)) => break End::Broken("expected Listening"),
            Err(_) => break End::Broken("listening stream broke"),
        }
    };
    if let Some(shared) = shared.upgrade() {
        shared.end_all(&end);
    }
}

fn deliver(shared: &Shared, frame: ListenFrame) {
    match frame {
        ListenFrame::Started { id, batch } => {
            if let Some(slot) = shared.slots().get(&id) {
                slot.push(batch, true);
            }
        }
        ListenFrame::Batch { ids, batch } => {
            let slots = shared.slots();
            let mut told: Vec<&Arc<Slot>> = ids.iter().filter_map(|id| slots.get(id)).collect();
            let last = told.pop();
            for slot in told {
                slot.push(batch.clone(), false);
            }
            if let Some(slot) = last {
                slot.push(batch, false);
            }
        }
        ListenFrame::Ended { id, error } => {
            let mut slots = shared.slots();
            // An end for a listen not yet started belongs to the listen it replaced.
            if let Some(slot) = slots.get(&id)
                && (error.is_some() || slot.queue().started)
            {
                let slot = slots.remove(&id);
                drop(slots);
                if let Some(slot) = slot {
                    slot.end(error.map_or(End::Finished, End::Refused));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::{LeaseId, Notification, Transition};

    fn batch(seq: u64) -> NotificationBatch {
        NotificationBatch {
            notifications: vec![Notification {
                seq,
                transition: Transition::Appeared,
                recommended: false,
                lease: LeaseId([0; 16]),
                name: "acme/echo".into(),
                interfaces: Vec::new(),
                at_ms: 0,
            }],
            missed: None,
        }
    }

    fn drain(slot: &Slot) -> Vec<NotificationBatch> {
        slot.queue().batches.drain(..).collect()
    }

    #[test]
    fn batches_before_the_start_belong_to_an_earlier_listen() {
        let slot = Slot::default();
        slot.push(batch(7), false);
        slot.push(batch(3), true);
        slot.push(batch(8), false);
        let seqs: Vec<u64> = drain(&slot)
            .iter()
            .map(|b| b.notifications[0].seq)
            .collect();
        assert_eq!(seqs, vec![3, 8]);
    }

    #[tokio::test]
    async fn a_listener_that_does_not_read_is_told_of_the_gap_after_its_backlog() {
        let (control, mut sent) = mpsc::unbounded_channel();
        let stream = Arc::new(Shared {
            control,
            slots: Mutex::default(),
            open: AtomicBool::new(true),
        });
        let id = InterestId([1; 16]);
        let slot = stream.add(id);
        let mut listener = Listener { id, slot, stream };
        let empty = NotificationBatch {
            notifications: Vec::new(),
            missed: None,
        };
        listener.slot.push(empty.clone(), true);
        let last = LISTENER_BACKLOG as u64 + 10;
        for seq in 1..=last {
            listener.slot.push(batch(seq), false);
        }
        assert_eq!(listener.next().await.unwrap(), Some(empty));
        for seq in 1..LISTENER_BACKLOG as u64 {
            let b = listener.next().await.unwrap().unwrap();
            assert_eq!(b.notifications[0].seq, seq);
        }
        // What came once the backlog was full waits behind the gap, told first.
        listener.slot.push(batch(2_000), false);
        let gap = listener.next().await.unwrap().unwrap();
        assert!(gap.notifications.is_empty());
        assert_eq!(gap.missed, Some((LISTENER_BACKLOG as u64, 2_001)));
        listener.slot.push(batch(2_001), false);
        let b = listener.next().await.unwrap().unwrap();
        assert_eq!(b.notifications[0].seq, 2_001);

        // Let go, it stops listening at the registry; its registration lives on.
        drop(listener);
        assert!(matches!(sent.try_recv(), Ok(Request::Unlisten { id: i }) if i == id));
    }
}
