//! The catalog: live registrations indexed by unversioned interface name
//! (`namespace:package/interface`), and who owns which service name.
//!
//! Memory and cache layout matter here (100,000 registrations, a match in microseconds):
//! - a registration is one allocation holding what the matcher reads: its deadline (a
//!   mirror of the lease table's, kept in step under the same lock), proxy version, first
//!   export inline, and shared pointers to its function and attribute sets;
//! - strings that repeat (interface names, function names, attribute keys and values) and
//!   whole function and attribute sets are interned as shared `Arc`s, so a registration
//!   costs little more than its own name, and the sets the matcher reads stay in cache;
//! - the signed manifest is not kept in memory: the store has it, and it is read only for
//!   the candidates a query returns. The versioned interface name is built on output.
//!
//! Ownership: a service name belongs to the vendor key that first registered it; an operator
//! may grant it to more keys. Each allowed key has at most one registration of the name at a
//! time (registering again replaces it).

use crate::lease_table::{LeaseMap, Millis};
use courier_protocol::{InterfaceName, LeaseId, Manifest, VendorKey};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Values shared between registrations.
#[derive(Debug)]
pub struct Interner<T: ?Sized + Hash + Eq> {
    set: HashSet<Arc<T>>,
}

impl<T: ?Sized + Hash + Eq> Default for Interner<T> {
    fn default() -> Self {
        Self {
            set: HashSet::new(),
        }
    }
}

impl<T: ?Sized + Hash + Eq> Interner<T> {
    /// The shared copy of `value`, made with `make` if absent.
    pub fn intern_with(&mut self, value: &T, make: impl FnOnce(&T) -> Arc<T>) -> Arc<T> {
        if let Some(v) = self.set.get(value) {
            return v.clone();
        }
        let v = make(value);
        self.set.insert(v.clone());
        v
    }

    /// The shared copy of `value` if some registration uses it.
    pub fn get(&self, value: &T) -> Option<&Arc<T>> {
        self.set.get(value)
    }

    /// Drops every value nothing but the interner holds.
    pub fn sweep(&mut self) {
        self.set.retain(|v| Arc::strong_count(v) > 1);
    }

    /// Number of distinct values held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl Interner<str> {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: &str) -> Arc<str> {
        self.intern_with(value, |v| Arc::from(v))
    }
}

impl<T: Clone + Hash + Eq> Interner<[T]> {
    /// The shared copy of the slice `value`.
    pub fn intern_slice(&mut self, value: &[T]) -> Arc<[T]> {
        self.intern_with(value, |v| Arc::from(v))
    }
}

impl Interner<VendorKey> {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: &VendorKey) -> Arc<VendorKey> {
        self.intern_with(value, |v| Arc::new(*v))
    }
}

/// An attribute set: `(key, value)` pairs sorted by key.
pub type Attributes = Arc<[(Arc<str>, Arc<str>)]>;

/// One exported interface of a registration, as the matcher needs it.
#[derive(Debug)]
pub struct ExportEntry {
    /// `namespace:package/interface`: the index key (interned).
    pub key: Arc<str>,
    /// The interface version.
    pub version: semver::Version,
    /// Exported functions, sorted by name (an interned set).
    pub functions: Arc<[Arc<str>]>,
}

impl ExportEntry {
    /// The full name with version, e.g. `courier:echo/echo@0.1.0`.
    pub fn versioned(&self) -> String {
        format!("{}@{}", self.key, self.version)
    }

    /// Whether `name` is this export's interface, with or without its version.
    pub fn is(&self, name: &str) -> bool {
        match name.split_once('@') {
            None => *self.key == *name,
            Some((k, v)) => {
                *self.key == *k && semver::Version::parse(v).is_ok_and(|v| v == self.version)
            }
        }
    }
}

/// A live registration, as the matcher and the events need it: one allocation.
#[derive(Debug)]
pub struct Registration {
    /// Its lease.
    pub lease: LeaseId,
    /// The service name (shared with the ownership map).
    pub name: Arc<str>,
    /// The vendor key it is registered under.
    pub vendor: Arc<VendorKey>,
    /// The proxy version.
    pub version: semver::Version,
    /// The first exported interface (a manifest has at least one).
    pub first: ExportEntry,
    /// Any further exported interfaces.
    pub more: Box<[ExportEntry]>,
    /// Attributes (an interned set).
    pub attributes: Attributes,
    deadline: AtomicU64,
}

