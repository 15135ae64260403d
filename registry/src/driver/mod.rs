//! [`Registry`]: the driver around the pure [`RegistryState`]. It owns what the state
//! machine must not: the locks, the clocks, the random lease ids, the store, and the fan-out
//! of events to live subscribers and of deadline changes to the expiry task.
//!
//! Locks: `state` is held only for work in memory; `writer` serializes everything that
//! commits, is taken before `state`, never after, and is held across the commit (so a plan
//! is applied in the order it was committed). A committed change is planned under both,
//! committed under `writer` alone (renewals and lookups go on meanwhile), then applied under
//! both: commit, then apply, then answer.
//!
//! Blocking: the methods in `writes.rs` and `reads.rs` touch the store (disk IO, fsync)
//! and say so in their docs; the server runs them on the blocking pool, except the bounded
//! manifest read of a lookup ([`Registry::find`]). The methods here work in memory only.

mod children;
mod expiry;
mod held;
mod interests;
mod listening;
mod mirror;
mod people;
mod reads;
mod rollouts;
mod standby;
mod writes;

pub use expiry::EXPIRY_SLICE;
pub use listening::{Heard, LISTENING_QUEUE, ListeningFeed, StreamId};
pub use mirror::{ComponentSource, LinkEvent, RootSource};
pub use rollouts::ROLLOUT_TICK;
pub use standby::Followed;

use crate::config::RegistryConfig;
use crate::core::events::EventRecord;
use crate::core::interests::InterestBook;
use crate::core::lease_table::Millis;
use crate::core::state::{Change, Planned, RegistryState, Restorer};
use crate::errors::{LeaseError, OpenError};
use crate::store::{RedbStore, Storage, StoreError};
use courier_protocol::limits::MAX_EVENT_BATCH;
use courier_protocol::{EventBatch, LeaseGrant, LeaseId, SignedKeyStatement, VendorKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// A registry: the state machine, its store, and the clocks and locks around them. Share it
/// as `Arc<Registry>`.
pub struct Registry {
    config: RegistryConfig,
    store: Box<dyn Storage>,
    state: Mutex<RegistryState>,
    writer: Mutex<()>,
    clock: Clock,
    registry_id: String,
    history_seq: AtomicU64,
    /// Monotonic ms (plus one) of the first commit the store refused as unavailable since
    /// the last that succeeded; 0 while commits succeed.
    unwritable_since: AtomicU64,
    /// A cluster's standby: reads only (see `standby.rs`).
    standby: bool,
    /// In a cluster: this node's name and the writer's, for lease pages.
    cluster: Mutex<Option<courier_protocol::ClusterNodes>>,
    deadline_changed: Notify,
    /// A standby's renewals waiting for their rows (see `held.rs`).
    held: held::HeldWrites,
    live: broadcast::Sender<EventRecord>,
    /// Transitions only (no renewals): event registrations, the dashboard, webhooks.
    transitions: broadcast::Sender<EventRecord>,
    interests: Mutex<InterestBook>,
    listeners: Mutex<listening::ListeningBook>,
    /// Where this registry sits among parents and children (see `children.rs`).
    hierarchy: Mutex<children::Hierarchy>,
    /// A child registry: its link to the parent (see `mirror.rs`).
    mirror: mirror::MirrorLink,
    /// Rollouts that halted, for the webhooks (see `rollouts.rs`).
    rollout_halts: broadcast::Sender<courier_protocol::RolloutRecord>,
    /// Woken when a report may have changed what a rollout must do.
    rollout_reported: Notify,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("registry_id", &self.registry_id)
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// The monotonic clock of a registry, and its wall-clock reading at the origin.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: tokio::time::Instant,
    wall_base_ms: u64,
}

/// How a registry opens on its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenAs {
    /// A start (or an operator's offline command): the restart rule.
    Start,
    /// A cluster node elected writer: the restart rule of a takeover.
    Takeover,
    /// A cluster's standby: the restart rule's view, and reads only.
    Standby,
}

/// The store read through the restart rule.
struct Loaded {
    registry_id: String,
    history_seq: u64,
    state: RegistryState,
    restart: Planned<crate::core::state::Restart>,
    counts: crate::core::state::RestartCounts,
}

