//! A child registry's copy of its parent's registrations. The child applies what its link
//! to the parent read (a page of the catalog, a batch of the feed) as one committed change
//! ([`RegistryState::plan_mirror`]): the registrations its rules let in, with the lease
//! state the parent gave; the removals the parent's feed announced; approvals its rules
//! asked for; and its new anchor in the parent's feed, all in one batch. Renewals the feed
//! announces are applied in memory and written behind like any renewal
//! ([`RegistryState::mirror_renew`]).
//!
//! Time: a mirrored lease lasts here until its last known end at the parent plus the
//! mirror grace (`StateConfig::mirror_grace_ms`), so a child cut off from its parent goes
//! on serving what it holds for that long; while the link is up, the parent's own removal
//! arrives first. In the lease table such a lease's duration is the parent's plus the
//! grace; lease pages show the parent's.

use super::{Change, Planned, RegistryState};
use crate::core::catalog::Admission;
use crate::core::lease_table::{Millis, Restore};
use crate::core::mirror::Decision;
use crate::store::{Batch, LeaseRow, MirrorAnchor, Removal};
use courier_protocol::{
    Approval, ApprovalState, ContentHash, EventKind, LeaseId, Manifest, SignedManifest,
};
use std::collections::{HashMap, HashSet};

/// A registration of the parent's, its manifest verified by the caller.
#[derive(Debug, Clone)]
pub struct MirrorPut {
    /// The parent's lease (kept as this registration's lease here).
    pub lease: LeaseId,
    /// The signed manifest, as the parent sent it.
    pub signed: SignedManifest,
    /// The manifest, its signature verified.
    pub manifest: Manifest,
    /// Time left on the lease at the parent.
    pub remaining_ms: u64,
    /// The lease's duration at the parent.
    pub ttl_ms: u64,
    /// Its renewals at the parent.
    pub renewals: u64,
    /// The freshness statement of its service the parent serves, signature verified by
    /// the caller (as `statement`).
    pub freshness: Option<(
        courier_protocol::FreshnessStatement,
        courier_protocol::SignedFreshness,
    )>,
}

/// What one read of the parent changes here.
#[derive(Debug, Default)]
pub struct MirrorDelta {
    /// Registrations the parent holds (a put of one mirrored already refreshes its lease).
    pub puts: Vec<MirrorPut>,
    /// Registrations the parent removed, and why.
    pub removals: Vec<(LeaseId, Removal)>,
    /// The end of a whole copy of the parent's catalog: every lease it listed. Mirrored
    /// registrations not among them, or that the rules no longer let in, go.
    pub listed: Option<HashSet<LeaseId>>,
    /// Freshness statements of the parent's vendors, signatures verified by the caller.
    pub freshness: Vec<(
        courier_protocol::FreshnessStatement,
        courier_protocol::SignedFreshness,
    )>,
    /// The anchor to keep.
    pub anchor: Option<MirrorAnchor>,
    /// When the parent's time was read, wall-clock ms (for approvals' times).
    pub at_ms: u64,
}

/// What applying a [`MirrorDelta`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MirrorApplied {
    /// Registrations new here.
    pub added: usize,
    /// Registrations mirrored already, their leases refreshed.
    pub refreshed: usize,
    /// Registrations that left.
    pub removed: usize,
    /// Registrations waiting for an operator's approval.
    pub asked: usize,
    /// Registrations no rule lets in (or declined).
    pub left: usize,
    /// Registrations of a name a local vendor owns here (not mirrored).
    pub conflicts: usize,
}

/// A registration mirrored from the parent, as the child keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirroredLease {
    /// The last known end of its lease at the parent.
    pub end: Millis,
    /// Its component, fetched from the parent when a client first asks.
    pub component: ContentHash,
    /// The component's size.
    pub size: u64,
}

/// A planned [`MirrorDelta`].
#[derive(Debug)]
pub struct Mirror {
    puts: Vec<(MirrorPut, Option<LeaseId>, bool)>,
    /// Every lease the delta read from the parent (kept or not).
    read: Vec<LeaseId>,
    /// The statements of `batch.freshness`, in its order.
    freshness: Vec<courier_protocol::FreshnessStatement>,
    removals: Vec<(LeaseId, Removal)>,
    applied: MirrorApplied,
}

