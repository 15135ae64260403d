//! Changes that are committed before they are applied: each `plan_*` checks a change
//! against the state and returns it with the batch to commit; [`RegistryState::apply`]
//! applies it once the batch is durable. Reserving event numbers is part of every plan's
//! batch and of applying it, in one place ([`RegistryState::apply`]).

use super::{RegistryState, is_service_name};
use crate::core::catalog::CatalogError;
use crate::core::lease_table::{LeaseOp, Millis};
use crate::core::usage::UsageCounts;
use crate::errors::{GrantError, LeaseError, RegisterError, StatementRefused};
use crate::store::{Batch, LeaseRow, Removal, UsageRecord};
use courier_protocol::{
    EventKind, KeyAction, KeyStatement, LeaseGrant, LeaseId, Manifest, SignedKeyStatement,
    SignedManifest, VendorKey,
};

/// A change checked against the state, waiting for its batch to be committed durably.
#[derive(Debug)]
#[must_use = "commit the batch, then apply (or abandon) the plan"]
pub struct Planned<C> {
    pub(super) batch: Batch,
    pub(super) change: C,
}

impl<C> Planned<C> {
    /// What to commit before applying.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }
}

/// A kind of committed change: how it is applied once its batch is durable, and what is
/// put back if the commit failed.
pub trait Change: Sized {
    /// What applying it tells the caller.
    type Applied;

    /// Applies the change after its batch was committed.
    fn apply(self, state: &mut RegistryState, now: Millis, batch: Batch) -> Self::Applied;

    /// Puts back what planning took, after the commit failed.
    fn abandon(self, _state: &mut RegistryState, _batch: Batch) {}
}

impl RegistryState {
    /// Applies a planned change whose batch is now durable.
    pub fn apply<C: Change>(&mut self, now: Millis, planned: Planned<C>) -> C::Applied {
        if let Some(mark) = planned.batch.seq_reserved {
            self.events.set_reserved(mark);
        }
        planned.change.apply(self, now, planned.batch)
    }

    /// Drops a planned change whose batch could not be committed.
    pub fn abandon<C: Change>(&mut self, planned: Planned<C>) {
        planned.change.abandon(self, planned.batch);
    }

    /// Plans a registration under the caller's new `lease` of a manifest signed by `key`
    /// (the caller has verified the signature, the validity window and the component), for
    /// `ttl_ms` (clamped by the lease policy). Checks that `key` is active and may use the
    /// name; replaces `key`'s earlier registration of it.
    pub fn plan_register(
        &self,
        now: Millis,
        lease: LeaseId,
        key: &VendorKey,
        signed: SignedManifest,
        manifest: Manifest,
        ttl_ms: u64,
    ) -> Result<Planned<Register>, RegisterError> {
        self.plan_register_as(now, lease, key, signed, manifest, ttl_ms, false)
    }

