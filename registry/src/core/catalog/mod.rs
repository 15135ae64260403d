//! The catalog: live registrations indexed by unversioned interface name
//! (`namespace:package/interface`), and who owns which service name.
//!
//! Memory and cache layout matter here (100,000 registrations, a match in microseconds):
//! - a registration is one allocation (120 bytes, a 128-byte malloc chunk): its name, vendor, interned proxy
//!   version, first export inline, and shared pointers to its function and attribute sets;
//! - strings that repeat (interface names, function names, attribute keys and values) and
//!   whole function and attribute sets are interned as shared `Arc`s, so a registration
//!   costs little more than its own name, and the sets the matcher reads stay in cache;
//! - each interface's bucket is a contiguous array of compact [`Slot`]s (32 bytes: deadline,
//!   packed interface and proxy versions, the ids of the interned function and attribute
//!   sets): a query ranks and filters by reading the array
//!   sequentially and touches a full registration only for the candidates it returns (and
//!   once per distinct function or attribute set). Every export records its slot's position,
//!   so a renewal or removal updates the bucket in O(1);
//! - the registrations by lease are a table of bare pointers, each found by the lease id
//!   its registration holds ([`by_lease`]), not a map that would store every id twice;
//! - the signed manifest is not kept in memory: the store has it, and it is read only for
//!   the candidates a query returns. The versioned interface name is built on output.
//!
//! Ownership: a service name belongs to the vendor key that first registered it; an operator
//! may grant it to more keys. Each allowed key has at most one registration of the name at a
//! time (registering again replaces it).

mod by_lease;
mod intern;
mod names;
mod staged;

pub use intern::{Interner, Set};

use crate::core::lease_table::{LeaseMap, Millis};
use courier_protocol::{InterfaceName, LeaseId, Manifest, VendorKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// An attribute set: `(key, value)` pairs sorted by key.
pub type Attributes = Set<(Arc<str>, Arc<str>)>;

/// One exported interface of a registration, as the matcher needs it.
#[derive(Debug)]
pub struct ExportEntry {
    /// `namespace:package/interface`: the index key (interned).
    pub key: Arc<str>,
    /// The interface version (interned).
    pub version: Arc<semver::Version>,
    /// Exported functions, sorted by name (an interned set).
    pub functions: Set<Arc<str>>,
    /// Position of this export's slot in its interface's bucket.
    slot: AtomicU32,
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
                *self.key == *k && semver::Version::parse(v).is_ok_and(|v| v == *self.version)
            }
        }
    }
}

/// A version packed into 32 bits that order like it (10 bits of major, 11 of minor and
/// patch), if it has no prerelease and its parts fit.
pub fn pack32(v: &semver::Version) -> Option<u32> {
    (v.pre.is_empty() && v.major < (1 << 10) && v.minor < (1 << 11) && v.patch < (1 << 11))
        .then_some(((v.major as u32) << 22) | ((v.minor as u32) << 11) | v.patch as u32)
}

/// The version [`pack32`] packed (without build metadata).
pub fn unpack32(p: u32) -> semver::Version {
    semver::Version::new(
        u64::from(p >> 22),
        u64::from((p >> 11) & 0x7ff),
        u64::from(p & 0x7ff),
    )
}

/// One registration's export in its interface's bucket: what ranking and filtering read.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The lease deadline (a mirror of the lease table's, kept in step under the same lock
    /// by [`Catalog::set_deadline`]).
    pub deadline: Millis,
    /// Interface version (high 32 bits) and proxy version (low 32 bits), packed with
    /// [`pack32`]; 0 when either does not pack (the bucket then counts it as unpacked).
    pub versions: u64,
    /// The registration.
    pub reg: Arc<Registration>,
    /// Id of the export's interned function set (equal sets, equal ids).
    pub functions: u32,
    /// Id of the registration's interned attribute set, with [`Slot::GATED`] set when
    /// the registration is staged (seen only by the clients a rollout lets see it).
    pub attributes: u32,
}

impl Slot {
    /// The bit of [`Slot::attributes`] that marks a staged registration (attribute set ids
    /// stay far below it: each is a set in memory).
    pub const GATED: u32 = 1 << 31;

    /// Whether the registration is staged.
    pub fn gated(&self) -> bool {
        self.attributes & Self::GATED != 0
    }

    /// The attribute set id without the staged bit.
    pub fn attribute_set(&self) -> u32 {
        self.attributes & !Self::GATED
    }
}

