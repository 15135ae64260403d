//! The lookup cache of a long-running client: a query's candidates are reused while the
//! registry's event feed for their interface says nothing changed (like Jini's
//! `LookupCache`, or a watch-backed cache of etcd). Each cached interface has a live
//! subscription; any event but a renewal (a registration, replacement, cancellation,
//! expiry or revocation), a gap in the feed, or the end of the subscription drops that
//! interface's entries, so a cancelled lease stops being offered within an event's delivery
//! time rather than at the end of a time-to-live. An entry also never outlives the shortest
//! remaining lease among its candidates, nor the configured maximum age.
//!
//! At most [`MAX_WATCHES`] interfaces are watched at once (each subscription holds a stream
//! of the registry connection); watching one more stops the least recently used.
//!
//! An interface the registry would not let the client watch (a cap on subscriptions, a
//! registry shutting down) is not asked again for [`REFUSAL_BACKOFF`]: meanwhile its
//! queries go to the registry each time, uncached.
//!
//! A fill races with invalidations: each interface has a generation, bumped by every
//! invalidation, and a fill is kept only if the generation did not move while it asked.

use courier_protocol::{Candidate, EventKind, InterfaceName, ServiceQuery};
use courier_transport::RegistryClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Most queries kept.
const MAX_ENTRIES: usize = 256;

/// Most interfaces watched at once: each holds a subscription (one stream of the registry
/// connection, which allows 256). Watching one more drops the least recently used.
pub const MAX_WATCHES: usize = 64;

/// How long a new subscription may take to be confirmed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an interface whose subscription failed is left unwatched before trying again.
pub const REFUSAL_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    /// Query (debug form) → (filled at, candidates, unversioned interface).
    entries: HashMap<String, (Instant, Vec<Candidate>, String)>,
    /// Unversioned interface → generation.
    generations: HashMap<String, u64>,
    /// Unversioned interface → the task following its events.
    watches: HashMap<String, Watch>,
    /// Unversioned interface → when its last subscription attempt failed.
    refused: HashMap<String, Instant>,
}

/// The task following one interface's events, and when the cache last used the interface.
struct Watch {
    task: JoinHandle<()>,
    used: Instant,
}

impl Drop for State {
    fn drop(&mut self) {
        for (_, w) in self.watches.drain() {
            w.task.abort();
        }
    }
}

impl State {
    fn invalidate(&mut self, interface: &str) {
        *self.generations.entry(interface.to_string()).or_default() += 1;
        self.entries.retain(|_, (_, _, i)| i != interface);
    }

    fn watched(&self, interface: &str) -> bool {
        self.watches
            .get(interface)
            .is_some_and(|w| !w.task.is_finished())
    }

    fn touch(&mut self, interface: &str) {
        if let Some(w) = self.watches.get_mut(interface) {
            w.used = Instant::now();
        }
    }

    /// Makes room for one more watch: stops the least recently used one (its entries go).
    fn evict_for_one_more(&mut self) {
        while self.watches.len() >= MAX_WATCHES {
            let Some(oldest) = self
                .watches
                .iter()
                .min_by_key(|(_, w)| w.used)
                .map(|(i, _)| i.clone())
            else {
                return;
            };
            if let Some(w) = self.watches.remove(&oldest) {
                w.task.abort();
            }
            self.invalidate(&oldest);
        }
    }
}

/// A fill in progress: where to put the answer, if nothing changed meanwhile.
pub struct Fill {
    key: String,
    interface: String,
    generation: u64,
}