impl RegistryState {
    /// Plans a change read from the parent: what the rules let in, what left, what to ask.
    pub fn plan_mirror(&self, now: Millis, delta: MirrorDelta) -> Planned<Mirror> {
        let mut applied = MirrorApplied::default();
        let mut batch = Batch::default();
        let mut puts = Vec::new();
        let removed_now: HashSet<LeaseId> = delta.removals.iter().map(|(l, _)| *l).collect();
        let mut removals: Vec<(LeaseId, Removal)> = delta
            .removals
            .into_iter()
            .filter(|(l, _)| self.mirrored.contains_key(l))
            .collect();
        let mut let_in = HashSet::new();
        let grace = self.config.mirror_grace_ms;
        // Freshness statements to hold, each newer than what is held for every service it
        // names (the parent's word on what its vendors publish, checked by the caller's
        // signature check and by clients again).
        let mut freshness = Vec::new();
        let wall = self.wall_ms(now);
        for (statement, signed) in delta.freshness {
            // Only a vendor's statement about a service it holds here, within its window.
            let about_held = statement
                .services
                .keys()
                .any(|service| self.catalog.owner(service) == Some(statement.vendor));
            let in_time = statement
                .check_time(
                    wall,
                    courier_protocol::MAX_FRESHNESS_VALIDITY_MS,
                    courier_protocol::FRESHNESS_SKEW_MS,
                )
                .is_ok();
            if about_held
                && in_time
                && matches!(self.freshness.admit(&statement, &signed), Ok(true))
                && !batch.freshness.contains(&signed)
            {
                batch.freshness.push(signed);
                freshness.push(statement);
            }
        }
        // A lease read twice in one delta counts once, as last read.
        let read: Vec<LeaseId> = delta.puts.iter().map(|p| p.lease).collect();
        let mut last: HashMap<LeaseId, usize> = HashMap::new();
        for (i, put) in delta.puts.iter().enumerate() {
            last.insert(put.lease, i);
        }
        for (i, put) in delta.puts.into_iter().enumerate() {
            if removed_now.contains(&put.lease) || last.get(&put.lease) != Some(&i) {
                continue;
            }
            let m = &put.manifest;
            // What this registry's operator stopped stays stopped, whatever the parent holds.
            if self.controls.revoked(&put.lease).is_some()
                || self.controls.banned(&m.name, &m.vendor_key).is_some()
                || self.controls.draining(&m.name).is_some()
                || self.keys.is_revoked(&m.vendor_key)
            {
                applied.left += 1;
                continue;
            }
            match self.mirror_book.decide(m) {
                Decision::Mirror => {}
                Decision::Ask(rule) => {
                    let key = (m.vendor_key, m.name.clone(), m.version.clone());
                    if !self.mirror_book.knows(&key) && self.mirror_book.has_room() {
                        batch.approvals.push(Approval {
                            vendor: m.vendor_key,
                            name: m.name.clone(),
                            version: m.version.clone(),
                            state: ApprovalState::Pending,
                            rule,
                            at_ms: delta.at_ms,
                        });
                    }
                    applied.asked += 1;
                    continue;
                }
                Decision::Leave => {
                    applied.left += 1;
                    continue;
                }
            }
            let row = LeaseRow {
                expires_at_ms: self
                    .wall_ms(now)
                    .saturating_add(put.remaining_ms)
                    .saturating_add(grace),
                ttl_ms: put.ttl_ms.saturating_add(grace),
                renewals: put.renewals,
                in_grace: false,
            };
            if let Some((statement, signed)) = &put.freshness
                && statement.vendor == m.vendor_key
                && statement.services.contains_key(&m.name)
                && matches!(self.freshness.admit(statement, signed), Ok(true))
                && !batch.freshness.contains(signed)
            {
                batch.freshness.push(signed.clone());
                freshness.push(statement.clone());
            }
            if self.mirrored.contains_key(&put.lease) {
                let_in.insert(put.lease);
                batch.leases.push((put.lease, row));
                applied.refreshed += 1;
                puts.push((put, None, false));
                continue;
            }
            if self.table.get(&put.lease).is_some() {
                // A local lease with the parent's id: not this registration.
                applied.conflicts += 1;
                continue;
            }
            let admission = match self.catalog.admit(&m.name, &m.vendor_key) {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(lease = %put.lease, name = %m.name, "not mirrored: {e}");
                    applied.conflicts += 1;
                    continue;
                }
            };
            let Admission {
                replaces,
                claims_name,
            } = admission;
            let replaces = replaces.filter(|other| *other != put.lease);
            // A local registration of the same name and key wins over the parent's.
            if replaces.is_some_and(|other| !self.mirrored.contains_key(&other)) {
                applied.conflicts += 1;
                continue;
            }
            if let Some(other) = replaces {
                batch.delete.push((other, Removal::Replaced));
            }
            if claims_name {
                batch.names.push((m.name.clone(), m.vendor_key));
            }
            let_in.insert(put.lease);
            batch.registrations.push((put.lease, put.signed.clone()));
            batch.leases.push((put.lease, row));
            batch.mirrored.push(put.lease);
            applied.added += 1;
            puts.push((put, replaces, true));
        }
        if let Some(listed) = &delta.listed {
            let refused: HashSet<LeaseId> = self
                .mirrored_refused_by(&self.mirror_book)
                .into_iter()
                .collect();
            for lease in self.mirrored.keys() {
                if let_in.contains(lease) || removals.iter().any(|(l, _)| l == lease) {
                    continue;
                }
                // Listed: it stays if the rules still let it in; not listed: it is gone
                // at the parent.
                let why = if !listed.contains(lease) || self.catalog.get(lease).is_none() {
                    Removal::Expired
                } else if refused.contains(lease) {
                    Removal::Revoked
                } else {
                    continue;
                };
                removals.push((*lease, why));
            }
        }
        batch.delete.extend(removals.iter().copied());
        applied.removed = removals.len();
        batch.mirror_anchor = delta.anchor;
        let events = (puts.len() + 2 * removals.len()) as u64;
        batch.seq_reserved = self.reservation_needed(events);
        Planned {
            batch,
            change: Mirror {
                puts,
                read,
                freshness,
                removals,
                applied,
            },
        }
    }

    /// A renewal the parent's feed announced for a mirrored `lease`, in memory (written
    /// behind by the next flush). Returns whether the lease is mirrored here.
    pub fn mirror_renew(&mut self, now: Millis, lease: LeaseId) -> bool {
        let Some(held) = self.mirrored.get(&lease).copied() else {
            return false;
        };
        if self.events.headroom() == 0 {
            // No event numbered past the durable mark; the next refresh brings the time.
            return false;
        }
        let Some(entry) = self.table.get(&lease).copied() else {
            return false;
        };
        // What this registry's operator stopped is not kept alive by the parent's renewals.
        if let Some(reg) = self.catalog.get(&lease)
            && (self.controls.draining(&reg.name).is_some()
                || self.controls.banned(&reg.name, &reg.vendor).is_some()
                || self.controls.revoked(&lease).is_some())
        {
            return false;
        }
        let grace = self.config.mirror_grace_ms;
        let kept_ms = entry.ttl_ms();
        let ttl_ms = kept_ms.saturating_sub(grace);
        self.table.remove(&lease);
        let Some(entry) = self.table.restore(
            now,
            lease,
            Restore::Remaining(kept_ms),
            kept_ms,
            entry.renewals().saturating_add(1),
        ) else {
            return false;
        };
        self.catalog.set_deadline(&lease, entry.deadline);
        self.dirty.insert(lease, ());
        self.mirrored.insert(
            lease,
            MirroredLease {
                end: now.plus(ttl_ms),
                ..held
            },
        );
        if let Some(reg) = self.catalog.get(&lease).cloned() {
            self.note(EventKind::Renewed, now, reg);
        }
        true
    }

    /// Sets the time left of each mirrored match to its parent's (not the grace added).
    pub fn mirrored_remaining(&self, now: Millis, matches: &mut [crate::core::matcher::Match]) {
        if self.mirrored.is_empty() {
            return;
        }
        for m in matches {
            if let Some(held) = self.mirrored.get(&m.lease) {
                m.remaining_ms = held.end.since(now);
            }
        }
    }

    /// The anchor in the parent's feed, as last committed.
    pub fn mirror_anchor(&self) -> Option<&MirrorAnchor> {
        self.mirror_anchor.as_ref()
    }

    /// A mirrored registration's state here.
    pub fn mirrored(&self, lease: &LeaseId) -> Option<MirroredLease> {
        self.mirrored.get(lease).copied()
    }

    /// How many registrations are mirrored, and how many of them are past their lease's
    /// last known end at the parent.
    pub fn mirrored_counts(&self, now: Millis) -> (u64, u64) {
        let past = self.mirrored.values().filter(|m| m.end <= now).count();
        (self.mirrored.len() as u64, past as u64)
    }

    /// The size of component `hash` if a mirrored registration names it (the only
    /// components a child fetches from its parent).
    pub fn mirrored_component(&self, hash: &ContentHash) -> Option<u64> {
        self.mirrored
            .values()
            .find(|m| m.component == *hash)
            .map(|m| m.size)
    }

    /// Whether `lease` was mirrored here and ran out here (its last known end and the
    /// grace passed while the link was cut): a renewal the parent announces for it brings
    /// it back.
    pub fn lapsed_mirror(&self, lease: &LeaseId) -> bool {
        self.lapsed.contains_key(lease)
    }

    /// The vendor keys of the mirrored registrations, each once, and the key each now acts
    /// for it (after a rotation the vendor signs its statements with the new key).
    pub fn mirrored_vendors(&self) -> Vec<courier_protocol::VendorKey> {
        let mut keys: HashSet<courier_protocol::VendorKey> = HashSet::new();
        for reg in self.mirrored.keys().filter_map(|l| self.catalog.get(l)) {
            keys.insert(*reg.vendor);
            keys.insert(self.keys.current(&reg.vendor));
        }
        keys.into_iter().collect()
    }

    /// The vendor key of the registration `lease`, if it is in the catalog.
    pub fn vendor_of(&self, lease: &LeaseId) -> Option<courier_protocol::VendorKey> {
        self.catalog.get(lease).map(|r| *r.vendor)
    }

    /// The mirrored registrations' leases.
    pub fn mirrored_leases(&self) -> Vec<LeaseId> {
        self.mirrored.keys().copied().collect()
    }

    /// The components mirrored registrations name, each once.
    pub fn mirrored_components(&self) -> Vec<ContentHash> {
        let set: HashSet<ContentHash> = self.mirrored.values().map(|m| m.component).collect();
        set.into_iter().collect()
    }

    /// The mirrored registrations `book` would not let in.
    pub(super) fn mirrored_refused_by(
        &self,
        book: &crate::core::mirror::MirrorBook,
    ) -> Vec<LeaseId> {
        self.mirrored
            .keys()
            .filter(|lease| {
                self.catalog.get(lease).is_some_and(|r| {
                    let interfaces: Vec<String> = r.exports().map(|e| e.versioned()).collect();
                    let version = r.version.to_string();
                    book.decide_parts(&r.name, &r.vendor, &version, &interfaces) != Decision::Mirror
                })
            })
            .copied()
            .collect()
    }

    /// The rules and approvals.
    pub fn mirror_book(&self) -> &crate::core::mirror::MirrorBook {
        &self.mirror_book
    }
}

