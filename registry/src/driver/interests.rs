//! Leased event registrations through the driver: the book of registrations under a lock
//! of its own (matching never holds the state's lock that renewals take), and the fan-out
//! of each transition to the listening streams it concerns (see `listening.rs`).

use super::Registry;
use super::listening::{ListeningFeed, StreamId};
use crate::core::events::EventRecord;
use crate::core::interests::{InterestError, InterestMatcher, notification};
use courier_protocol::{Interest, InterestGrant, InterestId, NotificationBatch, VendorKey};
use std::collections::HashMap;
use std::sync::Arc;

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
        self.listeners().ended(&id);
        Ok(())
    }

    /// A new listening stream, on which a client listens to any of its registrations.
    pub fn open_listening(&self) -> ListeningFeed {
        self.listeners().open()
    }

    /// Lets a listening stream go, with what it listened to.
    pub fn close_listening(&self, stream: StreamId) {
        self.listeners().close(stream);
    }

    /// `stream` listens to `owner`'s registration `id` from now on (a stream that listened
    /// to it before is told it ended): what the registration is told of, and the number of
    /// this listen (see [`Heard::Ended`](super::Heard::Ended)).
    pub fn listen(
        &self,
        owner: VendorKey,
        id: InterestId,
        stream: StreamId,
    ) -> Result<(Arc<InterestMatcher>, u64), InterestError> {
        let matcher = self
            .interests()
            .matcher(self.now(), &id, &owner)
            .ok_or(InterestError::Unknown(id))?;
        let generation = self.listeners().listen(id, stream);
        Ok((matcher, generation))
    }

    /// `stream` stops listening to `id` (the registration lives on).
    pub fn unlisten(&self, id: InterestId, stream: StreamId) {
        self.listeners().unlisten(id, stream);
    }

    /// Whether `stream` still listens to `id` (for a stream that fell behind and may have
    /// missed being told it ended).
    pub fn listens(&self, id: &InterestId, stream: StreamId) -> bool {
        self.listeners().listens(id, stream)
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

    /// Tells every listening stream a transition concerns of it, once per stream with the
    /// registrations it is for; a stream whose queue is full is marked behind. Called by
    /// the server's notification task for each transition.
    pub fn dispatch(&self, rec: &EventRecord) {
        let interests = self.interests();
        let mut listeners = self.listeners();
        if listeners.is_empty() {
            return;
        }
        // Per stream, the registrations told of it as a template match and as a
        // recommendation; one notification of each kind shared by every stream.
        let mut per_stream: HashMap<StreamId, [Vec<InterestId>; 2]> = HashMap::new();
        for (id, as_recommendation) in interests.told(rec) {
            if let Some(stream) = listeners.stream_of(&id) {
                per_stream.entry(stream).or_default()[usize::from(as_recommendation)].push(id);
            }
        }
        drop(interests);
        let shared = [false, true].map(|r| notification(rec, r).map(Arc::new));
        for (stream, kinds) in per_stream {
            for (ids, n) in kinds.into_iter().zip(&shared) {
                if let (false, Some(n)) = (ids.is_empty(), n) {
                    listeners.tell(stream, ids, n.clone());
                }
            }
        }
    }

    /// Marks every listening stream behind (the notification task itself fell behind the
    /// feed).
    pub fn all_listeners_behind(&self) {
        self.listeners().all_behind();
    }

    /// Ends the registrations whose lease ran out, telling their listening streams; returns
    /// how many.
    pub fn expire_interests(&self) -> usize {
        let gone = self.interests().expire(self.now());
        let mut listeners = self.listeners();
        for id in &gone {
            listeners.ended(id);
        }
        gone.len()
    }

    /// How many event registrations there are.
    pub fn interest_count(&self) -> usize {
        self.interests().len()
    }
}
