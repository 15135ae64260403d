//! A standby: a registry opened on a cluster's store without writing anything, which
//! answers lookups, fetches and reads while another node (the cluster's writer) decides.
//! The caller feeds it what the writer commits ([`Registry::follow`]) and has it read the
//! store again ([`Registry::reload`]) when something other than registrations changed
//! (keys, names, operators' controls). The server refuses a standby's writes
//! (`Unavailable`: "retry at the writer") and runs no expiry for it; it does renew the
//! leases of the vendors connected to it, and its flushes write their rows alone
//! (see `core/state/held.rs`), which the writer follows ([`Registry::renewed_elsewhere`]). A
//! cluster's node, standby or writer, names itself and the writer on lease pages
//! ([`Registry::set_cluster`]).

use super::{OpenAs, Registry, load};
use crate::RegistryConfig;
use crate::core::events::EventRing;
use crate::core::state::{RestartCounts, StoreEvent};
use crate::errors::OpenError;
use crate::store::{LeaseRow, Storage, StoredLease};
use courier_protocol::{ClientInfo, ClusterNodes, LeaseId, SignedFreshness, VendorKey};

/// One change the cluster's writer committed, as a standby applies it. `remaining_ms` is
/// the time the lease has left by the writer's clock when the change is applied.
#[derive(Debug, Clone)]
pub enum Followed {
    /// A registration (new, or seen again).
    Put {
        /// The registration and its lease row.
        stored: StoredLease,
        /// Its time left.
        remaining_ms: u64,
        /// The node that wrote the row (the writer).
        holder: String,
    },
    /// A lease row a flush wrote (a renewal).
    Row {
        /// The lease.
        lease: LeaseId,
        /// Its row.
        row: LeaseRow,
        /// Its time left.
        remaining_ms: u64,
        /// The node that took the renewal and wrote the row.
        holder: String,
    },
    /// A registration removed.
    Delete(LeaseId),
    /// A freshness statement the writer accepted (checked again here).
    Freshness(SignedFreshness),
    /// A client's record the writer wrote (registered, its data shared, or its last
    /// contact written behind).
    Client(ClientInfo),
    /// A service name the writer gave its first owner (a name owned already keeps its
    /// owner: a change of owner comes with a key rotation, which reads the store again).
    Name {
        /// The name.
        name: String,
        /// Its owner.
        owner: VendorKey,
    },
    /// A name the writer granted to a further key.
    Grant {
        /// The name.
        name: String,
        /// The key it is granted to.
        key: VendorKey,
    },
}

impl Registry {
    /// Opens a standby on `store` (a cluster's), taking wall-clock time `wall_now_ms` to be
    /// the writer's time now. Reads the store through the restart rule and writes nothing.
    pub fn open_standby(
        config: RegistryConfig,
        store: Box<dyn Storage>,
        wall_now_ms: u64,
    ) -> Result<Self, OpenError> {
        let (registry, _restart) = Self::restore(config, store, wall_now_ms, OpenAs::Standby)?;
        // A standby numbers none of its own changes (it could not reserve numbers durably):
        // its events come from the cluster's history, from where its caller says.
        registry.number_events_from_store(1);
        Ok(registry)
    }

    /// Names this node and the cluster's writer on every lease page from now on (a
    /// standby holds the leases it renews itself).
    pub fn set_cluster(&self, nodes: ClusterNodes) {
        if self.standby {
            self.state().set_here(&nodes.answered_by);
        }
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(nodes);
    }

