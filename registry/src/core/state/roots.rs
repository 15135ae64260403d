//! Vendor roots in the state machine: publishing a root statement or a further delegation
//! (checked, committed, then applied), who owns a name a delegated key registers, and
//! whether a delegated key may still renew.

use super::RegistryState;
use super::change::{Change, Planned};
use crate::core::lease_table::Millis;
use crate::core::roots::{RootRefused, owner_key};
use crate::store::{Batch, Removal};
use courier_protocol::{
    DelegationStatement, LeaseId, RootBatch, RootSince, RootStatement, SignedDelegation,
    SignedRootStatement, VendorKey,
};

/// Why a delegated key may no longer act for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the root that owns the name no longer delegates it to this key")]
pub struct NotDelegated;

impl RegistryState {
    /// Who a registration of `name` by `key` is made for: the root whose delegation lets
    /// `key` sign for `name` now (standing as [`owner_key`]), or `key` itself.
    pub(super) fn name_owner_for(&self, now: Millis, key: &VendorKey, name: &str) -> VendorKey {
        self.roots
            .root_for(key, name, self.wall_ms(now))
            .map_or(*key, |root| owner_key(&root))
    }

    /// `Err` when `name` belongs to a root and `key` is not its owner and no longer holds
    /// a delegation for it (revoked, replaced, expired).
    pub(super) fn check_root_grant(
        &self,
        now: Millis,
        key: &VendorKey,
        name: &str,
    ) -> Result<(), NotDelegated> {
        let Some(owner) = self.catalog.owner(name) else {
            return Ok(());
        };
        match self.roots.root_of_owner(&owner) {
            Some(root) if !self.roots.authorized(&root, key, name, self.wall_ms(now)) => {
                Err(NotDelegated)
            }
            _ => Ok(()),
        }
    }

    /// Plans a root statement: verified against the newest held for its root. `Ok(None)`
    /// when it is held already. The registrations of names the root owns by keys the new
    /// statement no longer lets sign for them are removed (event `revoked`).
    pub fn plan_root_statement(
        &self,
        now: Millis,
        signed: SignedRootStatement,
    ) -> Result<Option<Planned<RootChange>>, RootRefused> {
        let Some(statement) = self.roots.admit_root(&signed)? else {
            return Ok(None);
        };
        let owner = owner_key(&statement.root);
        let wall = self.wall_ms(now);
        let revoked: Vec<LeaseId> = self
            .catalog
            .iter()
            .filter(|r| self.catalog.owner(&r.name) == Some(owner))
            .filter(|r| {
                !self
                    .roots
                    .authorized_under(&statement, &r.vendor, &r.name, wall)
            })
            .map(|r| r.lease)
            .collect();
        let mut batch = self.batch_reserving(revoked.len() as u64);
        batch.root_statements.push(signed.clone());
        batch.delete = revoked.iter().map(|l| (*l, Removal::Revoked)).collect();
        Ok(Some(Planned {
            batch,
            change: RootChange {
                statement,
                signed,
                revoked,
            },
        }))
    }

    /// Plans a further delegation: verified, and within what its parent holds. `Ok(None)`
    /// when it is held already.
    pub fn plan_delegation(
        &self,
        signed: SignedDelegation,
    ) -> Result<Option<Planned<DelegationChange>>, RootRefused> {
        let Some(statement) = self.roots.admit_delegation(&signed)? else {
            return Ok(None);
        };
        let batch = Batch {
            delegations: vec![signed.clone()],
            ..Default::default()
        };
        Ok(Some(Planned {
            batch,
            change: DelegationChange { statement, signed },
        }))
    }

    /// The roots asked about of which no statement is held.
    pub fn unknown_roots(&self, asked: &[RootSince]) -> Vec<RootSince> {
        asked
            .iter()
            .filter(|a| !self.roots.knows(&a.root))
            .take(courier_protocol::MAX_ROOTS_ASKED)
            .map(|a| RootSince {
                root: a.root,
                after_version: 0,
            })
            .collect()
    }

    /// Every root held, with the newest version held.
    pub fn held_roots(&self) -> Vec<RootSince> {
        self.roots.held()
    }

    /// The root statements newer than each version asked, and the delegations under them.
    pub fn root_statements(&self, asked: &[RootSince]) -> RootBatch {
        self.roots.statements_for(asked)
    }
}

/// A root statement to apply.
#[derive(Debug)]
pub struct RootChange {
    statement: RootStatement,
    signed: SignedRootStatement,
    revoked: Vec<LeaseId>,
}

impl Change for RootChange {
    type Applied = RootStatement;

    fn apply(self, st: &mut RegistryState, now: Millis, _batch: Batch) -> RootStatement {
        st.roots.apply_root(self.statement.clone(), self.signed);
        for lease in self.revoked {
            st.retire(now, lease, Removal::Revoked);
        }
        self.statement
    }
}

/// A further delegation to apply.
#[derive(Debug)]
pub struct DelegationChange {
    statement: DelegationStatement,
    signed: SignedDelegation,
}

impl Change for DelegationChange {
    type Applied = DelegationStatement;

    fn apply(self, st: &mut RegistryState, _now: Millis, _batch: Batch) -> DelegationStatement {
        st.roots
            .apply_delegation(self.statement.clone(), self.signed);
        self.statement
    }
}