/// The cache (see the module docs).
#[derive(Default)]
pub struct LookupCache {
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LookupCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The candidates kept for `query`, if fresh (younger than `max_age` and than the
    /// shortest remaining lease among them).
    pub fn get(&self, query: &ServiceQuery, max_age: Duration) -> Option<Vec<Candidate>> {
        let key = format!("{query:?}");
        let mut st = lock(&self.state);
        let (at, candidates, interface) = st.entries.get(&key)?;
        let shortest = candidates
            .iter()
            .map(|c| Duration::from_millis(c.remaining_ms))
            .min()
            .unwrap_or(Duration::ZERO);
        if at.elapsed() < max_age.min(shortest) {
            let hit = candidates.clone();
            let interface = interface.clone();
            st.touch(&interface);
            return Some(hit);
        }
        st.entries.remove(&key);
        None
    }

    /// Makes sure `query`'s interface is watched on `registry`, then returns the ticket
    /// under which to [`LookupCache::put`] the registry's answer. `None` when the interface
    /// cannot be watched (bad name, or the registry refused the subscription): then nothing
    /// is cached.
    pub async fn begin(&self, registry: &RegistryClient, query: &ServiceQuery) -> Option<Fill> {
        let interface = query.interface.parse::<InterfaceName>().ok()?.unversioned();
        let watched = {
            let mut st = lock(&self.state);
            if let Some(at) = st.refused.get(&interface) {
                if at.elapsed() < REFUSAL_BACKOFF {
                    return None;
                }
                st.refused.remove(&interface);
            }
            st.touch(&interface);
            st.watched(&interface)
        };
        if !watched && self.watch(registry, &interface).await.is_none() {
            let mut st = lock(&self.state);
            if st.refused.len() >= MAX_ENTRIES {
                st.refused.clear();
            }
            st.refused.insert(interface, Instant::now());
            return None;
        }
        let generation = lock(&self.state)
            .generations
            .get(&interface)
            .copied()
            .unwrap_or(0);
        Some(Fill {
            key: format!("{query:?}"),
            interface,
            generation,
        })
    }

    /// Keeps `candidates` for the query of `fill`, unless its interface changed meanwhile.
    pub fn put(&self, fill: Fill, candidates: &[Candidate]) {
        let mut st = lock(&self.state);
        let current = st.generations.get(&fill.interface).copied().unwrap_or(0);
        let watched = st.watched(&fill.interface);
        if current != fill.generation || !watched || candidates.is_empty() {
            return;
        }
        if st.entries.len() >= MAX_ENTRIES {
            st.entries.clear();
        }
        st.entries.insert(
            fill.key,
            (Instant::now(), candidates.to_vec(), fill.interface),
        );
    }

    /// Number of queries kept.
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// Whether no query is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subscribes to `interface`'s events and starts the task that invalidates on them.
    async fn watch(&self, registry: &RegistryClient, interface: &str) -> Option<()> {
        let subscribe = registry.subscribe(Some(interface.to_string()), u64::MAX);
        let mut events = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe)
            .await
            .ok()?
            .ok()?;
        // The first batch confirms the subscription: from then on no change is missed.
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, events.next())
            .await
            .ok()?
            .ok()??;
        let state: Weak<Mutex<State>> = Arc::downgrade(&self.state);
        let name = interface.to_string();
        let task = tokio::spawn(async move {
            loop {
                let next = events.next().await;
                let Some(state) = state.upgrade() else {
                    return;
                };
                let mut st = lock(&state);
                match next {
                    Ok(Some(batch)) => {
                        let changed = batch.missed.is_some()
                            || batch.events.iter().any(|e| e.kind != EventKind::Renewed);
                        if changed {
                            st.invalidate(&name);
                        }
                    }
                    Ok(None) | Err(_) => {
                        st.invalidate(&name);
                        st.watches.remove(&name);
                        return;
                    }
                }
            }
        });
        let mut st = lock(&self.state);
        st.invalidate(interface);
        if let Some(old) = st.watches.remove(interface) {
            old.task.abort();
        }
        st.evict_for_one_more();
        let watch = Watch {
            task,
            used: Instant::now(),
        };
        st.watches.insert(interface.to_string(), watch);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn query(interface: &str) -> ServiceQuery {
        ServiceQuery {
            interface: interface.into(),
            ..ServiceQuery::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watching_one_interface_too_many_stops_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = courier_registry::RegistryConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        let h = courier_registry::Registry::open(config)
            .unwrap()
            .serve()
            .await
            .unwrap();
        let registry = RegistryClient::connect(h.local_addr(), h.pin(), "test")
            .await
            .unwrap();
        let cache = LookupCache::new();
        for i in 0..MAX_WATCHES {
            assert!(
                cache
                    .begin(&registry, &query(&format!("t:p{i}/api")))
                    .await
                    .is_some()
            );
        }
        // p0 is used again, so p1 is now the least recently used.
        assert!(cache.begin(&registry, &query("t:p0/api")).await.is_some());
        assert!(
            cache
                .begin(&registry, &query("t:extra/api"))
                .await
                .is_some()
        );
        {
            let st = lock(&cache.state);
            assert_eq!(st.watches.len(), MAX_WATCHES);
            assert!(st.watched("t:p0/api") && st.watched("t:extra/api"));
            assert!(!st.watches.contains_key("t:p1/api"));
        }
        h.shutdown().await;
    }

    #[tokio::test]
    async fn an_interface_that_cannot_be_watched_is_not_asked_again_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = courier_registry::RegistryConfig::new(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        let h = courier_registry::Registry::open(config)
            .unwrap()
            .serve()
            .await
            .unwrap();
        let registry = RegistryClient::connect(h.local_addr(), h.pin(), "test")
            .await
            .unwrap();
        let cache = LookupCache::new();
        let query = ServiceQuery {
            interface: "courier:echo/echo".into(),
            ..ServiceQuery::default()
        };

        // Watched: the fill ticket is handed out and the answer kept.
        assert!(cache.begin(&registry, &query).await.is_some());
        assert!(lock(&cache.state).refused.is_empty());

        // A registry that refuses (here: a closed connection) is not asked again while
        // the back-off lasts: the second attempt leaves the refusal's time as it was.
        registry.close();
        let other = ServiceQuery {
            interface: "courier:kv/store".into(),
            ..ServiceQuery::default()
        };
        assert!(cache.begin(&registry, &other).await.is_none());
        let first = lock(&cache.state).refused["courier:kv/store"];
        assert!(cache.begin(&registry, &other).await.is_none());
        assert_eq!(lock(&cache.state).refused["courier:kv/store"], first);

        // Once the back-off is over, it is tried again.
        lock(&cache.state)
            .refused
            .insert("courier:kv/store".into(), first - REFUSAL_BACKOFF);
        assert!(cache.begin(&registry, &other).await.is_none());
        assert!(lock(&cache.state).refused["courier:kv/store"] > first);
        h.shutdown().await;
    }
}
