//! Rollback protection and version pins. [`VersionMemory`] is what a client remembers
//! across runs: the highest proxy version it accepted per vendor key and service name, in
//! `<state dir>/versions`. The crate's `VersionGuard` checks candidates against it and
//! against the pins, and raises it when a candidate passes.
//!
//! A file that does not parse is an error naming the file and line: it is never silently
//! reset to empty, since an empty memory would accept every older version again.

use super::RejectReason;
use crate::state::{StateError, VERSIONS_FILE, lock_beside, write_atomic};
use crate::trust::TrustStore;
use courier_protocol::{Manifest, ManifestError, VendorKey};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// The highest proxy version accepted per (vendor key, service name).
///
/// Text form, one entry per line: `ed25519:<hex> <service name> <semver>`; `#` comments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionMemory {
    highest: BTreeMap<(VendorKey, String), semver::Version>,
}

impl VersionMemory {
    /// Nothing remembered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest version accepted for `name` under `vendor`.
    pub fn get(&self, vendor: &VendorKey, name: &str) -> Option<&semver::Version> {
        self.highest.get(&(*vendor, name.to_string()))
    }

    /// Records that `version` was accepted; returns whether it raised the mark.
    pub fn record(&mut self, vendor: &VendorKey, name: &str, version: &semver::Version) -> bool {
        match self.highest.get_mut(&(*vendor, name.to_string())) {
            Some(have) if *have >= *version => false,
            Some(have) => {
                *have = version.clone();
                true
            }
            None => {
                self.highest
                    .insert((*vendor, name.to_string()), version.clone());
                true
            }
        }
    }

    /// Lowers the mark of `name` under `vendor` to `version` if it is above; returns
    /// whether it was.
    pub fn lower(&mut self, vendor: &VendorKey, name: &str, version: &semver::Version) -> bool {
        match self.highest.get_mut(&(*vendor, name.to_string())) {
            Some(have) if *have > *version => {
                *have = version.clone();
                true
            }
            _ => false,
        }
    }

    /// Every entry: (vendor key, service name) and the highest version accepted.
    pub fn entries(&self) -> impl Iterator<Item = (&(VendorKey, String), &semver::Version)> {
        self.highest.iter()
    }

    /// Number of (vendor, name) entries.
    pub fn len(&self) -> usize {
        self.highest.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# courier client: highest proxy version accepted per vendor key and service name\n",
        );
        for ((vendor, name), version) in &self.highest {
            out.push_str(&format!("{vendor} {name} {version}\n"));
        }
        out
    }

    /// Parses the text form; `path` is only for error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, StateError> {
        let mut highest = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let corrupt = |reason: String| StateError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let mut parts = line.split_whitespace();
            let (Some(vendor), Some(name), Some(version), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt(
                    "expected `ed25519:<hex> <service name> <version>`".into(),
                ));
            };
            if !vendor.starts_with("ed25519:") {
                return Err(corrupt(format!("not a vendor key: {vendor:?}")));
            }
            let vendor: VendorKey = vendor.parse().map_err(|e| corrupt(format!("{e}")))?;
            let version = semver::Version::parse(version)
                .map_err(|e| corrupt(format!("version {version:?}: {e}")))?;
            highest.insert((vendor, name.to_string()), version);
        }
        Ok(Self { highest })
    }

    /// Loads the memory from `path`; a missing file is an empty memory (first run).
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(source) => Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the memory to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        write_atomic(path, self.to_text().as_bytes()).map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes `memory` to `path` merged with what the file holds now, under an exclusive lock
/// on `<path>.lock`: the higher mark of each service wins, then `change` is applied again
/// (a lowering must not be undone by the merge). Two processes of one client (two
/// `courier call`s) thus never write an older mark over a newer one.
fn save_merged(
    memory: &mut VersionMemory,
    path: &Path,
    change: impl Fn(&mut VersionMemory),
) -> Result<(), StateError> {
    let _lock = lock_beside(path)?;
    let on_disk = VersionMemory::load(path)?;
    let theirs: Vec<((VendorKey, String), semver::Version)> = on_disk
        .entries()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((vendor, name), version) in &theirs {
        memory.record(vendor, name, version);
    }
    change(memory);
    memory.save(path)
}