    /// This node and the cluster's writer, if this registry is a cluster's node.
    pub fn cluster(&self) -> Option<ClusterNodes> {
        self.cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this registry is a standby (answers reads, refuses writes).
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Applies what the writer committed, in order. Memory only. Returns how many changed
    /// the catalog.
    pub fn follow(&self, changes: impl IntoIterator<Item = Followed>) -> usize {
        let now = self.now();
        let mut st = self.state();
        let mut changed = 0;
        for change in changes {
            let did = match change {
                Followed::Put {
                    stored,
                    remaining_ms,
                    holder,
                } => st.follow_put(now, stored, remaining_ms, &holder),
                Followed::Row {
                    lease,
                    row,
                    remaining_ms,
                    holder,
                } => st.follow_row(now, lease, &row, remaining_ms, &holder),
                Followed::Delete(lease) => st.follow_delete(&lease),
                Followed::Freshness(signed) => {
                    st.follow_freshness(signed);
                    false
                }
                Followed::Client(info) => {
                    st.follow_client(info);
                    false
                }
                Followed::Name { name, owner } => {
                    st.follow_name(&name, &owner);
                    false
                }
                Followed::Grant { name, key } => {
                    st.follow_grant(&name, &key);
                    false
                }
            };
            changed += usize::from(did);
        }
        changed
    }

    /// Reads the whole store again (keys, names, controls and registrations), taking
    /// `wall_now_ms` to be the writer's time now, and replaces the state with it. Blocking
    /// (store reads).
    pub fn reload(&self, wall_now_ms: u64) -> Result<RestartCounts, OpenError> {
        // No flush meanwhile: one that took the renewals to write before the new state
        // replaced the old would leave the older deadlines here.
        let _writer = self.writer();
        let loaded = load(
            &*self.store,
            self.config.state(),
            wall_now_ms,
            self.now(),
            false,
        )?;
        let mut state = loaded.state;
        let mut held = self.state();
        state.carry_held(self.now(), &held);
        state.carry_events(&mut held);
        *held = state;
        Ok(loaded.counts)
    }

    /// Numbers events as the cluster's history gives them ([`Registry::record_events`]),
    /// from `from_seq` on, and no longer of its own changes: a cluster's node, writer or
    /// standby, before it serves.
    pub fn number_events_from_store(&self, from_seq: u64) {
        self.state().number_events_from_store(from_seq);
    }

    /// The events kept so far, for the registry that takes over from this one (a standby
    /// elected writer): see [`Registry::adopt_events`]. This one keeps none.
    pub fn take_events(&self) -> EventRing {
        self.state().take_events()
    }

    /// Numbers events as the cluster's history gives them, going on from `events` (what the
    /// standby this node was kept): its subscribers resume here without a gap.
    pub fn adopt_events(&self, events: EventRing) {
        self.state().adopt_events(events);
    }

    /// Events the cluster's history numbered, in order, kept and told to live subscribers.
    /// Memory only. Returns how many were kept.
    pub fn record_events(&self, events: impl IntoIterator<Item = StoreEvent>) -> usize {
        self.with_state(|st| {
            events
                .into_iter()
                .map(|e| st.given_event(e))
                .filter(|kept| *kept)
                .count()
        })
    }

    /// The history up to `seq` could not be read: subscribers asking for it hear it is
    /// missed. Memory only.
    pub fn skip_events_to(&self, seq: u64) {
        self.with_state(|st| st.skip_events_to(seq));
    }

    /// The writer's wall clock reads `writer_ms` now (a standby's estimate, from the
    /// writer's latest flush): the rows of the leases this standby renews are written on
    /// it. Memory only.
    pub fn set_writer_clock(&self, writer_ms: u64) {
        let now = self.now();
        self.state().set_writer_clock(now, writer_ms);
    }

    /// Renewals other nodes of the cluster took and wrote (the writer learns them from the
    /// store): each lease's deadline moves to its row's expiry if that is later, and the
    /// node named holds it. Memory only. Returns how many moved.
    pub fn renewed_elsewhere(
        &self,
        rows: impl IntoIterator<Item = (LeaseId, LeaseRow, String)>,
    ) -> usize {
        let now = self.now();
        self.with_state(|st| {
            rows.into_iter()
                .filter(|(lease, row, holder)| st.renewed_elsewhere(now, *lease, row, holder))
                .count()
        })
    }
}