impl Slot {
    /// The export this slot stands for, found as the export under `key` at position `pos`.
    pub fn export(&self, key: &Arc<str>, pos: usize) -> Option<&ExportEntry> {
        self.reg
            .exports()
            .find(|e| Arc::ptr_eq(&e.key, key) && e.slot.load(Ordering::Relaxed) as usize == pos)
            .or_else(|| self.reg.export(key))
    }
}

/// The registrations exporting one interface.
#[derive(Debug, Default)]
pub struct Bucket {
    /// The slots, in no particular order.
    pub slots: Vec<Slot>,
    /// How many slots have a version that does not pack (the matcher then ranks by full
    /// semver order).
    pub unpacked: usize,
}

/// A live registration, as the matcher and the events need it: one allocation.
#[derive(Debug)]
pub struct Registration {
    /// Its lease.
    pub lease: LeaseId,
    /// The service name (the same text as the name's entry among the owners).
    pub name: Arc<str>,
    /// The vendor key it is registered under.
    pub vendor: Arc<VendorKey>,
    /// The proxy version (interned).
    pub version: Arc<semver::Version>,
    /// The first exported interface (a manifest has at least one).
    pub first: ExportEntry,
    /// Any further exported interfaces (rare: one pointer when there are none).
    #[allow(clippy::box_collection)] // a thin pointer: 8 bytes where a `Vec` takes 24
    pub more: Option<Box<Vec<ExportEntry>>>,
    /// Attributes (an interned set).
    pub attributes: Attributes,
}

