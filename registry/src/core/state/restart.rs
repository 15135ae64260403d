//! The restart rule: what the stored rows and the wall-clock time of a start make of the
//! state, and what that start must write. Pure: rows go in one at a time
//! ([`Restorer::restore`], so a large store never sits in memory twice), the state and a
//! batch come out ([`Restorer::finish`]).
//!
//! For each stored lease (ARCHITECTURE.md, "The restart rule", says why):
//! - expiry still ahead: it keeps exactly its remaining time;
//! - expiry passed, but not before the last write that found the registry alive: it ran out
//!   while the registry was down (or in the unflushed window before a crash), so it gets
//!   one grace period, written down at once (flagged), so that a restart within it finds it
//!   still in grace with only what is left (a restart never extends a grace);
//! - expiry before that last write: it was dead while the registry ran, and is dropped.
//!
//! Remaining time and grace are capped at the lease's duration and the grace period, so a
//! wall clock that stepped back while the registry was down extends nothing. Registrations
//! of revoked keys, and records that cannot be read, are dropped.

use super::pending_names::PendingNames;
use super::{Change, Planned, RegistryState, StateConfig};
use crate::core::catalog::Admission;
use crate::core::clients::ClientRecord;
use crate::core::keys::{KeyBook, StoredStatementError};
use crate::core::lease_table::{LeaseOp, Millis, Restore};
use crate::core::roots::RootBook;
use crate::store::{Batch, LeaseRow, Removal, StoredLease, StoredMeta};
use courier_protocol::LeaseId;

/// What a start made of the stored leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartCounts {
    /// Leases that kept their remaining time.
    pub kept: usize,
    /// Leases that ran out while the registry was down and got a grace period.
    pub graced: usize,
    /// Leases found in a grace period already, keeping what was left of it.
    pub still_in_grace: usize,
    /// Registrations dropped (dead before the last write, revoked, or unreadable).
    pub dropped: usize,
    /// The first event number of this start.
    pub start_seq: u64,
}

/// Builds the state of a start from the stored rows.
#[derive(Debug)]
pub struct Restorer {
    state: RegistryState,
    /// The monotonic time of the start (0, or later for a standby that loads again).
    now: Millis,
    wall_now_ms: u64,
    last_alive_ms: u64,
    graced: Vec<(LeaseId, LeaseRow)>,
    dropped: Vec<(LeaseId, Removal)>,
    counts: RestartCounts,
    /// A takeover: a lease with less than a grace left gets the grace.
    takeover: bool,
    /// A child registry: the leases mirrored from its parent.
    mirrored: std::collections::HashSet<LeaseId>,
    /// Registrations staged for a rollout.
    staged: std::collections::HashSet<LeaseId>,
    /// Stored name owners not claimed yet: each is claimed as a grant of its name or its
    /// first registration comes back, and the rest at the finish.
    pending: PendingNames,
}

impl Restorer {
    /// Starts from what the store holds besides the registrations, at wall-clock time
    /// `wall_now_ms` (which becomes monotonic time 0). Every stored key statement is
    /// verified again.
    pub fn new(
        config: StateConfig,
        wall_now_ms: u64,
        meta: StoredMeta,
    ) -> Result<Self, StoredStatementError> {
        Self::new_at(config, wall_now_ms, Millis(0), meta)
    }

