//! Leased event registrations through the driver: the book of registrations under a lock
//! of its own (matching never holds the state's lock that renewals take), the listeners'
//! bounded queues, and the fan-out of each transition to the listeners it concerns. A
//! listener too slow for its queue is marked behind and catches up from the event ring
//! (or is told of the gap), so it never slows the registry.

use super::Registry;
use crate::core::events::EventRecord;
use crate::core::interests::{InterestError, InterestMatcher, notification};
use courier_protocol::{
    Interest, InterestGrant, InterestId, Notification, NotificationBatch, VendorKey,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// Notifications one listener may have waiting before it is marked behind.
pub const LISTENER_QUEUE: usize = 256;

/// A listener's side of its registration: live notifications, and whether it fell behind
/// (then it reads the ring from where it is).
#[derive(Debug)]
pub struct ListenerFeed {
    /// Live notifications, in order, each shared by every listener told of it; ends when
    /// the registration does.
    pub rx: mpsc::Receiver<Arc<Notification>>,
    /// Set when a notification could not be queued.
    pub behind: Arc<AtomicBool>,
    /// What the registration is told of.
    pub matcher: Arc<InterestMatcher>,
}

/// The registry's side of a listener.
#[derive(Debug)]
pub(super) struct Listener {
    tx: mpsc::Sender<Arc<Notification>>,
    behind: Arc<AtomicBool>,
}

impl Registry {
    fn facts_of(&self, key: &VendorKey) -> Option<std::collections::BTreeMap<String, String>> {
        let client = self.state().client(key)?;
        Some(client.system.map(|s| s.facts).unwrap_or_default())
    }

    /// Registers `owner`'s interest in `interest`, under a lease. Memory only.
    pub fn register_interest(
        &self,
        owner: VendorKey,
        interest: &Interest,
    ) -> Result<InterestGrant, InterestError> {
        let facts = self.facts_of(&owner);
        let id = InterestId(rand::random());
        let now = self.now();
        let ttl_ms = self.interests().register(now, id, owner, interest, facts)?;
        Ok(InterestGrant {
            id,
            ttl_ms,
            next_seq: self.next_seq(),
        })
    }

    /// Renews `owner`'s registration `id`. Memory only.
    pub fn renew_interest(
        &self,
        owner: VendorKey,
        id: InterestId,
        ttl_ms: u64,
    ) -> Result<InterestGrant, InterestError> {
        let facts = self.facts_of(&owner);
        let ttl_ms = self
            .interests()
            .renew(self.now(), id, &owner, ttl_ms, facts)?;
        Ok(InterestGrant {
            id,
            ttl_ms,
            next_seq: self.next_seq(),
        })
    }

    /// Ends `owner`'s registration `id`, and its listener. Memory only.
    pub fn cancel_interest(&self, owner: VendorKey, id: InterestId) -> Result<(), InterestError> {
        self.interests().cancel(id, &owner)?;
        self.listeners().remove(&id);
        Ok(())
    }

    /// Starts listening to `owner`'s registration `id` (a listener already there is
    /// replaced: its feed ends).
    pub fn listen(&self, owner: VendorKey, id: InterestId) -> Result<ListenerFeed, InterestError> {
        let matcher = self
            .interests()
            .matcher(self.now(), &id, &owner)
            .ok_or(InterestError::Unknown(id))?;
        let (tx, rx) = mpsc::channel(LISTENER_QUEUE);
        let behind = Arc::new(AtomicBool::new(false));
        self.listeners().insert(
            id,
            Listener {
                tx,
                behind: behind.clone(),
            },
        );
        Ok(ListenerFeed {
            rx,
            behind,
            matcher,
        })
    }

    /// What `matcher` is told of the events the ring keeps from `from_seq` on (at most
    /// `max`), and the number to go on from.
    pub fn notifications_since(
        &self,
        matcher: &InterestMatcher,
        from_seq: u64,
        max: usize,
    ) -> (NotificationBatch, u64) {
        self.state().notifications_since(matcher, from_seq, max)
    }

    /// Tells every listener a transition concerns of it; one whose queue is full is marked
    /// behind. Called by the server's notification task for each transition.
    pub fn dispatch(&self, rec: &EventRecord) {
        let interests = self.interests();
        let mut listeners = self.listeners();
        if listeners.is_empty() {
            return;
        }
        // One notification per kind for all the listeners told of it.
        let (mut templated, mut recommended) = (None, None);
        for (id, as_recommendation) in interests.told(rec) {
            let Some(l) = listeners.get(&id) else {
                continue;
            };
            let shared = if as_recommendation {
                &mut recommended
            } else {
                &mut templated
            };
            if shared.is_none() {
                *shared = notification(rec, as_recommendation).map(Arc::new);
            }
            let Some(n) = shared.clone() else {
                continue;
            };
            match l.tx.try_send(n) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => l.behind.store(true, Ordering::Relaxed),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    listeners.remove(&id);
                }
            }
        }
    }

    /// Marks every listener behind (the notification task itself fell behind the feed).
    pub fn all_listeners_behind(&self) {
        for l in self.listeners().values() {
            l.behind.store(true, Ordering::Relaxed);
        }
    }

    /// Ends the registrations whose lease ran out, and their listeners; returns how many.
    pub fn expire_interests(&self) -> usize {
        let gone = self.interests().expire(self.now());
        let mut listeners = self.listeners();
        for id in &gone {
            listeners.remove(id);
        }
        gone.len()
    }

    /// How many event registrations there are.
    pub fn interest_count(&self) -> usize {
        self.interests().len()
    }
}
