//! Freshness statements in the state machine: planning one (the vendor's standing and its
//! names checked, and that it is newer than what is held), applying it once committed, and
//! the statement served with a candidate.

use super::RegistryState;
use super::change::{Change, Planned};
use crate::core::lease_table::Millis;
use crate::errors::FreshnessRefused;
use crate::store::Batch;
use courier_protocol::{FreshnessStatement, LeaseId, SignedFreshness, VendorKey};

impl RegistryState {
    /// Plans keeping `signed` (verified as `statement`, whose vendor is `key`, the
    /// connection's) as the latest statement of every service it names at `now`. `key`
    /// must be active and own, or be granted, each name (or hold a root's delegation of
    /// it); the statement must be newer than the one held for each. `None`: it is held
    /// already (a retry).
    pub fn plan_freshness(
        &self,
        now: Millis,
        key: &VendorKey,
        statement: FreshnessStatement,
        signed: SignedFreshness,
    ) -> Result<Option<Planned<Freshness>>, FreshnessRefused> {
        self.keys.check_active(key)?;
        for service in statement.services.keys() {
            // As for a registration: a key a vendor root delegated the name to acts for the
            // root, which owns it.
            let owner = self.name_owner_for(now, key, service);
            let owned = self.catalog.owner(service).is_some()
                && self.catalog.admit_for(service, &owner, key).is_ok();
            if !owned {
                return Err(FreshnessRefused::NotOwner(service.clone()));
            }
        }
        if !self.freshness.admit(&statement, &signed)? {
            return Ok(None);
        }
        let batch = Batch {
            freshness: vec![signed.clone()],
            ..Default::default()
        };
        Ok(Some(Planned {
            batch,
            change: Freshness { statement, signed },
        }))
    }

    /// The freshness statement served with the candidate `lease`: the latest its service
    /// has from the key acting for its vendor now, or else from its vendor's own key.
    pub fn freshness_of(&self, lease: &LeaseId) -> Option<SignedFreshness> {
        let reg = self.catalog.get(lease)?;
        self.freshness_of_service(&reg.vendor, &reg.name)
    }

    /// The freshness statement of `vendor`'s service `name`, as [`Self::freshness_of`]
    /// chooses it.
    pub fn freshness_of_service(&self, vendor: &VendorKey, name: &str) -> Option<SignedFreshness> {
        let current = self.keys.current(vendor);
        let from_current = self.freshness.get(&current, name);
        let from_own = self.freshness.get(vendor, name);
        match (from_current, from_own) {
            (Some((a, s)), Some((b, _))) if a >= b => Some(s.clone()),
            (_, Some((_, s))) | (Some((_, s)), None) => Some(s.clone()),
            (None, None) => None,
        }
    }

    /// The statements held about these vendors' services, each once (at most
    /// `MAX_STATEMENT_KEYS` vendors are looked at, `MAX_FRESHNESS_ANSWER` statements
    /// answered).
    pub fn freshness_of_vendors(&self, vendors: &[VendorKey]) -> Vec<SignedFreshness> {
        let mut out = Vec::new();
        for v in vendors
            .iter()
            .take(courier_protocol::limits::MAX_STATEMENT_KEYS)
        {
            self.freshness
                .of_vendor(v, &mut out, courier_protocol::limits::MAX_FRESHNESS_ANSWER);
        }
        out
    }

    /// Holds stored statements again (at open; each verified by the caller).
    pub(super) fn restore_freshness(
        &mut self,
        statement: &FreshnessStatement,
        signed: SignedFreshness,
    ) {
        self.freshness.apply(statement, signed);
    }
}

/// A freshness statement to hold.
#[derive(Debug)]
pub struct Freshness {
    statement: FreshnessStatement,
    signed: SignedFreshness,
}

impl Change for Freshness {
    type Applied = FreshnessStatement;

    fn apply(self, st: &mut RegistryState, _now: Millis, _batch: Batch) -> Self::Applied {
        st.freshness.apply(&self.statement, self.signed);
        self.statement
    }
}
