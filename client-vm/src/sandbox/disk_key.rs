//! The key that authenticates a client's compiled-code directory, and where that directory
//! is: [`CompiledCodeKey`] (derived from the client's own signing key when it has one, or
//! a 32-byte random key file of mode 0600 made once in its state directory) and
//! [`DiskCacheConfig`].
//!
//! The key never leaves the process and the key file: a file in the compiled-code directory
//! is only ever deserialized when its tag was made with it (see `disk_cache`).

use courier_protocol::SigningKey;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// The compiled-code directory inside a client's state directory.
pub const COMPILED_DIR: &str = "compiled";
/// The file of the compiled-code key inside a client's state directory, made when the
/// client has no signing key of its own to derive it from.
pub const COMPILED_KEY_FILE: &str = "compiled.key";
/// The default bound on the compiled-code directory's size: the least recently used files
/// go first beyond it.
pub const DEFAULT_DISK_CACHE_BYTES: u64 = 256 << 20;

/// What the compiled-code key is derived under from a client's signing key.
const DERIVE_DOMAIN: &[u8] = b"courier compiled-code key v1";
/// What a key's public identifier is hashed under.
const KEY_ID_DOMAIN: &[u8] = b"courier compiled-code key id v1";

/// Why the compiled-code key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    /// A file or directory could not be read or written.
    #[error("compiled-code cache {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The key file is not 32 bytes.
    #[error(
        "compiled-code key {path}: {len} bytes, expected 32 (remove the file to make a new key)"
    )]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
}

/// The secret key that authenticates the files of a compiled-code directory (HMAC-SHA256).
/// Its `Debug` shows only its public identifier.
#[derive(Clone, PartialEq, Eq)]
pub struct CompiledCodeKey([u8; 32]);

impl fmt::Debug for CompiledCodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompiledCodeKey(id {})", hex::encode(self.id()))
    }
}

impl CompiledCodeKey {
    /// A key of these 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key a client with signing key `key` uses: derived from its secret, so nothing
    /// more is kept, and whoever cannot read the client's key cannot make a tag.
    pub fn of_client(key: &SigningKey) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.to_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(DERIVE_DOMAIN);
        Self(mac.finalize().into_bytes().into())
    }

    /// The key in file `path`, or a new random one written there first (mode 0600, never
    /// over an existing file: when another process made it meanwhile, its key is used).
    pub fn load_or_create(path: &Path) -> Result<Self, DiskCacheError> {
        let io = |source| DiskCacheError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            match courier_durable::write_new(path, &key) {
                Ok(()) => return Ok(Self(key)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| DiskCacheError::KeyFile {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            })?;
        Ok(Self(key))
    }

    /// The key's public identifier: written in each file, so that a file tagged with
    /// another key is told apart (it is refused either way).
    pub fn id(&self) -> [u8; 8] {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(self.0)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        id
    }

    /// An HMAC-SHA256 keyed with it.
    pub(super) fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"))
    }
}

/// Where a client keeps the code it compiled across processes, and the key it
/// authenticates it with.
#[derive(Debug, Clone)]
pub struct DiskCacheConfig {
    /// The directory (made with mode 0700).
    pub dir: PathBuf,
    /// The key.
    pub key: CompiledCodeKey,
    /// The most bytes kept; the least recently used files go first beyond it.
    pub max_bytes: u64,
}

impl DiskCacheConfig {
    /// The compiled-code directory of the client whose state directory is `state_dir`
    /// ([`COMPILED_DIR`] in it), keyed from `client_key` when the client has one, otherwise
    /// from [`COMPILED_KEY_FILE`] beside it (made on first use), bounded to
    /// [`DEFAULT_DISK_CACHE_BYTES`].
    pub fn in_state_dir(
        state_dir: &Path,
        client_key: Option<&SigningKey>,
    ) -> Result<Self, DiskCacheError> {
        let key = match client_key {
            Some(k) => CompiledCodeKey::of_client(k),
            None => CompiledCodeKey::load_or_create(&state_dir.join(COMPILED_KEY_FILE))?,
        };
        Ok(Self {
            dir: state_dir.join(COMPILED_DIR),
            key,
            max_bytes: DEFAULT_DISK_CACHE_BYTES,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_file_is_made_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(COMPILED_KEY_FILE);
        let made = CompiledCodeKey::load_or_create(&path).unwrap();
        let again = CompiledCodeKey::load_or_create(&path).unwrap();
        assert_eq!(made, again);
        #[cfg(unix)]
        {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            CompiledCodeKey::load_or_create(&path),
            Err(DiskCacheError::KeyFile { len: 5, .. })
        ));
    }

    #[test]
    fn a_clients_key_derives_its_own_compiled_code_key() {
        let a = CompiledCodeKey::of_client(&SigningKey::from_bytes(&[1; 32]));
        let b = CompiledCodeKey::of_client(&SigningKey::from_bytes(&[2; 32]));
        assert_eq!(
            a,
            CompiledCodeKey::of_client(&SigningKey::from_bytes(&[1; 32]))
        );
        assert_ne!(a, b);
        assert_ne!(a.id(), b.id());
        assert!(!format!("{a:?}").contains(&hex::encode(a.0)));
    }
}