    /// [`Restorer::new`] at monotonic time `now` (a registry that loads its store again
    /// while its clock runs: a cluster's standby).
    pub fn new_at(
        config: StateConfig,
        wall_now_ms: u64,
        now: Millis,
        meta: StoredMeta,
    ) -> Result<Self, StoredStatementError> {
        let start_seq = meta.seq_reserved.max(1);
        let wall_base_ms = wall_now_ms.saturating_sub(now.0);
        let mut state = RegistryState::new(config, wall_base_ms, start_seq);
        state.catalog.reserve_names(meta.names.len());
        let mut pending = PendingNames::new(meta.names);
        for (name, key) in &meta.grants {
            if let Some(owner) = pending.take(name) {
                state.catalog.claim(name, &owner);
            }
            state.catalog.grant(name, key);
        }
        state.keys =
            KeyBook::from_stored(meta.rotations, meta.revocations, meta.operator_statements)?;
        state.roots = RootBook::from_stored(meta.root_statements, meta.delegations)?;
        for info in meta.clients {
            let (key, record) = ClientRecord::from_info(info);
            state.clients.put(key, record);
        }
        for (name, key, reason) in meta.bans {
            state.controls.ban(&name, key, reason);
        }
        for (name, reason) in meta.drains {
            state.controls.drain(&name, reason);
        }
        for (key, name, at) in meta.children {
            state.children.allow(key, name, at);
        }
        for (lease, reason, until) in meta.lease_revocations {
            state.controls.revoke_lease(lease, reason, until);
        }
        state.audit_seq = meta.audit_seq;
        for rule in meta.mirror_rules {
            state.mirror_book.add(rule);
        }
        for approval in meta.approvals {
            state.mirror_book.put_approval(approval);
        }
        state.mirror_anchor = meta.mirror_anchor;
        let mirrored = meta.mirrored.into_iter().collect();
        let staged = meta.staged.into_iter().collect();
        for record in meta.rollouts {
            state.put_rollout(record);
        }
        for (id, client, mark) in meta.rollout_marks {
            state.restore_mark(id, client, mark);
        }
        for (service, client) in meta.served {
            state.usage.served(&service, client);
        }
        for signed in meta.freshness {
            match signed.verify() {
                Ok(st) => state.restore_freshness(st.get(), signed),
                // Dropping one costs only that clients refuse its candidates until the
                // vendor's next statement; nothing is trusted that was not before.
                Err(e) => tracing::warn!("dropping a stored freshness statement: {e}"),
            }
        }
        Ok(Self {
            state,
            now,
            wall_now_ms,
            last_alive_ms: meta.last_alive_ms,
            mirrored,
            staged,
            pending,
            graced: Vec::new(),
            dropped: Vec::new(),
            takeover: false,
            counts: RestartCounts {
                start_seq,
                ..Default::default()
            },
        })
    }

    /// The rule of a cluster's takeover: as a start, except that a lease with less than a
    /// grace period left gets the grace (written down as one), because its vendor has to
    /// notice that the last writer is gone and reach this node first, which a restart of
    /// the one registry it knows does not ask of it. Leases whose vendors are gone still run
    /// out after one grace.
    pub fn takeover(mut self) -> Self {
        self.takeover = true;
        self
    }

