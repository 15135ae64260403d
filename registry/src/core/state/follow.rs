//! A standby's copy of what the cluster's writer committed: registrations, the lease rows
//! its flushes write, removals, freshness statements, client records, names and grants,
//! applied without deciding anything (the writer alone registers, expires and replaces;
//! events come from the store's history, see `given.rs`). Applying one change twice, or an older
//! one again after a newer, converges once the newer is applied again: a standby replays
//! the store's changes in order from a point at or before what it loaded.
//!
//! Time: each change comes with the time its lease has left by the writer's clock
//! (`remaining_ms`, worked out by the caller without comparing wall clocks across
//! machines); it runs down here on this registry's monotonic clock. A standby never expires
//! anything: a lease whose time ran out here stops matching (the matcher skips passed
//! deadlines) until the writer's removal or renewal arrives.

use super::RegistryState;
use crate::core::catalog::Admission;
use crate::core::clients::ClientRecord;
use crate::core::lease_table::{Millis, Restore};
use crate::store::{LeaseRow, StoredLease};
use courier_protocol::{ClientInfo, LeaseId, SignedFreshness, VendorKey};

impl RegistryState {
    /// A registration the writer committed, with `remaining_ms` left on its lease. Returns
    /// whether it is in the catalog now (a revoked key's, or an unreadable one, is not).
    pub fn follow_put(
        &mut self,
        now: Millis,
        stored: StoredLease,
        remaining_ms: u64,
        holder: &str,
    ) -> bool {
        let lease = stored.lease;
        self.follow_delete(&lease);
        let manifest = match stored.manifest.peek() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%lease, "a standby skips a registration it cannot read: {e}");
                return false;
            }
        };
        if self.keys.is_revoked(&manifest.vendor_key) {
            return false;
        }
        let Some(deadline) = self.follow_lease(now, lease, &stored.row, remaining_ms) else {
            return false;
        };
        // The writer removes what a registration replaces in the same commit; if the
        // removal comes after the registration, the replaced one goes here first.
        if let Ok(Admission {
            replaces: Some(other),
            ..
        }) = self.catalog.admit(&manifest.name, &manifest.vendor_key)
            && other != lease
        {
            self.follow_delete(&other);
        }
        match self.catalog.insert(lease, &manifest, deadline) {
            Ok(_) => {
                self.held_at(lease, holder);
                true
            }
            Err(e) => {
                tracing::warn!(%lease, "a standby skips a registration: {e}");
                self.table.remove(&lease);
                false
            }
        }
    }

    /// A lease row a flush wrote (a renewal, or a grace): the lease's new time left.
    /// Returns whether the lease is known here.
    pub fn follow_row(
        &mut self,
        now: Millis,
        lease: LeaseId,
        row: &LeaseRow,
        remaining_ms: u64,
        holder: &str,
    ) -> bool {
        let Some(current) = self.table.get(&lease).copied() else {
            return false;
        };
        // A renewal taken here and not written yet is newer than any row but its own.
        if self.dirty.contains_key(&lease) && now.plus(remaining_ms) <= current.deadline {
            return false;
        }
        self.table.remove(&lease);
        match self.follow_lease(now, lease, row, remaining_ms) {
            Some(deadline) => {
                self.catalog.set_deadline(&lease, deadline);
                self.held_at(lease, holder);
                true
            }
            None => {
                self.catalog.remove(&lease);
                false
            }
        }
    }

    /// A freshness statement the writer accepted (an older one than held changes nothing).
    /// Returns whether its signature holds.
    pub fn follow_freshness(&mut self, signed: SignedFreshness) -> bool {
        match signed.verify() {
            Ok(st) => {
                self.restore_freshness(st.get(), signed);
                true
            }
            Err(e) => {
                tracing::warn!("a standby skips a freshness statement: {e}");
                false
            }
        }
    }

    /// A client's record the writer wrote: it replaces the one held.
    pub fn follow_client(&mut self, info: ClientInfo) {
        let (key, record) = ClientRecord::from_info(info);
        self.clients.put(key, record);
    }

    /// A name the writer gave its first owner (nothing if it has one here already).
    pub fn follow_name(&mut self, name: &str, owner: &VendorKey) {
        self.catalog.claim(name, owner);
    }

    /// A name the writer granted to `key`.
    pub fn follow_grant(&mut self, name: &str, key: &VendorKey) {
        self.catalog.grant(name, key);
    }

    /// A registration the writer deleted (expired, cancelled, replaced, revoked). Returns
    /// whether it was here.
    pub fn follow_delete(&mut self, lease: &LeaseId) -> bool {
        self.table.remove(lease);
        self.dirty.remove(lease);
        self.held_by.remove(lease);
        match self.catalog.remove(lease) {
            Some(reg) => {
                self.remember_gone(reg);
                true
            }
            None => false,
        }
    }

    /// Puts `lease` in the table with `remaining_ms` left (at least 1 ms: a lease the
    /// writer still holds is never given a grace here), returning its deadline.
    fn follow_lease(
        &mut self,
        now: Millis,
        lease: LeaseId,
        row: &LeaseRow,
        remaining_ms: u64,
    ) -> Option<Millis> {
        let ms = remaining_ms.max(1);
        let how = if row.in_grace {
            Restore::InGrace(ms)
        } else {
            Restore::Remaining(ms)
        };
        let renewals = u32::try_from(row.renewals).unwrap_or(u32::MAX);
        self.table
            .restore(now, lease, how, row.ttl_ms, renewals)
            .map(|e| e.deadline)
    }
}
