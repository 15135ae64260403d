//! The client's trust store: the vendor keys whose signed proxies it is willing to run.
//!
//! A proxy signed by a key that is not here is refused before a byte of it is compiled.
//! On disk the store is a text file of `ed25519:<64 hex digits>` lines; blank lines and
//! lines starting with `#` are ignored.

use courier_protocol::VendorKey;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A set of trusted vendor keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    keys: BTreeSet<VendorKey>,
}

/// Why a trust store could not be read or written, or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read or written.
    #[error("trust store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A line is not an `ed25519:<hex>` key.
    #[error("trust store line {line}: expected ed25519:<64 hex digits>, got {text:?}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The offending text (shortened).
        text: String,
    },
    /// The key is not a usable ed25519 key (invalid point or small order).
    #[error("trust store line {line}: {key} is not a usable ed25519 key")]
    BadKey {
        /// 1-based line number (0 when added programmatically).
        line: usize,
        /// The key.
        key: VendorKey,
    },
}

/// A vendor key that is not in the trust store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vendor {0} is not trusted")]
pub struct Untrusted(pub VendorKey);

impl TrustStore {
    /// An empty store: nothing is trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store trusting exactly `keys`.
    pub fn from_keys(keys: impl IntoIterator<Item = VendorKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
        }
    }

    /// Parses the text form: one `ed25519:<hex>` key per line, `#` comments, blank lines.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let mut keys = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Allow a trailing comment after the key.
            let token = line.split_whitespace().next().unwrap_or(line);
            if !token.starts_with("ed25519:") {
                return Err(TrustError::Parse {
                    line: i + 1,
                    text: token.chars().take(80).collect(),
                });
            }
            let key: VendorKey = token.parse().map_err(|_| TrustError::Parse {
                line: i + 1,
                text: token.chars().take(80).collect(),
            })?;
            if key.verifying_key().is_err() {
                return Err(TrustError::BadKey { line: i + 1, key });
            }
            keys.insert(key);
        }
        Ok(Self { keys })
    }

    /// Loads a store from a file in the text form.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Loads a store from `path`, or an empty store if the file does not exist.
    pub fn load_or_empty(path: &Path) -> Result<Self, TrustError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            _ => Self::load(path),
        }
    }

    /// The text form, one key per line, sorted.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# courier trusted vendor keys\n");
        for key in &self.keys {
            out.push_str(&key.to_string());
            out.push('\n');
        }
        out
    }

    /// Writes the store to `path` (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        let io = |source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.to_text()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Trusts `key`; false if it was already trusted. Unusable keys are refused.
    pub fn add(&mut self, key: VendorKey) -> Result<bool, TrustError> {
        if key.verifying_key().is_err() {
            return Err(TrustError::BadKey { line: 0, key });
        }
        Ok(self.keys.insert(key))
    }

    /// Stops trusting `key`; false if it was not trusted.
    pub fn remove(&mut self, key: &VendorKey) -> bool {
        self.keys.remove(key)
    }

    /// Whether `key` is trusted.
    pub fn is_trusted(&self, key: &VendorKey) -> bool {
        self.keys.contains(key)
    }

    /// `Ok` if `key` is trusted.
    pub fn check(&self, key: &VendorKey) -> Result<(), Untrusted> {
        if self.is_trusted(key) {
            Ok(())
        } else {
            Err(Untrusted(*key))
        }
    }

    /// The trusted keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &VendorKey> {
        self.keys.iter()
    }

    /// Number of trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
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

    #[test]
    fn parse_add_remove_round_trip() {
        let text = format!("# comment\n\n{}  # acme\n{}\n", key(1), key(2));
        let mut store = TrustStore::parse(&text).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.is_trusted(&key(1)));
        assert!(store.check(&key(3)).is_err());
        assert!(store.add(key(3)).unwrap());
        assert!(!store.add(key(3)).unwrap());
        assert!(store.remove(&key(1)));
        assert!(!store.remove(&key(1)));
        let again = TrustStore::parse(&store.to_text()).unwrap();
        assert_eq!(again, store);
    }

    #[test]
    fn bad_lines_and_weak_keys_refused() {
        assert!(matches!(
            TrustStore::parse("ed25519:zz"),
            Err(TrustError::Parse { line: 1, .. })
        ));
        assert!(matches!(
            TrustStore::parse(&format!("\n{}", hex::encode([1u8; 32]))),
            Err(TrustError::Parse { line: 2, .. })
        ));
        // The identity point has small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let line = format!("ed25519:{}", hex::encode(weak));
        assert!(matches!(
            TrustStore::parse(&line),
            Err(TrustError::BadKey { .. })
        ));
        assert!(TrustStore::new().add(VendorKey(weak)).is_err());
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/trust.txt");
        assert!(TrustStore::load_or_empty(&path).unwrap().is_empty());
        let store = TrustStore::from_keys([key(4), key(5)]);
        store.save(&path).unwrap();
        assert_eq!(TrustStore::load(&path).unwrap(), store);
    }
}