/// Reads `store` through the restart rule at wall-clock `wall_now_ms`, which is monotonic
/// time `now` (a takeover's rule if `takeover`). Blocking (store reads).
fn load(
    store: &dyn Storage,
    config: crate::core::state::StateConfig,
    wall_now_ms: u64,
    now: Millis,
    takeover: bool,
) -> Result<Loaded, OpenError> {
    let meta = store.load_meta()?;
    let (registry_id, history_seq) = (meta.registry_id.clone(), meta.history_seq);
    let mut restorer = Restorer::new_at(config, wall_now_ms, now, meta)?;
    if takeover {
        restorer = restorer.takeover();
    }
    let unreadable = store.load_leases(&mut |stored| restorer.restore(stored))?;
    let (state, restart, counts) = restorer.finish(unreadable);
    Ok(Loaded {
        registry_id,
        history_seq,
        state,
        restart,
        counts,
    })
}

/// Proof that the writer lock is held.
struct Writer<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

/// The wall-clock time now, in ms since the Unix epoch.
pub(crate) fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether the earliest deadline moved earlier (the expiry task must wake up).
fn moved_earlier(before: Option<Millis>, after: Option<Millis>) -> bool {
    match (before, after) {
        (None, Some(_)) => true,
        (Some(b), Some(a)) => a < b,
        _ => false,
    }
}

impl Registry {
    /// Opens the registry in `config.data_dir` (redb) at the current wall-clock time, and
    /// applies the restart rule (`core::state::restart`): the start's graces, drops and
    /// marks are committed before it returns.
    pub fn open(config: RegistryConfig) -> Result<Self, OpenError> {
        Self::open_at(config, wall_clock_ms())
    }

    /// [`Registry::open`] with the wall-clock time given (for tests that simulate time).
    pub fn open_at(config: RegistryConfig, wall_now_ms: u64) -> Result<Self, OpenError> {
        let store = Self::open_redb(&config)?;
        Self::open_with(config, store, wall_now_ms)
    }

    /// The redb store in the data directory, once the configuration is checked.
    fn open_redb(config: &RegistryConfig) -> Result<Box<dyn Storage>, OpenError> {
        config.check().map_err(OpenError::Config)?;
        Ok(Box::new(RedbStore::open(
            &config.data_dir,
            config.store_cache_bytes,
        )?))
    }

    /// Opens a registry on another [`Storage`] backend, at wall-clock time `wall_now_ms`.
    pub fn open_with(
        config: RegistryConfig,
        store: Box<dyn Storage>,
        wall_now_ms: u64,
    ) -> Result<Self, OpenError> {
        Self::open_committed(config, store, wall_now_ms, OpenAs::Start)
    }

    /// Opens a cluster's store as its new writer, at the last writer's clock carried on
    /// (`wall_now_ms`): the restart rule of a takeover, where a lease with less than a
    /// grace period left gets the grace, so that its vendor has the time to find this node
    /// (see [`Restorer::takeover`]).
    pub fn open_takeover(
        config: RegistryConfig,
        store: Box<dyn Storage>,
        wall_now_ms: u64,
    ) -> Result<Self, OpenError> {
        Self::open_committed(config, store, wall_now_ms, OpenAs::Takeover)
    }

    fn open_committed(
        config: RegistryConfig,
        store: Box<dyn Storage>,
        wall_now_ms: u64,
        open_as: OpenAs,
    ) -> Result<Self, OpenError> {
        let (registry, restart) = Self::restore(config, store, wall_now_ms, open_as)?;
        registry.store.commit(restart.batch())?;
        registry.state().apply(Millis(0), restart);
        Ok(registry)
    }

    /// Opens without writing anything of the restart rule (an operator's command on a
    /// stopped registry): see [`crate::OfflineRegistry`].
    pub(crate) fn open_offline(
        config: RegistryConfig,
        wall_now_ms: u64,
    ) -> Result<Self, OpenError> {
        let store = Self::open_redb(&config)?;
        let (registry, _restart) = Self::restore(config, store, wall_now_ms, OpenAs::Start)?;
        tracing::debug!("opened offline: the restart rule is left to the next start");
        Ok(registry)
    }

