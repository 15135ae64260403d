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
//! of the registry connection). Watching one more stops the least recently used, if that
//! one has been idle for [`EVICT_IDLE`]; otherwise the new interface goes uncached, so a
//! client cycling through more interfaces than that does not pay a subscription per call.
//! One subscription attempt per interface runs at a time; the calls that meet it go to the
//! registry uncached meanwhile.
//!
//! An interface the registry would not let the client watch (a cap on subscriptions, a
//! registry shutting down) is not asked again for [`REFUSAL_BACKOFF`]: meanwhile its
//! queries go to the registry each time, uncached.
//!
//! The same events end what the sandbox keeps for a lease ([`Holdings`]): an expiry,
//! cancellation or revocation ends that lease's holdings, a gap in the feed every holding
//! of the interface.
//!
//! A fill races with invalidations: each watch has a generation, taken from one counter
//! that only grows and changed by every invalidation, and a fill is kept only if the same
//! watch is still there with the same generation as when it asked.

use crate::discard::Holdings;
use courier_protocol::{Candidate, EventKind, InterfaceName, LeaseId, ServiceQuery};
use courier_transport::{EventStream, RegistryClient};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Most queries kept.
const MAX_ENTRIES: usize = 256;

/// Most interfaces watched at once: each holds a subscription (one stream of the registry
/// connection, which allows 256).
pub const MAX_WATCHES: usize = 64;

/// How long the least recently used watch must have been idle to give way to a new one.
pub const EVICT_IDLE: Duration = Duration::from_secs(1);

/// How long a new subscription may take to be opened and confirmed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an interface whose subscription failed is left unwatched before trying again.
pub const REFUSAL_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    /// Query → (filled at, candidates, unversioned interface).
    entries: HashMap<ServiceQuery, (Instant, Vec<Candidate>, String)>,
    /// Unversioned interface → its watch.
    watches: HashMap<String, Watch>,
    /// Interfaces with a subscription attempt under way.
    subscribing: HashSet<String>,
    /// Unversioned interface → when its last subscription attempt failed.
    refused: HashMap<String, Instant>,
    /// The counter watch ids and generations are drawn from (never reused).
    counter: u64,
}

/// One watched interface: the task following its events, its generation, and when the
/// cache last used it.
struct Watch {
    id: u64,
    generation: u64,
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
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn watched(&self, interface: &str) -> bool {
        self.watches
            .get(interface)
            .is_some_and(|w| !w.task.is_finished())
    }

    /// Something changed for the watch `id` of `interface`: its entries go, and fills begun
    /// before are refused. A watch that was replaced meanwhile is left alone.
    fn invalidate(&mut self, interface: &str, id: u64) {
        let generation = self.next();
        match self.watches.get_mut(interface) {
            Some(w) if w.id == id => w.generation = generation,
            _ => return,
        }
        self.entries.retain(|_, (_, _, i)| i != interface);
    }

    /// Stops the watch `id` of `interface` (if it is still that one) and drops its entries.
    fn unwatch(&mut self, interface: &str, id: u64) {
        if self.watches.get(interface).is_some_and(|w| w.id == id) {
            if let Some(w) = self.watches.remove(interface) {
                w.task.abort();
            }
            self.entries.retain(|_, (_, _, i)| i != interface);
        }
    }

    /// The least recently used watch, if one more would exceed the cap.
    fn over_cap(&self) -> Option<(String, u64, Instant)> {
        if self.watches.len() < MAX_WATCHES {
            return None;
        }
        self.watches
            .iter()
            .min_by_key(|(_, w)| w.used)
            .map(|(i, w)| (i.clone(), w.id, w.used))
    }

    fn fill(&mut self, query: &ServiceQuery, interface: String) -> Option<Fill> {
        let w = self.watches.get_mut(&interface)?;
        if w.task.is_finished() {
            return None;
        }
        w.used = Instant::now();
        Some(Fill {
            key: query.clone(),
            watch: w.id,
            generation: w.generation,
            interface,
        })
    }
}

/// A fill in progress: where to put the answer, if nothing changed meanwhile.
pub struct Fill {
    key: ServiceQuery,
    interface: String,
    watch: u64,
    generation: u64,
}

