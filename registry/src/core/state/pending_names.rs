//! The stored owners of service names, held while a start restores the registrations, so
//! that each name is claimed just before its first registration goes in. A name claimed
//! alone is a boxed record, and one whose owner's registration then goes in shrinks to
//! that registration's pointer: claimed one by one, each record's memory is used again by
//! the next; claimed all first, a million freed records would stay in the heap's free
//! lists (48 MB at a million names). For the same reason each stored name's text is let go
//! as it is taken.

use courier_protocol::VendorKey;
use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Stored `(name, owner)` pairs not claimed yet.
#[derive(Debug, Default)]
pub struct PendingNames {
    names: Vec<(String, VendorKey)>,
    /// Positions in `names` of those not taken yet, by the name's hash.
    index: HashTable<usize>,
    /// Keyed: the names come from vendors.
    hasher: RandomState,
}

impl PendingNames {
    /// The stored pairs (a name stored twice keeps its first owner, as claiming it twice
    /// would).
    pub fn new(names: Vec<(String, VendorKey)>) -> Self {
        let hasher = RandomState::new();
        let mut index = HashTable::with_capacity(names.len());
        for (i, (name, _)) in names.iter().enumerate() {
            let hash = hasher.hash_one(name.as_str());
            let seen = |&j: &usize| names[j].0 == *name;
            if index.find(hash, seen).is_none() {
                index.insert_unique(hash, i, |&j: &usize| hasher.hash_one(names[j].0.as_str()));
            }
        }
        Self {
            names,
            index,
            hasher,
        }
    }

    /// The stored owner of `name`, if it has one not taken yet (it is taken now).
    pub fn take(&mut self, name: &str) -> Option<VendorKey> {
        let hash = self.hasher.hash_one(name);
        let names = &self.names;
        let pos = self
            .index
            .find_entry(hash, |&j| names[j].0 == *name)
            .ok()?
            .remove()
            .0;
        // Its text goes now, while the claim that copies it can use the memory again.
        drop(std::mem::take(&mut self.names[pos].0));
        Some(self.names[pos].1)
    }

    /// Every pair not taken, in the order stored.
    pub fn rest(self) -> impl Iterator<Item = (String, VendorKey)> {
        let mut left = vec![false; self.names.len()];
        for &j in self.index.iter() {
            left[j] = true;
        }
        self.names
            .into_iter()
            .zip(left)
            .filter_map(|(pair, left)| left.then_some(pair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_taken_once_and_the_rest_come_back_in_order() {
        let k = |b: u8| VendorKey([b; 32]);
        let mut p = PendingNames::new(vec![
            ("a".into(), k(1)),
            ("b".into(), k(2)),
            ("a".into(), k(3)),
            ("c".into(), k(4)),
        ]);
        assert_eq!(p.take("a"), Some(k(1)));
        assert_eq!(p.take("a"), None);
        assert_eq!(p.take("zz"), None);
        let rest: Vec<_> = p.rest().collect();
        assert_eq!(rest, vec![("b".into(), k(2)), ("c".into(), k(4))]);
    }
}