    /// Loads the store through the restart rule; the start's writes are returned, not made.
    fn restore(
        config: RegistryConfig,
        store: Box<dyn Storage>,
        wall_now_ms: u64,
        open_as: OpenAs,
    ) -> Result<(Self, Planned<crate::core::state::Restart>), OpenError> {
        config.check().map_err(OpenError::Config)?;
        // `wall_now_ms` is the wall clock now, so monotonic time starts now too, not after
        // the load: a load that reads a large store, or etcd, would otherwise leave this
        // registry's wall clock behind by as long as it took (lease rows, `last_alive_ms`
        // and a standby's idea of the writer's time all read it).
        let origin = tokio::time::Instant::now();
        let Loaded {
            registry_id,
            history_seq,
            state,
            restart,
            counts,
        } = load(
            &*store,
            config.state(),
            wall_now_ms,
            Millis(0),
            open_as == OpenAs::Takeover,
        )?;
        tracing::info!(
            %registry_id,
            kept = counts.kept,
            graced = counts.graced,
            still_in_grace = counts.still_in_grace,
            dropped = counts.dropped,
            start_seq = counts.start_seq,
            "registry state loaded"
        );
        let (live, _) = broadcast::channel(config.subscriber_buffer.max(1));
        let (transitions, _) = broadcast::channel(config.subscriber_buffer.max(1));
        let registry = Self {
            store,
            state: Mutex::new(state),
            writer: Mutex::new(()),
            clock: Clock {
                origin,
                wall_base_ms: wall_now_ms,
            },
            registry_id,
            history_seq: AtomicU64::new(history_seq),
            unwritable_since: AtomicU64::new(0),
            standby: open_as == OpenAs::Standby,
            cluster: Mutex::new(None),
            deadline_changed: Notify::new(),
            held: held::HeldWrites::default(),
            live,
            transitions,
            interests: Mutex::new(InterestBook::new(config.policy())),
            listeners: Mutex::default(),
            hierarchy: Mutex::default(),
            mirror: mirror::MirrorLink::default(),
            rollout_halts: broadcast::channel(64).0,
            rollout_reported: Notify::new(),
            config,
        };
        Ok((registry, restart))
    }