    /// [`RegistryState::plan_register`], or staged: kept but seen by no client until a
    /// rollout opens it, replacing only `key`'s staged registration of the name.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_register_as(
        &self,
        now: Millis,
        lease: LeaseId,
        key: &VendorKey,
        signed: SignedManifest,
        manifest: Manifest,
        ttl_ms: u64,
        staged: bool,
    ) -> Result<Planned<Register>, RegisterError> {
        self.keys.check_active(key)?;
        self.check_controls(&manifest.name, key)?;
        let staged = staged && !self.completed_version(now, &manifest.name, &manifest.version, key);
        let owner = self.name_owner_for(now, key, &manifest.name);
        let admission = if staged {
            let mut a = self.catalog.admit_staged(&manifest.name, &owner, key)?;
            a.replaces = self.staged_to_replace(&manifest.name, key);
            a
        } else {
            self.catalog.admit_for(&manifest.name, &owner, key)?
        };
        self.catalog.check_exports(&manifest)?;
        let ttl_ms = self.config.policy.clamp(ttl_ms);
        let mut batch = self.batch_reserving(2);
        if staged {
            batch.staged.push(lease);
        }
        batch.registrations.push((lease, signed));
        batch.leases.push((lease, self.new_row(now, ttl_ms)));
        batch
            .delete
            .extend(admission.replaces.map(|l| (l, Removal::Replaced)));
        if admission.claims_name {
            batch.names.push((manifest.name.clone(), owner));
        }
        Ok(Planned {
            batch,
            change: Register {
                lease,
                manifest,
                ttl_ms,
                replaces: admission.replaces,
                owner,
                staged,
            },
        })
    }

    /// Plans the cancellation of `lease` by `key`.
    pub fn plan_cancel(
        &self,
        now: Millis,
        key: &VendorKey,
        lease: LeaseId,
    ) -> Result<Planned<Cancel>, LeaseError> {
        self.live_registration_of(now, key, lease)?;
        let mut batch = self.batch_reserving(1);
        batch.delete.push((lease, Removal::Cancelled));
        Ok(Planned {
            batch,
            change: Cancel { lease },
        })
    }

    /// Plans a key statement: `statement` is verified and made by the key it is about, and
    /// `signed` is its signed form (`None` for the operator's revocation, which clients
    /// cannot verify). `Ok(None)` when it is already in force. A rotation passes the old
    /// key's names and grants to the new key; a revocation removes the key's registrations.
    pub fn plan_key_change(
        &self,
        statement: KeyStatement,
        signed: Option<SignedKeyStatement>,
    ) -> Result<Option<Planned<KeyChange>>, StatementRefused> {
        if !self.keys.admit(&statement, signed.is_some())? {
            return Ok(None);
        }
        let mut revoked = Vec::new();
        let mut batch = Batch::default();
        match (statement.action, &signed) {
            (KeyAction::RotateTo(new), Some(signed)) => {
                batch.rotations.push((statement.key, signed.clone()));
                batch.transfers.push((statement.key, new));
            }
            // A rotation the key did not sign itself is no rotation.
            (KeyAction::RotateTo(_), None) => return Ok(None),
            (KeyAction::Revoke, _) => {
                revoked = self
                    .catalog
                    .iter()
                    .filter(|r| *r.vendor == statement.key)
                    .map(|r| r.lease)
                    .collect();
                batch = self.batch_reserving(revoked.len() as u64);
                batch.revocations.push((statement.key, signed.clone()));
                batch.delete = revoked.iter().map(|l| (*l, Removal::Revoked)).collect();
            }
        }
        Ok(Some(Planned {
            batch,
            change: KeyChange {
                statement,
                signed,
                revoked,
            },
        }))
    }

    /// Plans an operator's grant of `name` to `key` (an unowned name becomes `key`'s).
    pub fn plan_grant(&self, name: &str, key: &VendorKey) -> Result<Planned<Grant>, GrantError> {
        if !is_service_name(name) {
            return Err(GrantError::Name(name.to_string()));
        }
        let mut batch = Batch::default();
        if self.catalog.owner(name).is_some() {
            batch.grants.push((name.to_string(), *key));
        } else {
            batch.names.push((name.to_string(), *key));
        }
        Ok(Planned {
            batch,
            change: Grant {
                name: name.to_string(),
                key: *key,
            },
        })
    }

    /// Plans the write-behind of renewed and expired leases, with the time it finds the
    /// registry alive. Takes the dirty set and the deletions out of the state (renewals
    /// from now on are dirty again); `None` when nothing changed and the last flush is
    /// recent (within `stale_after_ms`).
    pub fn plan_flush(&mut self, now: Millis, stale_after_ms: u64) -> Option<Planned<Flush>> {
        let reserve = self.reservation_needed(1);
        let stale = now.since(self.last_flush) >= stale_after_ms;
        let clients = self.clients.take_dirty();
        let forget = self.controls.forget_revoked(self.wall_ms(now));
        let usage: Vec<UsageRecord> = self
            .usage
            .take_pending()
            .into_iter()
            .map(|((hour_ms, client, service), c)| UsageRecord {
                hour_ms,
                client,
                service: service.to_string(),
                handed_out: c.handed_out,
                bytes: c.bytes,
                calls: c.calls,
                failed: c.failed,
            })
            .collect();
        if self.dirty.is_empty()
            && self.deleted.is_empty()
            && reserve.is_none()
            && !stale
            && clients.is_empty()
            && forget.is_empty()
            && usage.is_empty()
        {
            return None;
        }
        let batch = Batch {
            leases: self.take_dirty_rows(),
            delete: std::mem::take(&mut self.deleted),
            seq_reserved: reserve,
            last_alive_ms: Some(self.wall_ms(now)),
            clients,
            forget_lease_revocations: forget,
            usage,
            ..Default::default()
        };
        Some(Planned {
            batch,
            change: Flush,
        })
    }

    /// Plans a reservation of event numbers if fewer than `need` (plus the margin) are left.
    pub fn plan_reserve(&self, need: u64) -> Option<Planned<Reserve>> {
        let batch = self.batch_reserving(need);
        batch.seq_reserved.is_some().then_some(Planned {
            batch,
            change: Reserve,
        })
    }

    /// Plans loading many registrations at once (signatures, validity and components
    /// checked by the caller, which chose their leases): ownership is checked as for
    /// [`RegistryState::plan_register`], but a name may appear once and replace nothing.
    pub fn plan_bulk_load(
        &self,
        now: Millis,
        items: Vec<(LeaseId, SignedManifest, Manifest, u64)>,
    ) -> Result<Planned<BulkLoad>, RegisterError> {
        let mut batch = self.batch_reserving(items.len() as u64);
        let mut claimed = std::collections::HashSet::new();
        let mut loaded = Vec::with_capacity(items.len());
        for (lease, signed, manifest, ttl_ms) in items {
            self.keys.check_active(&manifest.vendor_key)?;
            let admission = self.catalog.admit(&manifest.name, &manifest.vendor_key)?;
            self.catalog.check_exports(&manifest)?;
            if admission.replaces.is_some() || !claimed.insert(manifest.name.clone()) {
                return Err(RegisterError::Catalog(CatalogError::NotOwner {
                    name: manifest.name,
                }));
            }
            if admission.claims_name {
                batch
                    .names
                    .push((manifest.name.clone(), manifest.vendor_key));
            }
            let ttl_ms = self.config.policy.clamp(ttl_ms);
            batch.registrations.push((lease, signed));
            batch.leases.push((lease, self.new_row(now, ttl_ms)));
            loaded.push((lease, manifest, ttl_ms));
        }
        Ok(Planned {
            batch,
            change: BulkLoad { loaded },
        })
    }

    /// Refuses a registration of `name` by `key` that an operator stopped.
    fn check_controls(&self, name: &str, key: &VendorKey) -> Result<(), RegisterError> {
        if let Some(reason) = self.controls.banned(name, key) {
            return Err(RegisterError::Banned {
                name: name.to_string(),
                key: *key,
                reason: reason.to_string(),
            });
        }
        if let Some(reason) = self.controls.draining(name) {
            return Err(RegisterError::Draining {
                name: name.to_string(),
                reason: reason.to_string(),
            });
        }
        Ok(())
    }

    /// The stored row of a lease granted now for `ttl_ms`.
    fn new_row(&self, now: Millis, ttl_ms: u64) -> LeaseRow {
        LeaseRow {
            expires_at_ms: self.wall_ms(now.plus(ttl_ms)),
            ttl_ms,
            renewals: 0,
            in_grace: false,
        }
    }

    /// Grants `lease` and enters its registration in the catalog, `staged` or not (a staged
    /// one makes no event). The caller checked the exports
    /// ([`crate::core::catalog::Catalog::check_exports`]), so entering cannot fail; if it
    /// ever did, the lease is taken back and the error reported.
    fn enter(
        &mut self,
        now: Millis,
        lease: LeaseId,
        manifest: &Manifest,
        ttl_ms: u64,
        staged: bool,
    ) -> Result<(), CatalogError> {
        self.table.handle(now, LeaseOp::Grant { id: lease, ttl_ms });
        let deadline = now.plus(ttl_ms);
        let entered = if staged {
            self.catalog.insert_staged(lease, manifest, deadline)
        } else {
            self.catalog.insert(lease, manifest, deadline)
        };
        match entered {
            Ok(reg) => {
                self.note(EventKind::Registered, now, reg);
                Ok(())
            }
            Err(e) => {
                self.table.remove(&lease);
                self.deleted.push((lease, Removal::Cancelled));
                Err(e)
            }
        }
    }
}