/// Which versions of a service a client accepts: none below the highest it accepted from
/// the service's vendor (one vendor across its key rotations), unless the service is
/// pinned, and then exactly the pinned version. What passes is remembered, durably when
/// there is a state directory, before it runs; the mark never goes down.
pub(super) struct VersionGuard {
    memory: Mutex<VersionMemory>,
    pins: RwLock<BTreeMap<String, semver::Version>>,
    /// Where the memory is kept (`<state dir>/versions`), if anywhere.
    file: Option<PathBuf>,
}

impl VersionGuard {
    /// The memory kept in `state_dir` (empty on a first run, in memory only without a
    /// directory), with `pins`.
    pub(super) fn open(
        state_dir: Option<&Path>,
        pins: BTreeMap<String, semver::Version>,
    ) -> Result<Self, StateError> {
        let file = state_dir.map(|dir| dir.join(VERSIONS_FILE));
        let memory = match &file {
            Some(path) => VersionMemory::load(path)?,
            None => VersionMemory::new(),
        };
        Ok(Self {
            memory: Mutex::new(memory),
            pins: RwLock::new(pins),
            file,
        })
    }

    /// Refuses `manifest`'s version if it rolls back below the highest accepted (unless
    /// pinned), or differs from the pinned one.
    pub(super) fn check(
        &self,
        manifest: &Manifest,
        trust: &TrustStore,
    ) -> Result<(), RejectReason> {
        let offered = manifest.semver().ok_or_else(|| {
            RejectReason::Manifest(ManifestError::Invalid {
                field: "version",
                reason: "not semver".into(),
            })
        })?;
        if let Some(pinned) = self
            .pins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&manifest.name)
        {
            return if *pinned == offered {
                Ok(())
            } else {
                Err(RejectReason::NotPinned {
                    pinned: pinned.clone(),
                    offered,
                })
            };
        }
        match self.accepted(&manifest.vendor_key, &manifest.name, trust) {
            Some(have) if offered < have => Err(RejectReason::Rollback { have, offered }),
            _ => Ok(()),
        }
    }

    /// The highest version of `name` accepted from `vendor`, or from any key of the same
    /// rotation chain in `trust` (a rotation learned after a version was accepted does not
    /// reset the mark).
    pub(super) fn accepted(
        &self,
        vendor: &VendorKey,
        name: &str,
        trust: &TrustStore,
    ) -> Option<semver::Version> {
        let current = trust.current(vendor);
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries()
            .filter(|((k, n), _)| n == name && trust.current(k) == current)
            .map(|(_, v)| v)
            .max()
            .cloned()
    }

    /// Remembers `manifest`'s version as accepted from `current`, the key acting for its
    /// vendor now; durably when there is a state directory.
    pub(super) fn remember(
        &self,
        manifest: &Manifest,
        current: &VendorKey,
    ) -> Result<(), StateError> {
        match manifest.semver() {
            Some(version) => self.learn(current, &manifest.name, &version),
            None => Ok(()),
        }
    }

    /// Whether `name` is pinned to a version.
    pub(super) fn is_pinned(&self, name: &str) -> bool {
        self.pins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// Raises the mark of `name` under `current` (the key acting for its vendor now) to
    /// `version`, which the vendor's verified freshness statement says is current;
    /// durably when there is a state directory and it rose.
    pub(super) fn learn(
        &self,
        current: &VendorKey,
        name: &str,
        version: &semver::Version,
    ) -> Result<(), StateError> {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if memory.record(current, name, version)
            && let Some(path) = &self.file
        {
            save_merged(&mut memory, path, |m| {
                m.record(current, name, version);
            })?;
        }
        Ok(())
    }

    /// Lowers the mark of `name` (under every key of `vendor`'s rotation chain in
    /// `trust`) to `version`, the one its vendor's verified fresh statement names as
    /// current: after this client undid a staged version at its registry's request, it
    /// may go back to the version the vendor still calls current. Never below that: the
    /// freshness check refuses anything older anyway. Durably when there is a state
    /// directory and it fell.
    pub(super) fn lower_to_current(
        &self,
        vendor: &VendorKey,
        name: &str,
        version: &semver::Version,
        trust: &TrustStore,
    ) -> Result<(), StateError> {
        let current = trust.current(vendor);
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<VendorKey> = memory
            .entries()
            .filter(|((k, n), _)| n == name && trust.current(k) == current)
            .map(|((k, _), _)| *k)
            .collect();
        let mut fell = false;
        for k in &keys {
            fell |= memory.lower(k, name, version);
        }
        if fell && let Some(path) = &self.file {
            save_merged(&mut memory, path, |m| {
                for k in &keys {
                    m.lower(k, name, version);
                }
            })?;
        }
        Ok(())
    }

    /// Pins `name` to exactly `version`.
    pub(super) fn pin(&self, name: String, version: semver::Version) {
        self.pins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, version);
    }

    /// Removes the pin of `name`; false if there was none.
    pub(super) fn unpin(&self, name: &str) -> bool {
        self.pins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::SigningKey;

    fn key(seed: u8) -> VendorKey {
        VendorKey::of(&SigningKey::from_bytes(&[seed; 32]))
    }

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn two_processes_keep_the_higher_mark() {
        let dir = tempfile::tempdir().unwrap();
        let first = VersionGuard::open(Some(dir.path()), BTreeMap::new()).unwrap();
        let second = VersionGuard::open(Some(dir.path()), BTreeMap::new()).unwrap();
        let k = VendorKey([1; 32]);
        first
            .learn(&k, "acme/a", &"2.0.0".parse().unwrap())
            .unwrap();
        // The second process knew nothing of 2.0.0: its lower mark of the same service, and
        // then its write of another service, keep it.
        second
            .learn(&k, "acme/a", &"1.5.0".parse().unwrap())
            .unwrap();
        second
            .learn(&k, "acme/b", &"1.0.0".parse().unwrap())
            .unwrap();
        let memory = VersionMemory::load(&dir.path().join(VERSIONS_FILE)).unwrap();
        assert_eq!(memory.get(&k, "acme/a"), Some(&"2.0.0".parse().unwrap()));
        assert_eq!(memory.get(&k, "acme/b"), Some(&"1.0.0".parse().unwrap()));
    }

    #[test]
    fn records_only_raise_and_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(VERSIONS_FILE);
        let mut m = VersionMemory::load(&path).unwrap();
        assert!(m.is_empty());
        assert!(m.record(&key(1), "acme/echo", &v("1.2.0")));
        assert!(!m.record(&key(1), "acme/echo", &v("1.1.9")));
        assert!(!m.record(&key(1), "acme/echo", &v("1.2.0")));
        assert!(m.record(&key(1), "acme/echo", &v("1.10.0")));
        assert!(m.record(&key(2), "acme/echo", &v("0.1.0")));
        assert!(m.record(&key(1), "acme/kv", &v("2.0.0-rc.1")));
        m.save(&path).unwrap();
        let again = VersionMemory::load(&path).unwrap();
        assert_eq!(again, m);
        assert_eq!(again.get(&key(1), "acme/echo"), Some(&v("1.10.0")));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(VERSIONS_FILE)]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_never_an_empty_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(VERSIONS_FILE);
        for bad in [
            "garbage\n",
            "ed25519:00 acme/echo 1.0.0\n",
            &format!("{} acme/echo one\n", key(1)),
            &format!("{} acme/echo 1.0.0 extra\n", key(1)),
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    VersionMemory::load(&path),
                    Err(StateError::Corrupt { line: 1, .. })
                ),
                "{bad:?}"
            );
        }
    }
}
