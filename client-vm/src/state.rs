//! What a client remembers across runs, in its state directory: the highest proxy version
//! it has accepted per vendor key and service name (rollback protection), and the key
//! statements it has learned (in the trust store's text form).
//!
//! Files are written atomically (temporary file, fsync, rename, fsync of the directory).
//! A file that does not parse is an error naming the file and line: it is never silently
//! reset to empty, since an empty memory would accept every older version again.

use courier_protocol::VendorKey;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// File name of the version memory in the state directory.
pub const VERSIONS_FILE: &str = "versions";
/// File name of the learned key statements in the state directory.
pub const KEYS_FILE: &str = "learned-keys";

/// Why client state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read or written.
    #[error("client state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("client state {path} line {line}: {reason} (fix or remove the file)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsynced, renamed over
/// `path`, then the directory fsynced. Creates the directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

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