impl Change for Mirror {
    type Applied = MirrorApplied;

    fn apply(self, st: &mut RegistryState, now: Millis, batch: Batch) -> MirrorApplied {
        for (statement, signed) in self.freshness.iter().zip(&batch.freshness) {
            st.freshness.apply(statement, signed.clone());
        }
        for (lease, why) in self.removals {
            st.retire(now, lease, why);
            // Gone at the parent: no renewal will bring it back.
            st.lapsed.remove(&lease);
        }
        for lease in &self.read {
            // Read again: kept below, or refused for good (a conflict, the rules).
            st.lapsed.remove(lease);
        }
        // A registration new here may have run out here with its deletion still queued for
        // the next flush: this commit wrote it again, so that deletion must not follow.
        if !st.deleted.is_empty() {
            let written: HashSet<LeaseId> = self
                .puts
                .iter()
                .filter(|(_, _, new)| *new)
                .map(|(p, ..)| p.lease)
                .collect();
            st.deleted.retain(|(l, _)| !written.contains(l));
        }
        let grace = st.config.mirror_grace_ms;
        for (put, replaces, new) in self.puts {
            if let Some(other) = replaces {
                st.retire(now, other, Removal::Replaced);
            }
            if !new && st.catalog.get(&put.lease).is_none() {
                // It ran out here since it was planned: it comes back with its next
                // renewal at the parent (see `lapsed`), not half-way now.
                continue;
            }
            let kept_ms = put.ttl_ms.saturating_add(grace);
            let remaining = put.remaining_ms.saturating_add(grace).max(1);
            let renewals = u32::try_from(put.renewals).unwrap_or(u32::MAX);
            st.table.remove(&put.lease);
            let Some(entry) = st.table.restore(
                now,
                put.lease,
                Restore::Remaining(remaining),
                kept_ms,
                renewals,
            ) else {
                continue;
            };
            let m = &put.manifest;
            st.mirrored.insert(
                put.lease,
                MirroredLease {
                    end: now.plus(put.remaining_ms),
                    component: m.component_hash,
                    size: m.component_size,
                },
            );
            if !new {
                st.catalog.set_deadline(&put.lease, entry.deadline);
                continue;
            }
            st.catalog.claim(&m.name, &m.vendor_key);
            match st.catalog.insert(put.lease, m, entry.deadline) {
                Ok(reg) => st.note(EventKind::Registered, now, reg),
                Err(e) => {
                    tracing::warn!(lease = %put.lease, "a mirrored registration is not served: {e}");
                    st.table.remove(&put.lease);
                    st.mirrored.remove(&put.lease);
                    st.deleted.push((put.lease, Removal::Expired));
                }
            }
        }
        for approval in batch.approvals {
            st.mirror_book.put_approval(approval);
        }
        if let Some(anchor) = batch.mirror_anchor {
            st.mirror_anchor = Some(anchor);
        }
        self.applied
    }
}
