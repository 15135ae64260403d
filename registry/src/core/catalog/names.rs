//! Service names: who owns each, which other keys may use it, and its live registrations.
//!
//! Most names are owned by the key that registered them, with that key's registration live
//! and nothing else: such a name is held as its registration's pointer alone (its name and
//! owner are the registration's), 16 bytes a slot of the table. Any other name (no live
//! registration of its owner, keys granted, another key's registration, a rotated owner)
//! is a boxed record (48 bytes with its allocation). At 1,000,000 names the table has 2^21
//! slots: 17 bytes each against the 41 of a map from the name to its record, and the bare
//! names need no record at all.

use super::Registration;
use courier_protocol::{LeaseId, VendorKey};
use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Keys besides the owner that may use a name, and their live registrations.
#[derive(Debug, Default)]
struct Extra {
    granted: Vec<Arc<VendorKey>>,
    active: Vec<(Arc<VendorKey>, LeaseId)>,
}

impl Extra {
    fn is_empty(&self) -> bool {
        self.granted.is_empty() && self.active.is_empty()
    }
}

/// A name in any state: 40 bytes, a 48-byte allocation.
#[derive(Debug)]
pub(super) struct Record {
    name: Arc<str>,
    owner: Arc<VendorKey>,
    owner_reg: Option<Arc<Registration>>,
    /// Granted keys and their registrations (rare: one pointer when there are none).
    #[allow(clippy::box_collection)]
    extra: Option<Box<Extra>>,
}

impl Record {
    /// Whether nothing but the owner and its registration is known.
    fn plain(&self) -> bool {
        self.extra.as_ref().is_none_or(|x| x.is_empty())
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }
}

/// One name.
#[derive(Debug)]
pub(super) enum NameEntry {
    /// Owned by the key of this live registration, and nothing more.
    Live(Arc<Registration>),
    /// Anything else.
    Record(Box<Record>),
}

impl NameEntry {
    /// The name.
    pub fn name(&self) -> &Arc<str> {
        match self {
            Self::Live(r) => &r.name,
            Self::Record(r) => &r.name,
        }
    }

    /// The key that owns it.
    pub fn owner(&self) -> &Arc<VendorKey> {
        match self {
            Self::Live(r) => &r.vendor,
            Self::Record(r) => &r.owner,
        }
    }

    /// The owner's live registration of it (made under the owner's key, or under the key
    /// the owner rotated from).
    pub fn owner_reg(&self) -> Option<&Arc<Registration>> {
        match self {
            Self::Live(r) => Some(r),
            Self::Record(r) => r.owner_reg.as_ref(),
        }
    }

    /// Whether `key` was granted the name.
    pub fn granted(&self, key: &VendorKey) -> bool {
        match self {
            Self::Live(_) => false,
            Self::Record(r) => r
                .extra
                .as_ref()
                .is_some_and(|x| x.granted.iter().any(|g| **g == *key)),
        }
    }

    /// `key`'s live registration of it, when `key` is not the owner.
    pub fn active_of(&self, key: &VendorKey) -> Option<LeaseId> {
        match self {
            Self::Live(_) => None,
            Self::Record(r) => r
                .extra
                .as_ref()?
                .active
                .iter()
                .find(|(k, _)| **k == *key)
                .map(|(_, l)| *l),
        }
    }

    /// Sets (or clears) the owner's live registration. With one set and nothing else to
    /// remember, the name shrinks to the registration's pointer.
    pub fn set_owner_reg(&mut self, reg: Option<Arc<Registration>>) {
        let bare = match (&*self, &reg) {
            (Self::Live(old), Some(reg)) => *old.vendor == *reg.vendor && *old.name == *reg.name,
            (Self::Record(r), Some(reg)) => {
                r.plain() && *r.owner == *reg.vendor && *r.name == *reg.name
            }
            (_, None) => false,
        };
        match reg {
            Some(reg) if bare => *self = Self::Live(reg),
            reg => self.record().owner_reg = reg,
        }
    }

