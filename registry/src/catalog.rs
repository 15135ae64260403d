//! The catalog: live registrations indexed by unversioned interface name
//! (`namespace:package/interface`), and who owns which service name.
//!
//! Strings that repeat across registrations (interface names, function names, attribute
//! keys and values, vendor keys) are interned as shared `Arc`s, so 100,000 registrations
//! cost little more than their distinct strings; an interned string is dropped when the last
//! registration using it goes. The signed manifest itself is not kept in memory: the store
//! has it, and it is read only for the candidates a query returns.
//!
//! Ownership: a service name belongs to the vendor key that first registered it; an operator
//! may grant it to more keys. Each allowed key has at most one registration of the name at a
//! time (registering again replaces it).

use crate::lease_table::LeaseMap;
use courier_protocol::{InterfaceName, LeaseId, Manifest, VendorKey};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

/// Strings (or keys) shared between registrations.
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

    /// Drops `value` from the interner if nothing but the interner holds it any more. Call
    /// after dropping a registration's own copy.
    pub fn release(&mut self, value: &Arc<T>) {
        // One count for the interner, one for the caller's `value`.
        if Arc::strong_count(value) <= 2 {
            self.set.remove(&**value);
        }
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

impl Interner<VendorKey> {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: &VendorKey) -> Arc<VendorKey> {
        self.intern_with(value, |v| Arc::new(*v))
    }
}

/// One exported interface of a registration, as the matcher needs it.
#[derive(Debug)]
pub struct ExportEntry {
    /// `namespace:package/interface`: the index key.
    pub key: Arc<str>,
    /// The full name with version, e.g. `courier:echo/echo@0.1.0`.
    pub versioned: Arc<str>,
    /// The interface version.
    pub version: semver::Version,
    /// Exported functions, sorted by name.
    pub functions: Box<[Arc<str>]>,
}

/// A live registration, as the matcher and the events need it.
#[derive(Debug)]
pub struct Registration {
    /// Its lease.
    pub lease: LeaseId,
    /// The service name.
    pub name: Arc<str>,
    /// The vendor key it is registered under.
    pub vendor: Arc<VendorKey>,
    /// The proxy version.
    pub version: semver::Version,
    /// Exported interfaces.
    pub exports: Box<[ExportEntry]>,
    /// Attributes, sorted by key.
    pub attributes: Box<[(Arc<str>, Arc<str>)]>,
}

impl Registration {
    /// The export under the unversioned `key`, if any.
    pub fn export(&self, key: &str) -> Option<&ExportEntry> {
        self.exports.iter().find(|e| &*e.key == key)
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
        self.exports
            .iter()
            .map(|e| e.versioned.to_string())
            .collect()
    }
}

/// Who may use a service name, and its live registrations.
#[derive(Debug)]
struct NameEntry {
    owner: Arc<VendorKey>,
    granted: Box<[Arc<VendorKey>]>,
    /// Live registrations, one per allowed key.
    active: Vec<(Arc<VendorKey>, LeaseId)>,
}