    fn state(&self) -> MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interests(&self) -> MutexGuard<'_, InterestBook> {
        self.interests.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn listeners(&self) -> MutexGuard<'_, listening::ListeningBook> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> Writer<'_> {
        Writer(self.writer.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` on the state, then tells live subscribers of the events it numbered (under
    /// the same lock, so they arrive in order) and the expiry task of an earlier deadline.
    fn with_state<T>(&self, f: impl FnOnce(&mut RegistryState) -> T) -> T {
        let mut st = self.state();
        let (seq, deadline) = (st.events().next_seq(), st.next_deadline());
        let out = f(&mut st);
        if st.events().next_seq() > seq {
            let (live, transitions) = (
                self.live.receiver_count() > 0,
                self.transitions.receiver_count() > 0,
            );
            if live || transitions {
                for record in st.events().records_from(seq) {
                    if transitions && record.kind != courier_protocol::EventKind::Renewed {
                        let _ = self.transitions.send(record.clone());
                    }
                    if live {
                        let _ = self.live.send(record);
                    }
                }
            }
        }
        if moved_earlier(deadline, st.next_deadline()) {
            self.deadline_changed.notify_one();
        }
        out
    }

    /// Commits a planned change and applies it; the caller holds the writer lock (and
    /// planned the change under it). A failed commit leaves the state as it was.
    fn commit<C: Change>(
        &self,
        _writer: &Writer<'_>,
        now: Millis,
        planned: Planned<C>,
    ) -> Result<C::Applied, StoreError> {
        match self.store.commit(planned.batch()) {
            Ok(()) => {
                let since = self.unwritable_since.swap(0, Ordering::Relaxed);
                if since != 0 {
                    let after = now.0.saturating_sub(since - 1);
                    tracing::warn!(after_ms = after, "the store accepts writes again");
                }
                Ok(self.with_state(|st| st.apply(now, planned)))
            }
            Err(e) => {
                self.state().abandon(planned);
                if matches!(e, StoreError::Unavailable(_))
                    && self
                        .unwritable_since
                        .compare_exchange(0, now.0 + 1, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::error!(
                        "the store refuses writes ({e}): lookups and renewals go on from \
                         memory, registrations and other writes are refused until it is back"
                    );
                }
                Err(e)
            }
        }
    }

    /// How long the store has refused writes at `now` (`None`: the last commit succeeded).
    pub fn unwritable_for(&self, now: Millis) -> Option<Duration> {
        match self.unwritable_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(now.0.saturating_sub(since - 1))),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// This registry's id (made at first open, kept in the store).
    pub fn registry_id(&self) -> &str {
        &self.registry_id
    }

    /// The monotonic time now (milliseconds since the registry opened).
    pub fn now(&self) -> Millis {
        Millis(u64::try_from(self.clock.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The wall-clock time (ms since the Unix epoch) of monotonic time `t`.
    pub fn wall_ms(&self, t: Millis) -> u64 {
        self.clock.wall_base_ms.saturating_add(t.0)
    }

    /// The monotonic instant of monotonic time `t` (for sleeping until it).
    pub fn instant(&self, t: Millis) -> tokio::time::Instant {
        self.clock.origin + Duration::from_millis(t.0)
    }

    /// Notified when a deadline earlier than the previous earliest appears.
    pub fn deadline_changed(&self) -> &Notify {
        &self.deadline_changed
    }

    /// Renews a lease of `key`. Memory only (the new expiry is written by the next flush),
    /// never blocks: if event numbers ran out because the store keeps failing, the renewal
    /// is refused ([`LeaseError::NoHeadroom`]) rather than wait for a commit. A cluster's
    /// standby whose last flush failed refuses (`Unavailable`): the writer, which expires,
    /// would never learn of the renewal, and the vendor should renew at another node.
    pub fn renew(
        &self,
        now: Millis,
        key: &VendorKey,
        lease: LeaseId,
        ttl_ms: u64,
    ) -> Result<LeaseGrant, LeaseError> {
        self.renew_ticketed(now, key, lease, ttl_ms)
            .map(|(grant, _)| grant)
    }

    /// [`Registry::renew`], with the ticket of a standby's renewal (whose row its next
    /// flush writes; see `held.rs`).
    fn renew_ticketed(
        &self,
        now: Millis,
        key: &VendorKey,
        lease: LeaseId,
        ttl_ms: u64,
    ) -> Result<(LeaseGrant, Option<u64>), LeaseError> {
        if self.standby && self.unwritable_for(now).is_some() {
            return Err(LeaseError::Store(StoreError::Unavailable(
                "this node cannot write the renewals it takes now (its etcd is unreachable \
                 from here): renew at another node"
                    .into(),
            )));
        }
        self.with_state(|st| {
            let grant = st.renew(now, key, lease, ttl_ms)?;
            Ok((grant, self.standby.then(|| st.held_ticket())))
        })
    }

    /// The earliest lease deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.state().next_deadline()
    }

    /// Events from `from_seq` matching `interface` (at most [`MAX_EVENT_BATCH`]), the
    /// number to go on from, and a live feed of everything numbered after that. Taken
    /// under one lock, so nothing falls between the batch and the feed.
    pub fn subscribe(
        &self,
        from_seq: u64,
        interface: Option<&str>,
    ) -> (EventBatch, u64, broadcast::Receiver<EventRecord>) {
        let st = self.state();
        let rx = self.live.subscribe();
        let (batch, next) = st.events_since(from_seq, interface, MAX_EVENT_BATCH);
        (batch, next, rx)
    }

    /// Events from `from_seq` matching `interface`, at most [`MAX_EVENT_BATCH`], and the
    /// number to go on from.
    pub fn events_since(&self, from_seq: u64, interface: Option<&str>) -> (EventBatch, u64) {
        self.state()
            .events_since(from_seq, interface, MAX_EVENT_BATCH)
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.state().events().next_seq()
    }

    /// The key statements about `keys` and the keys they rotated to (at most
    /// [`courier_protocol::limits::MAX_STATEMENT_KEYS`] keys are looked at).
    pub fn key_statements(&self, keys: &[VendorKey]) -> Vec<SignedKeyStatement> {
        let keys = &keys[..keys.len().min(courier_protocol::limits::MAX_STATEMENT_KEYS)];
        self.state().key_statements(keys)
    }

    /// The root statements newer than each version asked, and the delegations under them.
    pub fn root_statements(
        &self,
        asked: &[courier_protocol::RootSince],
    ) -> courier_protocol::RootBatch {
        self.state().root_statements(asked)
    }

    /// The key acting for `key` now (the end of its rotation chain), and whether `key` is
    /// revoked.
    pub fn key_status(&self, key: &VendorKey) -> (VendorKey, bool) {
        self.state().key_status(key)
    }

    /// The owner of a service name.
    pub fn owner(&self, name: &str) -> Option<VendorKey> {
        self.state().owner(name)
    }

    /// A feed of transitions (registrations appearing, replaced, gone; no renewals), in
    /// order: what event registrations, the dashboard's live updates and webhooks follow.
    pub fn transitions(&self) -> broadcast::Receiver<EventRecord> {
        self.transitions.subscribe()
    }

    /// Counts: (live leases, registrations, indexed interfaces).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.state().counts()
    }

    /// Runs the matcher only, without reading manifests (the in-process benchmark).
    #[cfg(feature = "bench")]
    pub fn match_leases(
        &self,
        now: Millis,
        query: &crate::core::matcher::PreparedQuery,
    ) -> Vec<crate::core::matcher::Match> {
        self.state().find(now, query)
    }

    /// [`Registry::match_leases`] for the client `client` (staged registrations where a
    /// rollout's open wave takes it).
    #[cfg(feature = "bench")]
    pub fn match_leases_as(
        &self,
        now: Millis,
        query: &crate::core::matcher::PreparedQuery,
        client: Option<&VendorKey>,
    ) -> Vec<crate::core::matcher::Match> {
        self.state().find_as(now, query, client)
    }
}