/// A new registration.
#[derive(Debug)]
pub struct Register {
    lease: LeaseId,
    manifest: Manifest,
    ttl_ms: u64,
    replaces: Option<LeaseId>,
    /// Who owns the name if it is new: the key, or the root that delegated it.
    owner: VendorKey,
    /// Staged for a rollout.
    staged: bool,
}

impl Change for Register {
    type Applied = Result<LeaseGrant, RegisterError>;

    fn apply(self, st: &mut RegistryState, now: Millis, _batch: Batch) -> Self::Applied {
        if let Some(old) = self.replaces {
            st.retire(now, old, Removal::Replaced);
        }
        st.catalog.claim(&self.manifest.name, &self.owner);
        st.enter(now, self.lease, &self.manifest, self.ttl_ms, self.staged)?;
        Ok(LeaseGrant {
            lease: self.lease,
            ttl_ms: self.ttl_ms,
            replaced: self.replaces,
        })
    }
}

/// A cancellation.
#[derive(Debug)]
pub struct Cancel {
    lease: LeaseId,
}

impl Change for Cancel {
    type Applied = Result<(), LeaseError>;

    fn apply(self, st: &mut RegistryState, now: Millis, _batch: Batch) -> Self::Applied {
        // It may have run out since it was planned: then it leaves as expired (it is
        // deleted from the store all the same) and the vendor hears it was gone.
        let live = st.table.remaining(&self.lease, now).is_some();
        let why = if live {
            Removal::Cancelled
        } else {
            Removal::Expired
        };
        match st.retire(now, self.lease, why) {
            Some(_) if live => Ok(()),
            _ => Err(LeaseError::Unknown(self.lease)),
        }
    }
}

