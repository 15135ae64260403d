//! Interning: values shared between registrations (strings, versions, keys, whole sets),
//! each with a small id unique among the values held, so a registration costs little more
//! than its own name and the sets the matcher reads stay in cache.

use courier_protocol::VendorKey;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// Values shared between registrations, each with a small id that is unique among the
/// values held (an id freed by [`Interner::sweep`] is reused).
#[derive(Debug)]
pub struct Interner<T: ?Sized + Hash + Eq> {
    set: HashMap<Arc<T>, u32>,
    free: Vec<u32>,
    next: u32,
}

impl<T: ?Sized + Hash + Eq> Default for Interner<T> {
    fn default() -> Self {
        Self {
            set: HashMap::new(),
            free: Vec::new(),
            next: 0,
        }
    }
}

impl<T: ?Sized + Hash + Eq> Interner<T> {
    /// The shared copy of `value`, made with `make` if absent.
    pub fn intern_with(&mut self, value: &T, make: impl FnOnce(&T) -> Arc<T>) -> Arc<T> {
        if let Some((v, _)) = self.set.get_key_value(value) {
            return v.clone();
        }
        self.insert_new(make(value))
    }

    /// Adds `v` (known to be absent) under a fresh id.
    fn insert_new(&mut self, v: Arc<T>) -> Arc<T> {
        let id = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.set.insert(v.clone(), id);
        v
    }

    /// The shared copy of `value` if some registration uses it.
    pub fn get(&self, value: &T) -> Option<&Arc<T>> {
        self.set.get_key_value(value).map(|(v, _)| v)
    }

    /// The id of an interned value (`u32::MAX` if it is not held).
    pub fn id(&self, value: &T) -> u32 {
        self.set.get(value).copied().unwrap_or(u32::MAX)
    }

    /// Drops every value nothing but the interner holds, freeing its id.
    pub fn sweep(&mut self) {
        let free = &mut self.free;
        self.set.retain(|v, id| {
            let used = Arc::strong_count(v) > 1;
            if !used {
                free.push(*id);
            }
            used
        });
    }
}

impl Interner<str> {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: &str) -> Arc<str> {
        self.intern_with(value, |v| Arc::from(v))
    }
}

impl<T: Hash + Eq> Interner<Box<[T]>> {
    /// The shared copy of the set `value`.
    pub fn intern_set(&mut self, value: Vec<T>) -> Set<T> {
        let value = value.into_boxed_slice();
        if let Some(v) = self.get(&value) {
            return v.clone();
        }
        self.insert_new(Arc::new(value))
    }
}

/// An interned set: a thin pointer (8 bytes where `Arc<[T]>` takes 16), which keeps a
/// registration within a 128-byte allocation.
pub type Set<T> = Arc<Box<[T]>>;

impl Interner<semver::Version> {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: semver::Version) -> Arc<semver::Version> {
        self.intern_with(&value, |v| Arc::new(v.clone()))
    }
}

impl Interner<VendorKey> {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: &VendorKey) -> Arc<VendorKey> {
        self.intern_with(value, |v| Arc::new(*v))
    }
}
