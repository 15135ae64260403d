//! Listening streams: which stream listens to which event registration, and each stream's
//! bounded queue. A client listens to all its registrations on one stream per connection,
//! so a transition told to many registrations of one client is queued, and written, once
//! for that stream with the list of registrations it is for. A stream too slow for its
//! queue is marked behind and catches up from the event ring (or is told of the gap), so
//! it never slows the registry.

use courier_protocol::{InterestId, Notification};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// Transitions a listening stream may have waiting before it is marked behind.
pub const LISTENING_QUEUE: usize = 256;

/// A listening stream's number, unique in this process.
pub type StreamId = u64;

/// What a listening stream's queue holds.
#[derive(Debug)]
pub enum Heard {
    /// A notification for these registrations of the stream.
    Told {
        /// The registrations told of it.
        ids: Vec<InterestId>,
        /// The notification, shared by every stream told of it.
        notification: Arc<Notification>,
    },
    /// Listening to a registration on the stream ended: the registration was cancelled or
    /// lapsed, or another stream took it over.
    Ended {
        /// The registration.
        id: InterestId,
        /// Which listen of it ended (as [`Registry::listen`](super::Registry::listen)
        /// numbered it): an end heard after the stream listened to it again is stale.
        generation: u64,
    },
}

/// A listening stream's side: its queue, and whether it fell behind it (then it reads the
/// ring again, and asks which of its registrations it still listens to).
#[derive(Debug)]
pub struct ListeningFeed {
    /// Its number, for [`Registry::listen`](super::Registry::listen).
    pub stream: StreamId,
    /// What it is told, in order; ends when the registry lets the stream go.
    pub rx: mpsc::Receiver<Heard>,
    /// Set when something could not be queued.
    pub behind: Arc<AtomicBool>,
}

/// The registry's side of a listening stream.
#[derive(Debug)]
struct Sink {
    tx: mpsc::Sender<Heard>,
    behind: Arc<AtomicBool>,
    ids: HashSet<InterestId>,
}

impl Sink {
    fn send(&self, heard: Heard) {
        if self.tx.try_send(heard).is_err() {
            self.behind.store(true, Ordering::Relaxed);
        }
    }
}

/// Which stream listens to which registration.
#[derive(Debug, Default)]
pub(super) struct ListeningBook {
    streams: HashMap<StreamId, Sink>,
    /// The stream listening to each registration, and which listen that is.
    of: HashMap<InterestId, (StreamId, u64)>,
    next_stream: StreamId,
    next_generation: u64,
}

impl ListeningBook {
    /// A new listening stream.
    pub fn open(&mut self) -> ListeningFeed {
        let (tx, rx) = mpsc::channel(LISTENING_QUEUE);
        let behind = Arc::new(AtomicBool::new(false));
        let stream = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            stream,
            Sink {
                tx,
                behind: behind.clone(),
                ids: HashSet::new(),
            },
        );
        ListeningFeed { stream, rx, behind }
    }

    /// Lets `stream` go, and every registration it listened to.
    pub fn close(&mut self, stream: StreamId) {
        if let Some(sink) = self.streams.remove(&stream) {
            for id in sink.ids {
                self.of.remove(&id);
            }
        }
    }

    /// `stream` now listens to `id`; a stream that listened to it before is told it ended.
    /// Returns the number of this listen.
    pub fn listen(&mut self, id: InterestId, stream: StreamId) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some((before, was)) = self.of.insert(id, (stream, generation))
            && before != stream
            && let Some(sink) = self.streams.get_mut(&before)
        {
            sink.ids.remove(&id);
            sink.send(Heard::Ended {
                id,
                generation: was,
            });
        }
        if let Some(sink) = self.streams.get_mut(&stream) {
            sink.ids.insert(id);
        }
        generation
    }

    /// `stream` no longer listens to `id` (if it did).
    pub fn unlisten(&mut self, id: InterestId, stream: StreamId) {
        if self.listens(&id, stream) {
            self.of.remove(&id);
            if let Some(sink) = self.streams.get_mut(&stream) {
                sink.ids.remove(&id);
            }
        }
    }

    /// Whether `stream` listens to `id`.
    pub fn listens(&self, id: &InterestId, stream: StreamId) -> bool {
        self.of.get(id).is_some_and(|(s, _)| *s == stream)
    }

    /// `id` ended: its stream, if any, is told so.
    pub fn ended(&mut self, id: &InterestId) {
        if let Some((stream, generation)) = self.of.remove(id)
            && let Some(sink) = self.streams.get_mut(&stream)
        {
            sink.ids.remove(id);
            sink.send(Heard::Ended {
                id: *id,
                generation,
            });
        }
    }

    /// Whether no stream listens to anything.
    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// The stream listening to `id`, if any.
    pub fn stream_of(&self, id: &InterestId) -> Option<StreamId> {
        self.of.get(id).map(|(s, _)| *s)
    }

    /// Queues `notification` for `ids` of `stream`; a stream whose queue is full is marked
    /// behind, one that is gone is let go.
    pub fn tell(
        &mut self,
        stream: StreamId,
        ids: Vec<InterestId>,
        notification: Arc<Notification>,
    ) {
        let Some(sink) = self.streams.get(&stream) else {
            return;
        };
        match sink.tx.try_send(Heard::Told { ids, notification }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => sink.behind.store(true, Ordering::Relaxed),
            Err(mpsc::error::TrySendError::Closed(_)) => self.close(stream),
        }
    }

    /// Marks every stream behind.
    pub fn all_behind(&self) {
        for sink in self.streams.values() {
            sink.behind.store(true, Ordering::Relaxed);
        }
    }
}