/// The cache (see the module docs).
#[derive(Default)]
pub struct LookupCache {
    state: Arc<Mutex<State>>,
    /// What the sandbox keeps for leases, told when one ends.
    holdings: Option<Arc<Holdings>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LookupCache {
    /// An empty cache.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache that also tells `holdings` of each lease that ends.
    pub fn with_holdings(holdings: Arc<Holdings>) -> Self {
        Self {
            state: Arc::default(),
            holdings: Some(holdings),
        }
    }

    /// The candidates kept for `query`, if fresh (younger than `max_age` and than the
    /// shortest remaining lease among them).
    pub fn get(&self, query: &ServiceQuery, max_age: Duration) -> Option<Vec<Candidate>> {
        let mut st = lock(&self.state);
        let (at, candidates, interface) = st.entries.get(query)?;
        let shortest = candidates
            .iter()
            .map(|c| Duration::from_millis(c.remaining_ms))
            .min()
            .unwrap_or(Duration::ZERO);
        if at.elapsed() < max_age.min(shortest) {
            let hit = candidates.clone();
            let interface = interface.clone();
            if let Some(w) = st.watches.get_mut(&interface) {
                w.used = Instant::now();
            }
            return Some(hit);
        }
        st.entries.remove(query);
        None
    }

    /// Makes sure `query`'s interface is watched on `registry`, then returns the ticket
    /// under which to [`LookupCache::put`] the registry's answer. `None` when the interface
    /// is not watched and cannot be now (bad name, a refusal within the back-off, another
    /// call subscribing to it, every watch slot busy, or the registry refused): then
    /// nothing is cached.
    pub async fn begin(&self, registry: &RegistryClient, query: &ServiceQuery) -> Option<Fill> {
        let interface = query.interface.parse::<InterfaceName>().ok()?.unversioned();
        {
            let mut st = lock(&self.state);
            if st.watched(&interface) {
                return st.fill(query, interface);
            }
            if st
                .refused
                .get(&interface)
                .is_some_and(|at| at.elapsed() < REFUSAL_BACKOFF)
                || st.subscribing.contains(&interface)
                || st
                    .over_cap()
                    .is_some_and(|(_, _, used)| used.elapsed() < EVICT_IDLE)
            {
                return None;
            }
            st.subscribing.insert(interface.clone());
        }
        let subscribed = subscribe(registry, &interface).await;
        let mut st = lock(&self.state);
        st.subscribing.remove(&interface);
        let Some(events) = subscribed else {
            if st.refused.len() >= MAX_ENTRIES {
                st.refused.clear();
            }
            st.refused.insert(interface, Instant::now());
            return None;
        };
        st.refused.remove(&interface);
        if let Some((old, id, _)) = st.over_cap() {
            st.unwatch(&old, id);
        }
        let (id, generation) = (st.next(), st.next());
        let watch = Watched {
            state: Arc::downgrade(&self.state),
            holdings: self.holdings.clone(),
            interface: interface.clone(),
            id,
        };
        let task = follow(watch, events);
        if let Some(old) = st.watches.insert(
            interface.clone(),
            Watch {
                id,
                generation,
                task,
                used: Instant::now(),
            },
        ) {
            old.task.abort();
        }
        st.entries.retain(|_, (_, _, i)| *i != interface);
        st.fill(query, interface)
    }

    /// Keeps `candidates` for the query of `fill`, unless its interface changed meanwhile.
    pub fn put(&self, fill: Fill, candidates: &[Candidate]) {
        let mut st = lock(&self.state);
        let same = st.watches.get(&fill.interface).is_some_and(|w| {
            w.id == fill.watch && w.generation == fill.generation && !w.task.is_finished()
        });
        if !same || candidates.is_empty() {
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
}

/// Subscribes to `interface`'s events; `Some` once the registry confirmed the subscription
/// (its first batch), from when no change is missed.
async fn subscribe(registry: &RegistryClient, interface: &str) -> Option<EventStream> {
    let confirmed = async {
        let mut events = registry
            .subscribe(Some(interface.to_string()), u64::MAX)
            .await
            .ok()?;
        events.next().await.ok()??;
        Some(events)
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, confirmed)
        .await
        .ok()?
}

/// What the task following one watch updates.
struct Watched {
    state: Weak<Mutex<State>>,
    holdings: Option<Arc<Holdings>>,
    interface: String,
    id: u64,
}

/// The task of a watch: invalidates its interface on each change, tells the holdings of
/// each lease that ended, and ends the watch when the feed ends.
fn follow(watch: Watched, mut events: EventStream) -> JoinHandle<()> {
    let Watched {
        state,
        holdings,
        interface,
        id,
    } = watch;
    tokio::spawn(async move {
        loop {
            let next = events.next().await;
            let Some(state) = state.upgrade() else {
                return;
            };
            match next {
                Ok(Some(batch)) => {
                    let changed = batch.missed.is_some()
                        || batch.events.iter().any(|e| e.kind != EventKind::Renewed);
                    if changed {
                        lock(&state).invalidate(&interface, id);
                    }
                    if let Some(holdings) = &holdings {
                        if batch.missed.is_some() {
                            holdings.interface_lost(&interface);
                        }
                        for lease in ended(&batch.events) {
                            holdings.lease_ended(&lease);
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    lock(&state).unwatch(&interface, id);
                    return;
                }
            }
        }
    })
}

/// The leases `events` report as over: expired, cancelled or revoked. (A replaced lease's
/// component may be the same as its successor's; it is checked again before any use.)
fn ended(events: &[courier_protocol::Event]) -> impl Iterator<Item = LeaseId> + '_ {
    events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Expired | EventKind::Cancelled | EventKind::Revoked
            )
        })
        .map(|e| e.lease)
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

    /// An empty registry served on loopback, and a client connected to it.
    async fn serving() -> (
        tempfile::TempDir,
        courier_registry::RegistryHandle,
        RegistryClient,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = courier_registry::RegistryConfig::new(dir.path());
        let h = courier_test_support::start_registry(config).await;
        let registry = RegistryClient::connect(h.local_addr(), h.pin(), "test")
            .await
            .unwrap();
        (dir, h, registry)
    }

    /// A candidate of `t:p/api` on lease `[n; 16]`, with `remaining_ms` left.
    fn candidate(n: u8, remaining_ms: u64) -> Candidate {
        Candidate {
            lease: courier_protocol::LeaseId([n; 16]),
            manifest: courier_protocol::SignedManifest {
                bytes: Vec::new(),
                signature: [0; 64],
            },
            interface: "t:p/api@0.1.0".into(),
            remaining_ms,
            freshness: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_watch_too_many_replaces_the_least_recently_used_only_when_idle() {
        let (_dir, h, registry) = serving().await;
        let cache = LookupCache::new();
        for i in 0..MAX_WATCHES {
            assert!(
                cache
                    .begin(&registry, &query(&format!("t:p{i}/api")))
                    .await
                    .is_some()
            );
        }
        // Every watch was just used: a new interface goes uncached rather than evicting.
        assert!(
            cache
                .begin(&registry, &query("t:extra/api"))
                .await
                .is_none()
        );
        {
            let mut st = lock(&cache.state);
            assert_eq!(st.watches.len(), MAX_WATCHES);
            assert!(st.refused.is_empty(), "no room is not a refusal");
            // Age the watches, p1 the most.
            let now = Instant::now();
            for (name, w) in st.watches.iter_mut() {
                let i: u64 = name[3..name.len() - 4].parse().unwrap();
                w.used = now - EVICT_IDLE - Duration::from_secs(100 - i);
            }
        }
        // p0 is used again, so p1 is now the least recently used, and idle.
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fill_begun_before_a_change_is_not_kept() {
        let (_dir, h, registry) = serving().await;
        let cache = LookupCache::new();
        let q = query("t:p/api");
        let stale = cache.begin(&registry, &q).await.unwrap();
        let id = lock(&cache.state).watches["t:p/api"].id;
        lock(&cache.state).invalidate("t:p/api", id);
        cache.put(stale, &[candidate(1, 60_000)]);
        assert_eq!(cache.len(), 0);
        let fresh = cache.begin(&registry, &q).await.unwrap();
        cache.put(fresh, &[candidate(1, 60_000)]);
        assert_eq!(
            cache.get(&q, Duration::from_secs(30)).map(|c| c.len()),
            Some(1)
        );
        h.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_of_one_interface_that_differ_in_anything_are_kept_apart() {
        let (_dir, h, registry) = serving().await;
        let cache = LookupCache::new();
        let plain = query("t:p/api");
        let variants = [
            ServiceQuery {
                version_req: Some("^0.1".into()),
                ..plain.clone()
            },
            ServiceQuery {
                functions: vec!["call".into()],
                ..plain.clone()
            },
            ServiceQuery {
                attributes: vec![courier_protocol::AttributeConstraint::Present(
                    "tier".into(),
                )],
                ..plain.clone()
            },
            ServiceQuery {
                limit: 3,
                ..plain.clone()
            },
        ];
        for (n, q) in std::iter::once(&plain).chain(&variants).enumerate() {
            let fill = cache.begin(&registry, q).await.unwrap();
            cache.put(fill, &[candidate(n as u8, 60_000)]);
        }
        assert_eq!(cache.len(), 5);
        for (n, q) in std::iter::once(&plain).chain(&variants).enumerate() {
            let got = cache.get(q, Duration::from_secs(30)).unwrap();
            assert_eq!(
                got[0].lease,
                courier_protocol::LeaseId([n as u8; 16]),
                "{q:?}"
            );
        }
        h.shutdown().await;
    }

    #[tokio::test]
    async fn an_interface_that_cannot_be_watched_is_not_asked_again_at_once() {
        let (_dir, h, registry) = serving().await;
        let cache = LookupCache::new();
        let query = ServiceQuery {
            interface: "courier:echo/echo".into(),
            ..ServiceQuery::default()
        };

        // Watched: the fill ticket is handed out.
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