    /// Brings back one stored registration, or drops it, by the rule.
    pub fn restore(&mut self, stored: StoredLease) {
        let now = self.now;
        let lease = stored.lease;
        let manifest = match stored.manifest.peek() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%lease, "dropping stored registration: {e}");
                self.dropped.push((lease, Removal::Expired));
                return;
            }
        };
        if let Some(owner) = self.pending.take(&manifest.name) {
            self.state.catalog.claim(&manifest.name, &owner);
        }
        if self.state.keys.is_revoked(&manifest.vendor_key) {
            self.dropped.push((lease, Removal::Revoked));
            return;
        }
        let row = stored.row;
        let ahead = row
            .expires_at_ms
            .checked_sub(self.wall_now_ms)
            .filter(|&ms| ms > 0);
        let grace_ms = self.state.config.policy.grace_ms;
        let how = match (ahead, row.in_grace) {
            (Some(ms), false) if self.takeover && ms < grace_ms => Restore::Lapsed,
            (Some(ms), false) => Restore::Remaining(ms),
            (Some(ms), true) => Restore::InGrace(ms),
            // Alive at the last write (its grace included): it ran out while the registry
            // was down, or in the unflushed window before a crash, where a renewal may have
            // been lost.
            (None, _) if row.expires_at_ms >= self.last_alive_ms => Restore::Lapsed,
            // Dead while the registry ran.
            (None, _) => {
                self.dropped.push((lease, Removal::Expired));
                return;
            }
        };
        let renewals = u32::try_from(row.renewals).unwrap_or(u32::MAX);
        let st = &mut self.state;
        let Some(entry) = st.table.restore(now, lease, how, row.ttl_ms, renewals) else {
            return;
        };
        let staged = self.staged.contains(&lease);
        // A key holds one registration of a name at a time. Two can be stored when one
        // expired, another was registered, and the process stopped before the expiry was
        // written behind: the one that runs longer stays (the later lease on a tie).
        // (The same holds of a key's staged registrations of a name.)
        let admission = if staged {
            Ok(Admission {
                claims_name: false,
                replaces: st.staged_to_replace(&manifest.name, &manifest.vendor_key),
            })
        } else {
            st.catalog.admit(&manifest.name, &manifest.vendor_key)
        };
        if let Ok(Admission {
            replaces: Some(other),
            ..
        }) = admission
        {
            let other_deadline = st.table.get(&other).map(|e| e.deadline);
            let (keep_new, gone) = if other_deadline < Some(entry.deadline)
                || (other_deadline == Some(entry.deadline) && other < lease)
            {
                (true, other)
            } else {
                (false, lease)
            };
            st.table.remove(&gone);
            if keep_new {
                st.catalog.remove(&gone);
            }
            tracing::warn!(lease = %gone, name = %manifest.name, "dropping a stored registration the same key made again");
            self.dropped.push((gone, Removal::Replaced));
            if !keep_new {
                return;
            }
        }
        let entered = if staged {
            st.catalog.insert_staged(lease, &manifest, entry.deadline)
        } else {
            st.catalog.insert(lease, &manifest, entry.deadline)
        };
        if let Err(e) = entered {
            tracing::warn!(%lease, "dropping stored registration: {e}");
            st.table.handle(now, LeaseOp::Cancel { id: lease });
            self.dropped.push((lease, Removal::Expired));
            return;
        }
        if self.mirrored.contains(&lease) {
            let grace = st.config.mirror_grace_ms;
            st.mirrored.insert(
                lease,
                super::MirroredLease {
                    end: Millis(entry.deadline.0.saturating_sub(grace)),
                    component: manifest.component_hash,
                    size: manifest.component_size,
                },
            );
        }
        if how == Restore::Lapsed {
            // Its grace is written down, so that a second restart within it neither takes
            // it for dead nor gives it a second grace.
            let expires_at_ms = self.wall_now_ms.saturating_add(entry.deadline.since(now));
            self.graced.push((
                lease,
                LeaseRow {
                    expires_at_ms,
                    in_grace: true,
                    ..row
                },
            ));
        }
    }

    /// The restored state, and the start's batch: the graces given, the registrations
    /// dropped (with `unreadable`, the records the store could not read), the time the
    /// registry is alive at, and a block of event numbers. A registry that serves commits
    /// the batch and applies the plan; an operator's offline command leaves both, so that
    /// the next real start decides as if it had not happened (its own changes reserve the
    /// event numbers they use).
    pub fn finish(
        mut self,
        unreadable: Vec<LeaseId>,
    ) -> (RegistryState, Planned<Restart>, RestartCounts) {
        self.dropped
            .extend(unreadable.into_iter().map(|l| (l, Removal::Expired)));
        for (name, owner) in std::mem::take(&mut self.pending).rest() {
            self.state.catalog.claim(&name, &owner);
        }
        self.state.catalog.shrink_to_fit();
        let table = &self.state.table;
        self.graced.retain(|(lease, _)| table.get(lease).is_some());
        let in_grace = table.iter().filter(|(_, e)| e.in_grace()).count();
        self.counts.graced = self.graced.len();
        self.counts.still_in_grace = in_grace - self.graced.len();
        self.counts.kept = table.len() - in_grace;
        self.counts.dropped = self.dropped.len();
        let block = self.state.config.seq_block.max(1024);
        let batch = Batch {
            leases: self.graced,
            delete: self.dropped,
            last_alive_ms: Some(self.wall_now_ms),
            seq_reserved: Some(self.counts.start_seq + block),
            ..Default::default()
        };
        (
            self.state,
            Planned {
                batch,
                change: Restart,
            },
            self.counts,
        )
    }
}

/// The writes of a start (see [`Restorer::finish`]).
#[derive(Debug)]
pub struct Restart;

impl Change for Restart {
    type Applied = ();

    fn apply(self, _st: &mut RegistryState, _now: Millis, _batch: crate::store::Batch) {}
}