impl Registration {
    /// Every exported interface.
    pub fn exports(&self) -> impl Iterator<Item = &ExportEntry> {
        std::iter::once(&self.first).chain(self.more.iter())
    }

    /// The export under the interned unversioned `key` (compared by pointer), if any.
    pub fn export(&self, key: &Arc<str>) -> Option<&ExportEntry> {
        self.exports().find(|e| Arc::ptr_eq(&e.key, key))
    }

    /// The attribute `key`'s value, if present.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.attributes[i].1)
    }

    /// The full interface names, for events and listings.
    pub fn interface_names(&self) -> Vec<String> {
        self.exports().map(ExportEntry::versioned).collect()
    }

    /// The lease deadline, as last set by the lease table's owner.
    pub fn deadline(&self) -> Millis {
        Millis(self.deadline.load(Ordering::Relaxed))
    }

    /// Mirrors a new deadline from the lease table (call under the same lock).
    pub fn set_deadline(&self, deadline: Millis) {
        self.deadline.store(deadline.0, Ordering::Relaxed);
    }
}

/// Keys besides the owner that may use a name, and their live registrations.
#[derive(Debug, Default)]
struct NameExtra {
    granted: Vec<Arc<VendorKey>>,
    active: Vec<(Arc<VendorKey>, LeaseId)>,
}

/// Who may use a service name, and its live registrations (the owner's inline).
#[derive(Debug)]
struct NameEntry {
    owner: Arc<VendorKey>,
    owner_lease: Option<LeaseId>,
    extra: Option<Box<NameExtra>>,
}

impl NameEntry {
    fn new(owner: Arc<VendorKey>) -> Self {
        Self {
            owner,
            owner_lease: None,
            extra: None,
        }
    }

    fn granted(&self, key: &VendorKey) -> bool {
        self.extra
            .as_ref()
            .is_some_and(|x| x.granted.iter().any(|g| **g == *key))
    }
}

/// Why a registration cannot go into the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The name belongs to another vendor key.
    #[error("service name {name:?} belongs to another vendor key")]
    NotOwner {
        /// The name.
        name: String,
    },
    /// An export's interface name does not parse (the manifest was not validated).
    #[error("invalid interface name {0:?}")]
    Interface(String),
}

/// What registering a name would do, checked before anything is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The key is new to the name: it becomes the owner.
    pub claims_name: bool,
    /// The registration this one replaces (same name, same key).
    pub replaces: Option<LeaseId>,
}

