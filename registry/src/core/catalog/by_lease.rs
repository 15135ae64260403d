//! The live registrations by lease: a hash table of bare `Arc<Registration>` pointers (8
//! bytes a slot), each found by the lease id it holds. A map keyed by the id would store
//! the 16-byte id beside each pointer: at a million registrations, where the table has
//! 2^21 slots, that is 33 MB more for an id every registration already carries.

use super::Registration;
use crate::core::lease_table::LeaseIdHasher;
use courier_protocol::LeaseId;
use hashbrown::HashTable;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;

/// The registrations, by their leases.
#[derive(Debug, Default)]
pub struct ByLease {
    table: HashTable<Arc<Registration>>,
}

/// The hash of a lease id (the table's only hash).
fn hash(lease: &LeaseId) -> u64 {
    BuildHasherDefault::<LeaseIdHasher>::default().hash_one(lease)
}

impl ByLease {
    /// Puts `reg` under its lease, returning the registration it replaces, if any.
    pub fn insert(&mut self, reg: Arc<Registration>) -> Option<Arc<Registration>> {
        let lease = reg.lease;
        match self
            .table
            .entry(hash(&lease), |r| r.lease == lease, |r| hash(&r.lease))
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                Some(std::mem::replace(e.get_mut(), reg))
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(reg);
                None
            }
        }
    }

    /// Takes the registration under `lease` out.
    pub fn remove(&mut self, lease: &LeaseId) -> Option<Arc<Registration>> {
        self.table
            .find_entry(hash(lease), |r| r.lease == *lease)
            .ok()
            .map(|e| e.remove().0)
    }

    /// The registration under `lease`.
    pub fn get(&self, lease: &LeaseId) -> Option<&Arc<Registration>> {
        self.table.find(hash(lease), |r| r.lease == *lease)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Every registration, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &Arc<Registration>> {
        self.table.iter()
    }
}
