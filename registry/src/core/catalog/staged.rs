//! Staged registrations: a vendor's new version kept under its lease but seen by no client
//! until a rollout lets some see it. A staged registration is indexed like any other (its
//! slots carry [`Slot::GATED`], so the matcher asks the rollouts before it counts one)
//! and replaces nothing; the key's live registration of the name goes on being what
//! everyone else matches. Registering a staged version again replaces the key's earlier
//! staged one (unless a completed rollout shows that one to everyone).

use super::{Admission, Catalog, CatalogError, Registration};
use crate::core::lease_table::Millis;
use courier_protocol::{LeaseId, Manifest, VendorKey};
use std::sync::Arc;

impl Catalog {
    /// Checks whether `key`, acting for `owner`, may stage a registration of `name`
    /// (which staged one it replaces is the state's to say: not one a completed rollout
    /// shows to everyone).
    pub fn admit_staged(
        &self,
        name: &str,
        owner: &VendorKey,
        key: &VendorKey,
    ) -> Result<Admission, CatalogError> {
        let admission = self.admit_for(name, owner, key)?;
        Ok(Admission {
            claims_name: admission.claims_name,
            replaces: None,
        })
    }

    /// Inserts a staged registration (the caller checked [`Catalog::admit_staged`] and
    /// removed what it replaces).
    pub fn insert_staged(
        &mut self,
        lease: LeaseId,
        manifest: &Manifest,
        deadline: Millis,
    ) -> Result<Arc<Registration>, CatalogError> {
        self.insert_as(lease, manifest, deadline, true)
    }

    /// Whether the registration under `lease` is staged.
    pub fn is_staged(&self, lease: &LeaseId) -> bool {
        !self.staged.is_empty() && self.staged.contains_key(lease)
    }

    /// Every staged registration's lease.
    pub fn staged_leases(&self) -> impl Iterator<Item = &LeaseId> {
        self.staged.keys()
    }

    /// The staged registrations of `name`.
    pub fn staged_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Arc<Registration>> {
        self.staged
            .keys()
            .filter_map(|l| self.regs.get(l))
            .filter(move |r| *r.name == *name)
    }
}