    /// Lets `key` use the name too (the caller checked it is not the owner).
    pub fn grant(&mut self, key: Arc<VendorKey>) {
        if !self.granted(&key) {
            self.record().extra().granted.push(key);
        }
    }

    /// Notes `key`'s live registration `lease` of the name (`key` is not the owner).
    pub fn add_active(&mut self, key: Arc<VendorKey>, lease: LeaseId) {
        self.record().extra().active.push((key, lease));
    }

    /// Forgets the live registration `lease` of a key that is not the owner (the name
    /// shrinks back to the owner's registration if nothing else is left).
    pub fn remove_active(&mut self, lease: &LeaseId) {
        let Self::Record(r) = self else { return };
        if let Some(x) = r.extra.as_mut() {
            x.active.retain(|(_, l)| l != lease);
        }
        if r.plain() {
            r.extra = None;
            let reg = r.owner_reg.clone();
            self.set_owner_reg(reg);
        }
    }

    /// A key rotation from `from` to `to`: the name becomes `to`'s if `from` owned it, a
    /// grant to `from` passes to `to` (unless `to` owns it), a grant `to` held already
    /// stays, and `from`'s registrations stay, counted as `to`'s.
    pub fn transfer(&mut self, from: &VendorKey, to: &Arc<VendorKey>) {
        let owned = **self.owner() == *from;
        if matches!(self, Self::Live(_)) && !owned {
            return;
        }
        let r = self.record();
        if owned {
            r.owner = to.clone();
        }
        let Some(x) = r.extra.as_mut() else { return };
        // As the store rewrites its rows: `from`'s grant becomes `to`'s, a grant `to` held
        // already stays, and the owner needs none.
        let was_granted = x.granted.iter().any(|g| **g == *from);
        x.granted.retain(|g| **g != *from);
        if was_granted && !x.granted.iter().any(|g| **g == **to) {
            x.granted.push(to.clone());
        }
        if *r.owner == **to {
            x.granted.retain(|g| **g != **to);
        }
        for (k, _) in x.active.iter_mut() {
            if **k == *from {
                *k = to.clone();
            }
        }
    }

    /// The name as a boxed record (making it one if it was a bare registration).
    fn record(&mut self) -> &mut Record {
        if let Self::Live(reg) = self {
            let reg = reg.clone();
            *self = Self::Record(Box::new(Record {
                name: reg.name.clone(),
                owner: reg.vendor.clone(),
                owner_reg: Some(reg),
                extra: None,
            }));
        }
        let Self::Record(r) = self else {
            unreachable!("a bare registration was made a record above")
        };
        r
    }
}

/// Every name the catalog knows, by its text.
#[derive(Debug, Default)]
pub(super) struct Names {
    table: HashTable<NameEntry>,
    /// Names come from vendors: keyed hashing, so none can aim at one bucket.
    hasher: RandomState,
}

impl Names {
    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&NameEntry> {
        let hash = self.hasher.hash_one(name);
        self.table.find(hash, |e| **e.name() == *name)
    }

    /// The entry of `name`, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut NameEntry> {
        let hash = self.hasher.hash_one(name);
        self.table.find_mut(hash, |e| **e.name() == *name)
    }

    /// The entry of `name`, made first with the owner `owner()` if the name has none.
    pub fn claim(&mut self, name: &str, owner: impl FnOnce() -> Arc<VendorKey>) -> &mut NameEntry {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(name);
        self.table
            .entry(
                hash,
                |e| **e.name() == *name,
                |e| hasher.hash_one(&**e.name()),
            )
            .or_insert_with(|| {
                NameEntry::Record(Box::new(Record {
                    name: Arc::from(name),
                    owner: owner(),
                    owner_reg: None,
                    extra: None,
                }))
            })
            .into_mut()
    }

    /// Room for `more` names without growing (a table that grows rehashes every name, and
    /// a bare registration's name is two pointers away).
    pub fn reserve(&mut self, more: usize) {
        let hasher = &self.hasher;
        self.table.reserve(more, |e| hasher.hash_one(&**e.name()));
    }

    /// Every entry, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut NameEntry> {
        self.table.iter_mut()
    }
}