impl Registration {
    /// Every exported interface.
    pub fn exports(&self) -> impl Iterator<Item = &ExportEntry> {
        std::iter::once(&self.first).chain(self.more.iter().flat_map(|m| m.iter()))
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
}

/// An exported interface's name and version.
fn parse_export(interface: &str) -> Result<(InterfaceName, semver::Version), CatalogError> {
    let bad = || CatalogError::Interface(interface.to_string());
    let parsed: InterfaceName = interface.parse().map_err(|_| bad())?;
    let version = parsed.version.clone().ok_or_else(bad)?;
    Ok((parsed, version))
}

/// Position of `lease`'s slot for export `e` in `bucket` (its recorded position, checked;
/// a search if it ever disagrees).
fn slot_of(bucket: &Bucket, e: &ExportEntry, lease: &LeaseId) -> Option<usize> {
    let i = e.slot.load(Ordering::Relaxed) as usize;
    if bucket.slots.get(i).is_some_and(|s| s.reg.lease == *lease) {
        return Some(i);
    }
    bucket.slots.iter().position(|s| s.reg.lease == *lease)
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

/// The (name, value) pairs of a registration's attributes.
type AttributeSet = Box<[(Arc<str>, Arc<str>)]>;

/// The catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    regs: by_lease::ByLease,
    by_interface: HashMap<Arc<str>, Bucket>,
    names: names::Names,
    strings: Interner<str>,
    function_sets: Interner<Box<[Arc<str>]>>,
    attribute_sets: Interner<AttributeSet>,
    vendors: Interner<VendorKey>,
    versions: Interner<semver::Version>,
    removed_since_sweep: usize,
    /// Staged registrations (see `staged.rs`).
    staged: LeaseMap<()>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks whether `key` may register `name`, and what it would replace.
    pub fn admit(&self, name: &str, key: &VendorKey) -> Result<Admission, CatalogError> {
        self.admit_for(name, key, key)
    }

    /// Checks whether `key`, acting for `owner` (itself, or a vendor root that delegated
    /// the name to it), may register `name`, and what it would replace: `key`'s own
    /// earlier registration of it.
    pub fn admit_for(
        &self,
        name: &str,
        owner: &VendorKey,
        key: &VendorKey,
    ) -> Result<Admission, CatalogError> {
        match self.names.get(name) {
            None => Ok(Admission {
                claims_name: true,
                replaces: None,
            }),
            Some(entry) if **entry.owner() == *key => Ok(Admission {
                claims_name: false,
                replaces: entry.owner_reg().map(|r| r.lease),
            }),
            Some(entry) if **entry.owner() == *owner || entry.granted(key) => Ok(Admission {
                claims_name: false,
                replaces: entry.active_of(key),
            }),
            Some(_) => Err(CatalogError::NotOwner {
                name: name.to_string(),
            }),
        }
    }

    /// Records that `key` owns `name` (first registration, or loaded from the store).
    /// Does nothing if the name has an owner already.
    pub fn claim(&mut self, name: &str, key: &VendorKey) {
        let vendors = &mut self.vendors;
        self.names.claim(name, || vendors.intern(key));
    }

    /// Room for `more` names, before claiming that many at once.
    pub fn reserve_names(&mut self, more: usize) {
        self.names.reserve(more);
    }

    /// Lets `key` use `name` too. An unowned name becomes `key`'s.
    pub fn grant(&mut self, name: &str, key: &VendorKey) {
        let key = self.vendors.intern(key);
        let entry = self.names.claim(name, || key.clone());
        if **entry.owner() != *key {
            entry.grant(key);
        }
    }

    /// A key rotation: every name `from` owns becomes `to`'s, and every grant to `from`
    /// passes to `to`. Registrations already made under `from` stay where they are (`to`
    /// replaces them by registering the name). O(names): rotations are rare.
    pub fn transfer(&mut self, from: &VendorKey, to: &VendorKey) {
        let to_arc = self.vendors.intern(to);
        for entry in self.names.values_mut() {
            entry.transfer(from, &to_arc);
        }
    }

    /// The owner of `name`, if it has one.
    pub fn owner(&self, name: &str) -> Option<VendorKey> {
        self.names.get(name).map(|e| **e.owner())
    }

    /// Checks that every export of `manifest` can be indexed (its interface name parses
    /// and has a version), so that entering it after a commit cannot fail.
    pub fn check_exports(&self, manifest: &Manifest) -> Result<(), CatalogError> {
        for e in &manifest.exports {
            parse_export(&e.interface)?;
        }
        Ok(())
    }

    fn export_entry(
        &mut self,
        interface: &str,
        functions: &[String],
    ) -> Result<ExportEntry, CatalogError> {
        let (parsed, version) = parse_export(interface)?;
        let mut fs: Vec<Arc<str>> = functions.iter().map(|f| self.strings.intern(f)).collect();
        fs.sort();
        fs.dedup();
        Ok(ExportEntry {
            key: self.strings.intern(&parsed.unversioned()),
            version: self.versions.intern(version),
            functions: self.function_sets.intern_set(fs),
            slot: AtomicU32::new(0),
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
        self.insert_as(lease, manifest, deadline, false)
    }

    /// [`Catalog::insert`], staged or not.
    fn insert_as(
        &mut self,
        lease: LeaseId,
        manifest: &Manifest,
        deadline: Millis,
        staged: bool,
    ) -> Result<Arc<Registration>, CatalogError> {
        let vendors = &mut self.vendors;
        let name = self
            .names
            .claim(&manifest.name, || vendors.intern(&manifest.vendor_key))
            .name()
            .clone();
        let reg = Arc::new(self.build(lease, manifest, name.clone())?);
        let proxy = pack32(&reg.version);
        for e in reg.exports() {
            let bucket = self.by_interface.entry(e.key.clone()).or_default();
            let versions = match (pack32(&e.version), proxy) {
                (Some(i), Some(p)) => (u64::from(i) << 32) | u64::from(p),
                _ => {
                    bucket.unpacked += 1;
                    0
                }
            };
            e.slot.store(bucket.slots.len() as u32, Ordering::Relaxed);
            bucket.slots.push(Slot {
                deadline,
                versions,
                functions: self.function_sets.id(&e.functions),
                attributes: self.attribute_sets.id(&reg.attributes)
                    | if staged { Slot::GATED } else { 0 },
                reg: reg.clone(),
            });
        }
        if staged {
            self.staged.insert(lease, ());
            self.regs.insert(reg.clone());
            return Ok(reg);
        }
        self.note_active(&name, &reg);
        self.regs.insert(reg.clone());
        Ok(reg)
    }

    /// Notes `reg` as its key's live registration of its name.
    fn note_active(&mut self, name: &str, reg: &Arc<Registration>) {
        if let Some(entry) = self.names.get_mut(name) {
            if **entry.owner() == *reg.vendor {
                entry.set_owner_reg(Some(reg.clone()));
            } else {
                entry.add_active(reg.vendor.clone(), reg.lease);
            }
        }
    }

    /// A registration of `manifest` under `lease` that is not in the catalog (one that
    /// left it, for its event).
    pub fn detached(
        &mut self,
        lease: LeaseId,
        manifest: &Manifest,
    ) -> Result<Arc<Registration>, CatalogError> {
        let name = match self.names.get(manifest.name.as_str()) {
            Some(e) => e.name().clone(),
            None => Arc::from(manifest.name.as_str()),
        };
        Ok(Arc::new(self.build(lease, manifest, name)?))
    }

    /// The registration of `manifest` under `lease` and `name` (interned where the catalog
    /// interns), not indexed.
    fn build(
        &mut self,
        lease: LeaseId,
        manifest: &Manifest,
        name: Arc<str>,
    ) -> Result<Registration, CatalogError> {
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
        Ok(Registration {
            lease,
            name,
            vendor: self.vendors.intern(&manifest.vendor_key),
            version: self.versions.intern(
                manifest
                    .semver()
                    .unwrap_or_else(|| semver::Version::new(0, 0, 0)),
            ),
            first,
            more: {
                let more: Vec<ExportEntry> = exports.collect();
                (!more.is_empty()).then(|| Box::new(more))
            },
            attributes: self.attribute_sets.intern_set(attrs),
        })
    }

    /// Removes the registration under `lease`, returning it.
    pub fn remove(&mut self, lease: &LeaseId) -> Option<Arc<Registration>> {
        let reg = self.regs.remove(lease)?;
        let staged = self.staged.remove(lease).is_some();
        for e in reg.exports() {
            if let Some(bucket) = self.by_interface.get_mut(&e.key) {
                if let Some(i) = slot_of(bucket, e, lease) {
                    let gone = bucket.slots.swap_remove(i);
                    if gone.versions == 0 {
                        bucket.unpacked -= 1;
                    }
                    let last = bucket.slots.len();
                    if let Some(moved) = bucket.slots.get(i)
                        && let Some(m) = moved.reg.exports().find(|x| {
                            Arc::ptr_eq(&x.key, &e.key)
                                && x.slot.load(Ordering::Relaxed) as usize == last
                        })
                    {
                        m.slot.store(i as u32, Ordering::Relaxed);
                    }
                }
                if bucket.slots.is_empty() {
                    self.by_interface.remove(&e.key);
                }
            }
        }
        if !staged && let Some(entry) = self.names.get_mut(&reg.name) {
            if entry.owner_reg().is_some_and(|r| r.lease == *lease) {
                entry.set_owner_reg(None);
            } else {
                entry.remove_active(lease);
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

    /// Drops interned values no registration uses any more, and gives back the room of
    /// buckets that shrank to under a quarter of their capacity.
    pub fn sweep(&mut self) {
        for bucket in self.by_interface.values_mut() {
            if bucket.slots.capacity() > 4 * bucket.slots.len() + 16 {
                bucket.slots.shrink_to(2 * bucket.slots.len());
            }
        }
        // Sets first: they hold strings.
        self.function_sets.sweep();
        self.attribute_sets.sweep();
        self.strings.sweep();
        self.versions.sweep();
        self.removed_since_sweep = 0;
    }

    /// Gives back the slack of every bucket (after loading a whole catalog at start-up, when
    /// doubling growth left up to half of each array unused).
    pub fn shrink_to_fit(&mut self) {
        for bucket in self.by_interface.values_mut() {
            bucket.slots.shrink_to_fit();
        }
    }

    /// Sets the lease deadline of the registration under `lease` (the lease table's new
    /// deadline; call under the same lock). O(1) per export.
    pub fn set_deadline(&mut self, lease: &LeaseId, deadline: Millis) {
        let Some(reg) = self.regs.get(lease) else {
            return;
        };
        for e in reg.exports() {
            if let Some(bucket) = self.by_interface.get_mut(&e.key)
                && let Some(i) = slot_of(bucket, e, lease)
            {
                bucket.slots[i].deadline = deadline;
            }
        }
    }

    /// The lease deadline of the registration under `lease`, as last set by the lease
    /// table's owner.
    #[cfg(test)]
    pub fn deadline(&self, lease: &LeaseId) -> Option<Millis> {
        let e = &self.regs.get(lease)?.first;
        let bucket = self.by_interface.get(&e.key)?;
        slot_of(bucket, e, lease).map(|i| bucket.slots[i].deadline)
    }

    /// The registration under `lease`.
    pub fn get(&self, lease: &LeaseId) -> Option<&Arc<Registration>> {
        self.regs.get(lease)
    }

    /// The interned key and the bucket of the unversioned interface `key`.
    pub fn by_interface(&self, key: &str) -> Option<(&Arc<str>, &Bucket)> {
        self.by_interface.get_key_value(key)
    }

    /// The interned copy of `s` if any registration uses it.
    #[cfg(test)]
    pub fn interned(&self, s: &str) -> Option<&Arc<str>> {
        self.strings.get(s)
    }

    /// Number of registrations.
    pub fn len(&self) -> usize {
        self.regs.len()
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
pub(crate) mod tests;