impl NameEntry {
    fn allows(&self, key: &VendorKey) -> bool {
        *self.owner == *key || self.granted.iter().any(|g| **g == *key)
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
            Some(entry) if entry.allows(key) => Ok(Admission {
                claims_name: false,
                replaces: entry
                    .active
                    .iter()
                    .find(|(k, _)| **k == *key)
                    .map(|(_, l)| *l),
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
        let name = self.strings.intern(name);
        self.names.insert(
            name,
            NameEntry {
                owner,
                granted: Box::new([]),
                active: Vec::new(),
            },
        );
    }

    /// Lets `key` use `name` too. An unowned name becomes `key`'s.
    pub fn grant(&mut self, name: &str, key: &VendorKey) {
        let key = self.vendors.intern(key);
        match self.names.get_mut(name) {
            None => {
                let name = self.strings.intern(name);
                self.names.insert(
                    name,
                    NameEntry {
                        owner: key,
                        granted: Box::new([]),
                        active: Vec::new(),
                    },
                );
            }
            Some(entry) if entry.allows(&key) => {}
            Some(entry) => {
                let mut g = entry.granted.to_vec();
                g.push(key);
                entry.granted = g.into_boxed_slice();
            }
        }
    }

    /// The owner of `name`, if it has one.
    pub fn owner(&self, name: &str) -> Option<VendorKey> {
        self.names.get(name).map(|e| *e.owner)
    }

    /// Inserts a registration under `lease` (the caller has checked [`Catalog::admit`] and
    /// removed what it replaces). Claims the name if it is unowned.
    pub fn insert(
        &mut self,
        lease: LeaseId,
        manifest: &Manifest,
    ) -> Result<Arc<Registration>, CatalogError> {
        let mut exports = Vec::with_capacity(manifest.exports.len());
        for e in &manifest.exports {
            let parsed: InterfaceName = e
                .interface
                .parse()
                .map_err(|_| CatalogError::Interface(e.interface.clone()))?;
            let version = parsed
                .version
                .clone()
                .ok_or_else(|| CatalogError::Interface(e.interface.clone()))?;
            let mut functions: Vec<Arc<str>> = e
                .functions
                .iter()
                .map(|f| self.strings.intern(f.as_str()))
                .collect();
            functions.sort();
            functions.dedup();
            exports.push(ExportEntry {
                key: self.strings.intern(parsed.unversioned().as_str()),
                versioned: self.strings.intern(e.interface.as_str()),
                version,
                functions: functions.into_boxed_slice(),
            });
        }
        let attributes: Vec<(Arc<str>, Arc<str>)> = manifest
            .attributes
            .iter()
            .map(|(k, v)| {
                (
                    self.strings.intern(k.as_str()),
                    self.strings.intern(v.as_str()),
                )
            })
            .collect();
        self.claim(&manifest.name, &manifest.vendor_key);
        let vendor = self.vendors.intern(&manifest.vendor_key);
        let name = self.strings.intern(manifest.name.as_str());
        let reg = Arc::new(Registration {
            lease,
            name: name.clone(),
            vendor: vendor.clone(),
            version: manifest
                .semver()
                .unwrap_or_else(|| semver::Version::new(0, 0, 0)),
            exports: exports.into_boxed_slice(),
            attributes: attributes.into_boxed_slice(),
        });
        for e in reg.exports.iter() {
            self.by_interface
                .entry(e.key.clone())
                .or_default()
                .push(reg.clone());
        }
        if let Some(entry) = self.names.get_mut(&*name) {
            entry.active.push((vendor, lease));
        }
        self.regs.insert(lease, reg.clone());
        Ok(reg)
    }

    /// Removes the registration under `lease`, returning it.
    pub fn remove(&mut self, lease: &LeaseId) -> Option<Arc<Registration>> {
        let reg = self.regs.remove(lease)?;
        for e in reg.exports.iter() {
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
            entry.active.retain(|(_, l)| l != lease);
            if entry.active.is_empty() {
                entry.active = Vec::new();
            }
        }
        // Un-intern the strings this registration alone used (events may still hold the
        // registration; the strings then live on there, just no longer shared). A string
        // used twice by one registration escapes this; the occasional sweep catches it.
        self.release_strings(&reg);
        self.removed_since_sweep += 1;
        if self.removed_since_sweep > 1024 && self.removed_since_sweep > self.strings.len() {
            self.strings.sweep();
            self.removed_since_sweep = 0;
        }
        Some(reg)
    }

    fn release_strings(&mut self, reg: &Registration) {
        for e in reg.exports.iter() {
            self.strings.release(&e.key);
            self.strings.release(&e.versioned);
            for f in e.functions.iter() {
                self.strings.release(f);
            }
        }
        for (k, v) in reg.attributes.iter() {
            self.strings.release(k);
            self.strings.release(v);
        }
    }

    /// The registration under `lease`.
    pub fn get(&self, lease: &LeaseId) -> Option<&Arc<Registration>> {
        self.regs.get(lease)
    }

    /// The registrations exporting the unversioned interface `key`.
    pub fn by_interface(&self, key: &str) -> &[Arc<Registration>] {
        self.by_interface
            .get(key)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// The interned copy of `s` if any registration uses it (for pointer comparisons).
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
        c.insert(LeaseId([1; 16]), &m).unwrap();
        let m2 = manifest(
            "acme/kv",
            1,
            "1.0.0",
            &[("courier:kv/store@0.1.0", &["get", "set"])],
        );
        c.insert(LeaseId([2; 16]), &m2).unwrap();
        assert_eq!(c.by_interface("courier:echo/echo").len(), 1);
        assert_eq!(c.by_interface("courier:kv/store").len(), 1);
        assert!(c.by_interface("courier:kv/other").is_empty());
        assert_eq!(c.interfaces(), 2);
        assert!(c.interned("get").is_some());
        c.remove(&LeaseId([2; 16])).unwrap();
        assert!(c.by_interface("courier:kv/store").is_empty());
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
        c.insert(LeaseId([1; 16]), &m).unwrap();
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