/// The catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    regs: LeaseMap<Arc<Registration>>,
    by_interface: HashMap<Arc<str>, Vec<Arc<Registration>>>,
    names: HashMap<Arc<str>, NameEntry>,
    strings: Interner<str>,
    function_sets: Interner<[Arc<str>]>,
    attribute_sets: Interner<[(Arc<str>, Arc<str>)]>,
    vendors: Interner<VendorKey>,
    removed_since_sweep: usize,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks whether `key` may register `name`, and what it would replace.
    pub fn admit(&self, name: &str, key: &VendorKey) -> Result<Admission, CatalogError> {
        match self.names.get(name) {
            None => Ok(Admission {
                claims_name: true,
                replaces: None,
            }),
            Some(entry) if *entry.owner == *key => Ok(Admission {
                claims_name: false,
                replaces: entry.owner_lease,
            }),
            Some(entry) if entry.granted(key) => Ok(Admission {
                claims_name: false,
                replaces: entry
                    .extra
                    .as_ref()
                    .and_then(|x| x.active.iter().find(|(k, _)| **k == *key).map(|(_, l)| *l)),
            }),
            Some(_) => Err(CatalogError::NotOwner {
                name: name.to_string(),
            }),
        }
    }

    /// Records that `key` owns `name` (first registration, or loaded from the store).
    /// Does nothing if the name has an owner already.
    pub fn claim(&mut self, name: &str, key: &VendorKey) {
        if self.names.contains_key(name) {
            return;
        }
        let owner = self.vendors.intern(key);
        self.names.insert(Arc::from(name), NameEntry::new(owner));
    }

    /// Lets `key` use `name` too. An unowned name becomes `key`'s.
    pub fn grant(&mut self, name: &str, key: &VendorKey) {
        let key = self.vendors.intern(key);
        match self.names.get_mut(name) {
            None => {
                self.names.insert(Arc::from(name), NameEntry::new(key));
            }
            Some(entry) if *entry.owner == *key || entry.granted(&key) => {}
            Some(entry) => entry
                .extra
                .get_or_insert_with(Default::default)
                .granted
                .push(key),
        }
    }

    /// The owner of `name`, if it has one.
    pub fn owner(&self, name: &str) -> Option<VendorKey> {
        self.names.get(name).map(|e| *e.owner)
    }

    fn export_entry(
        &mut self,
        interface: &str,
        functions: &[String],
    ) -> Result<ExportEntry, CatalogError> {
        let parsed: InterfaceName = interface
            .parse()
            .map_err(|_| CatalogError::Interface(interface.to_string()))?;
        let version = parsed
            .version
            .clone()
            .ok_or_else(|| CatalogError::Interface(interface.to_string()))?;
        let mut fs: Vec<Arc<str>> = functions.iter().map(|f| self.strings.intern(f)).collect();
        fs.sort();
        fs.dedup();
        Ok(ExportEntry {
            key: self.strings.intern(&parsed.unversioned()),
            version,
            functions: self.function_sets.intern_slice(&fs),
        })
    }

    /// Inserts a registration under `lease` whose lease runs until `deadline` (the caller
    /// has checked [`Catalog::admit`] and removed what it replaces). Claims the name if it is
    /// unowned.
    pub fn insert(
        &mut self,
        lease: LeaseId,
        manifest: &Manifest,
        deadline: Millis,
    ) -> Result<Arc<Registration>, CatalogError> {
        let mut exports = Vec::with_capacity(manifest.exports.len());
        for e in &manifest.exports {
            exports.push(self.export_entry(&e.interface, &e.functions)?);
        }
        let mut exports = exports.into_iter();
        let first = exports
            .next()
            .ok_or_else(|| CatalogError::Interface("(no exports)".into()))?;
        let attrs: Vec<(Arc<str>, Arc<str>)> = manifest
            .attributes
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        self.claim(&manifest.name, &manifest.vendor_key);
        let vendor = self.vendors.intern(&manifest.vendor_key);
        let name = self
            .names
            .get_key_value(manifest.name.as_str())
            .map(|(k, _)| k.clone())
            .ok_or_else(|| CatalogError::Interface("(name)".into()))?;
        let reg = Arc::new(Registration {
            lease,
            name: name.clone(),
            vendor: vendor.clone(),
            version: manifest
                .semver()
                .unwrap_or_else(|| semver::Version::new(0, 0, 0)),
            first,
            more: exports.collect(),
            attributes: self.attribute_sets.intern_slice(&attrs),
            deadline: AtomicU64::new(deadline.0),
        });
        for e in reg.exports() {
            self.by_interface
                .entry(e.key.clone())
                .or_default()
                .push(reg.clone());
        }
        if let Some(entry) = self.names.get_mut(&*name) {
            if *entry.owner == *vendor {
                entry.owner_lease = Some(lease);
            } else {
                entry
                    .extra
                    .get_or_insert_with(Default::default)
                    .active
                    .push((vendor, lease));
            }
        }
        self.regs.insert(lease, reg.clone());
        Ok(reg)
    }

    /// Removes the registration under `lease`, returning it.
    pub fn remove(&mut self, lease: &LeaseId) -> Option<Arc<Registration>> {
        let reg = self.regs.remove(lease)?;
        for e in reg.exports() {
            if let Some(bucket) = self.by_interface.get_mut(&e.key) {
                if let Some(i) = bucket.iter().position(|r| r.lease == *lease) {
                    bucket.swap_remove(i);
                }
                if bucket.is_empty() {
                    self.by_interface.remove(&e.key);
                }
            }
        }
        if let Some(entry) = self.names.get_mut(&*reg.name) {
            if entry.owner_lease == Some(*lease) {
                entry.owner_lease = None;
            } else if let Some(x) = entry.extra.as_mut() {
                x.active.retain(|(_, l)| l != lease);
            }
        }
        // Interned values nothing else uses any more are dropped by an occasional sweep
        // (amortized O(1) per removal).
        self.removed_since_sweep += 1;
        if self.removed_since_sweep > 1024 && self.removed_since_sweep > self.regs.len() / 4 {
            self.sweep();
        }
        Some(reg)
    }

    /// Drops interned values no registration uses any more.
    pub fn sweep(&mut self) {
        // Sets first: they hold strings.
        self.function_sets.sweep();
        self.attribute_sets.sweep();
        self.strings.sweep();
        self.removed_since_sweep = 0;
    }

    /// The registration under `lease`.
    pub fn get(&self, lease: &LeaseId) -> Option<&Arc<Registration>> {
        self.regs.get(lease)
    }

    /// The interned key and the registrations exporting the unversioned interface `key`.
    pub fn by_interface(&self, key: &str) -> Option<(&Arc<str>, &[Arc<Registration>])> {
        self.by_interface
            .get_key_value(key)
            .map(|(k, v)| (k, v.as_slice()))
    }

    /// The interned copy of `s` if any registration uses it.
    pub fn interned(&self, s: &str) -> Option<&Arc<str>> {
        self.strings.get(s)
    }

    /// Number of registrations.
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// Number of indexed interfaces.
    pub fn interfaces(&self) -> usize {
        self.by_interface.len()
    }

    /// Every registration, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Registration>> {
        self.regs.values()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::{ContentHash, Export, SpkiPin};

    pub(crate) fn manifest(
        name: &str,
        vendor: u8,
        version: &str,
        exports: &[(&str, &[&str])],
    ) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            exports: exports
                .iter()
                .map(|(i, fs)| Export {
                    interface: (*i).into(),
                    functions: fs.iter().map(|f| f.to_string()).collect(),
                })
                .collect(),
            imports: vec![],
            attributes: [("region".to_string(), "eu".to_string())].into(),
            endpoints: vec!["127.0.0.1:1".into()],
            provider_pin: SpkiPin([0; 32]),
            issued_at_ms: 0,
            not_after_ms: u64::MAX,
            component_hash: ContentHash([0; 32]),
            component_size: 1,
            vendor_key: VendorKey([vendor; 32]),
        }
    }

    #[test]
    fn index_by_interface_and_remove_releases_strings() {
        let mut c = Catalog::new();
        let m = manifest(
            "acme/echo",
            1,
            "1.0.0",
            &[("courier:echo/echo@0.1.0", &["say"])],
        );
        c.insert(LeaseId([1; 16]), &m, Millis(10)).unwrap();
        let m2 = manifest(
            "acme/kv",
            1,
            "1.0.0",
            &[("courier:kv/store@0.1.0", &["get", "set"])],
        );
        let reg = c.insert(LeaseId([2; 16]), &m2, Millis(10)).unwrap();
        assert_eq!(reg.deadline(), Millis(10));
        assert_eq!(
            reg.interface_names(),
            vec!["courier:kv/store@0.1.0".to_string()]
        );
        assert!(reg.first.is("courier:kv/store") && reg.first.is("courier:kv/store@0.1.0"));
        assert!(!reg.first.is("courier:kv/store@0.1.1"));
        drop(reg);
        assert_eq!(c.by_interface("courier:echo/echo").unwrap().1.len(), 1);
        assert_eq!(c.by_interface("courier:kv/store").unwrap().1.len(), 1);
        assert!(c.by_interface("courier:kv/other").is_none());
        assert_eq!(c.interfaces(), 2);
        assert!(c.interned("get").is_some());
        c.remove(&LeaseId([2; 16])).unwrap();
        c.sweep();
        assert!(c.by_interface("courier:kv/store").is_none());
        assert!(
            c.interned("get").is_none(),
            "strings only kv used are released"
        );
        assert!(c.interned("say").is_some());
        assert_eq!(c.len(), 1);
        // Name ownership outlives the registration.
        assert_eq!(c.owner("acme/kv"), Some(VendorKey([1; 32])));
    }

    #[test]
    fn ownership_and_replacement() {
        let mut c = Catalog::new();
        let a = VendorKey([1; 32]);
        let b = VendorKey([2; 32]);
        assert_eq!(
            c.admit("acme/echo", &a).unwrap(),
            Admission {
                claims_name: true,
                replaces: None
            }
        );
        let m = manifest(
            "acme/echo",
            1,
            "1.0.0",
            &[("courier:echo/echo@0.1.0", &["say"])],
        );
        c.insert(LeaseId([1; 16]), &m, Millis(10)).unwrap();
        assert_eq!(
            c.admit("acme/echo", &a).unwrap(),
            Admission {
                claims_name: false,
                replaces: Some(LeaseId([1; 16]))
            }
        );
        assert!(matches!(
            c.admit("acme/echo", &b),
            Err(CatalogError::NotOwner { .. })
        ));
        c.grant("acme/echo", &b);
        assert_eq!(
            c.admit("acme/echo", &b).unwrap(),
            Admission {
                claims_name: false,
                replaces: None
            }
        );
        assert_eq!(c.owner("acme/echo"), Some(a));
        c.grant("fresh/name", &b);
        assert_eq!(c.owner("fresh/name"), Some(b));
    }
}