/// A key rotation or revocation.
#[derive(Debug)]
pub struct KeyChange {
    statement: KeyStatement,
    signed: Option<SignedKeyStatement>,
    revoked: Vec<LeaseId>,
}

impl Change for KeyChange {
    type Applied = KeyStatement;

    fn apply(self, st: &mut RegistryState, now: Millis, _batch: Batch) -> Self::Applied {
        let statement = self.statement;
        match (statement.action, self.signed) {
            (KeyAction::RotateTo(new), Some(signed)) => {
                st.keys.apply(&statement, signed);
                st.catalog.transfer(&statement.key, &new);
            }
            (_, Some(signed)) => st.keys.apply(&statement, signed),
            (_, None) => st.keys.revoke_by_operator(statement.key),
        }
        for lease in self.revoked {
            st.retire(now, lease, Removal::Revoked);
        }
        statement
    }
}

/// An operator's grant of a name.
#[derive(Debug)]
pub struct Grant {
    name: String,
    key: VendorKey,
}

impl Change for Grant {
    type Applied = ();

    fn apply(self, st: &mut RegistryState, _now: Millis, _batch: Batch) {
        st.catalog.grant(&self.name, &self.key);
    }
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushStats {
    /// Lease rows written.
    pub leases: usize,
    /// Registrations deleted (expired).
    pub deleted: usize,
    /// Whether a transaction was committed at all.
    pub committed: bool,
}

/// The write-behind of renewals and expiries.
#[derive(Debug)]
pub struct Flush;

impl Change for Flush {
    type Applied = FlushStats;

    fn apply(self, st: &mut RegistryState, now: Millis, batch: Batch) -> FlushStats {
        st.last_flush = now;
        FlushStats {
            leases: batch.leases.len(),
            deleted: batch.delete.len(),
            committed: true,
        }
    }

    fn abandon(self, st: &mut RegistryState, batch: Batch) {
        // Kept for the next flush (forgotten lease revocations are forgotten again, from
        // memory, by a later flush; their rows stay until then).
        for (id, _) in batch.leases {
            if st.table.get(&id).is_some() {
                st.dirty.insert(id, ());
            }
        }
        st.deleted.extend(batch.delete);
        st.clients
            .mark_dirty(batch.clients.into_iter().map(|c| c.key));
        st.usage.restore(
            batch
                .usage
                .into_iter()
                .map(|u| {
                    let counts = UsageCounts {
                        handed_out: u.handed_out,
                        bytes: u.bytes,
                        calls: u.calls,
                        failed: u.failed,
                    };
                    (
                        (u.hour_ms, u.client, std::sync::Arc::from(u.service)),
                        counts,
                    )
                })
                .collect(),
        );
    }
}

/// A reservation of event numbers (the batch carries it; applying it is
/// [`RegistryState::apply`]'s one step common to every change).
#[derive(Debug)]
pub struct Reserve;

impl Change for Reserve {
    type Applied = ();

    fn apply(self, _st: &mut RegistryState, _now: Millis, _batch: Batch) {}
}

/// Many registrations loaded at once.
#[derive(Debug)]
pub struct BulkLoad {
    loaded: Vec<(LeaseId, Manifest, u64)>,
}

impl Change for BulkLoad {
    type Applied = Result<Vec<LeaseId>, RegisterError>;

    fn apply(self, st: &mut RegistryState, now: Millis, _batch: Batch) -> Self::Applied {
        let mut out = Vec::with_capacity(self.loaded.len());
        for (lease, manifest, ttl_ms) in self.loaded {
            st.enter(now, lease, &manifest, ttl_ms, false)?;
            out.push(lease);
        }
        Ok(out)
    }
}
