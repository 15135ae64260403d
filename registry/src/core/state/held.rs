//! Renewals held by the cluster node a vendor is connected to, whichever node that is.
//!
//! A cluster's standby renews the leases of the vendors connected to it in memory, as the
//! writer does, and writes their rows behind in batches ([`RegistryState::plan_held_flush`]:
//! the rows alone, no marks, no removals). The writer learns those rows from etcd and moves
//! its own deadlines on ([`RegistryState::renewed_elsewhere`]); it alone still expires. A
//! standby that reads the store again keeps the renewals it has not written yet
//! ([`RegistryState::carry_held`]).
//!
//! Deadlines only ever move later here: a row written by another node may be older than a
//! renewal this node took since (a vendor that moved between nodes), and the node that
//! renewed last wins in memory whatever order the rows arrive in.

use super::RegistryState;
use super::change::{Flush, Planned};
use crate::core::lease_table::{LeaseEntry, Millis, Restore};
use crate::store::{Batch, LeaseRow};
use courier_protocol::{EventKind, LeaseId};
use std::sync::Arc;

impl RegistryState {
    /// Names this standby: the leases it renews are its own to hold.
    pub fn set_here(&mut self, name: &str) {
        self.here = Some(Arc::from(name));
    }

    /// `lease` was renewed here: a standby holds it; the writer holds what nobody else
    /// does (no entry).
    pub(super) fn held_here(&mut self, lease: LeaseId) {
        match &self.here {
            Some(here) => {
                self.held_by.insert(lease, here.clone());
                self.held_taken += 1;
            }
            None if !self.held_by.is_empty() => {
                self.held_by.remove(&lease);
            }
            None => {}
        }
    }

    /// The number of the last renewal a standby took: a flush planned after it writes it.
    pub fn held_ticket(&self) -> u64 {
        self.held_taken
    }

    /// `lease` is held by the node named `holder` (empty: the writer, or not known).
    pub(super) fn held_at(&mut self, lease: LeaseId, holder: &str) {
        if holder.is_empty() {
            self.held_by.remove(&lease);
            return;
        }
        // Nodes are few: their names are shared, not copied per lease.
        let name = match self.holders.iter().find(|n| &***n == holder) {
            Some(name) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(holder);
                self.holders.push(name.clone());
                name
            }
        };
        self.held_by.insert(lease, name);
    }

    /// A standby's idea of the writer's wall clock: `writer_ms` is its reading at monotonic
    /// time `now`. The rows this standby writes are on it.
    pub fn set_writer_clock(&mut self, now: Millis, writer_ms: u64) {
        let here = i128::from(self.wall_ms(now));
        self.writer_offset_ms = i64::try_from(i128::from(writer_ms) - here).unwrap_or_default();
    }

    /// The node holding `lease`, if not the writer (or not known).
    pub fn holder(&self, lease: &LeaseId) -> Option<&Arc<str>> {
        self.held_by.get(lease)
    }

    /// Plans the write of the rows of leases renewed here since the last flush, and
    /// nothing else (a standby writes no marks and removes nothing).
    pub fn plan_held_flush(&mut self) -> Option<Planned<Flush>> {
        if self.dirty.is_empty() {
            return None;
        }
        Some(Planned {
            batch: Batch {
                leases: self.take_dirty_rows(),
                ..Default::default()
            },
            change: Flush,
        })
    }

    /// The rows of the leases renewed since the last flush, taken from the dirty set (a
    /// failed commit puts them back, see [`Flush`]).
    pub(super) fn take_dirty_rows(&mut self) -> Vec<(LeaseId, LeaseRow)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .keys()
            .filter_map(|id| self.table.get(id).map(|s| (*id, self.row_of(s))))
            .collect()
    }

    /// A lease's row as a flush writes it (a standby's: on the writer's clock).
    pub(super) fn row_of(&self, s: &LeaseEntry) -> LeaseRow {
        LeaseRow {
            expires_at_ms: self
                .wall_ms(s.deadline)
                .saturating_add_signed(self.writer_offset_ms),
            ttl_ms: s.ttl_ms(),
            renewals: u64::from(s.renewals()),
            in_grace: s.in_grace(),
        }
    }

    /// A renewal the node `holder` took and wrote (`row`, its expiry on this registry's
    /// wall clock): the lease's deadline moves to it if that is later, with a `Renewed`
    /// event, and `holder` holds it. Returns whether it moved. Nothing is marked to be
    /// written (the row is in the store already).
    pub fn renewed_elsewhere(
        &mut self,
        now: Millis,
        lease: LeaseId,
        row: &LeaseRow,
        holder: &str,
    ) -> bool {
        let Some(current) = self.table.get(&lease).copied() else {
            return false;
        };
        let remaining = row
            .expires_at_ms
            .saturating_sub(self.wall_ms(now))
            .min(row.ttl_ms);
        if remaining == 0 || now.plus(remaining) <= current.deadline {
            return false;
        }
        let Some(deadline) = self.put_back(now, lease, remaining, row.ttl_ms, row.renewals) else {
            return false;
        };
        self.held_at(lease, holder);
        if let Some(reg) = self.catalog.get(&lease).cloned()
            && self.events.headroom() > 0
        {
            self.note(EventKind::Renewed, now, reg);
        }
        deadline > current.deadline
    }

    /// Keeps, in this state read again from the store, the renewals `old` took and has not
    /// written yet (each still registered here gets the later of the two deadlines, and is
    /// written by the next flush), and the node's name.
    pub fn carry_held(&mut self, now: Millis, old: &RegistryState) {
        self.here.clone_from(&old.here);
        self.holders.clone_from(&old.holders);
        self.held_taken = old.held_taken;
        for id in old.dirty.keys() {
            let (Some(held), Some(loaded)) = (old.table.get(id), self.table.get(id).copied())
            else {
                continue;
            };
            if held.deadline > loaded.deadline
                && self
                    .put_back(
                        now,
                        *id,
                        held.deadline.since(now),
                        held.ttl_ms(),
                        u64::from(held.renewals()),
                    )
                    .is_some()
            {
                self.dirty.insert(*id, ());
                self.held_here(*id);
            }
        }
    }

    /// Replaces `lease`'s table entry with one of `remaining_ms` left (out of grace), and
    /// moves its deadline in the catalog. Returns the new deadline.
    fn put_back(
        &mut self,
        now: Millis,
        lease: LeaseId,
        remaining_ms: u64,
        ttl_ms: u64,
        renewals: u64,
    ) -> Option<Millis> {
        self.table.remove(&lease)?;
        let renewals = u32::try_from(renewals).unwrap_or(u32::MAX);
        let entry = self.table.restore(
            now,
            lease,
            Restore::Remaining(remaining_ms.max(1)),
            ttl_ms,
            renewals,
        )?;
        self.catalog.set_deadline(&lease, entry.deadline);
        Some(entry.deadline)
    }
}
