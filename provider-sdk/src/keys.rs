//! Vendor signing keys: generate one, keep it in a small private text file, show its public key.
//!
//! The file format is two lines: `courier-vendor-key v1` and the 32-byte ed25519 seed in
//! lowercase hex. On unix the file is created with mode 0600 and a file that group or
//! others may read is refused when loading: a leaked vendor key lets anyone publish (and
//! replace) the vendor's proxies.

use courier_protocol::{SigningKey, VendorKey};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// First line of a key file.
pub const KEY_FILE_HEADER: &str = "courier-vendor-key v1";

/// Generates a fresh vendor key from the operating system's random source.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// The public key of `key`, as registries and clients name it (`ed25519:<hex>`).
pub fn public_key(key: &SigningKey) -> VendorKey {
    VendorKey::of(key)
}

/// Why a key file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveKeyError {
    /// The file exists and overwriting was not asked for.
    #[error("key file {0} already exists (refusing to overwrite it)")]
    Exists(PathBuf),
    /// Creating the directory or writing the file failed.
    #[error("cannot write key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Why a key file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadKeyError {
    /// The file could not be opened or read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {path}` if it has not leaked, or generate a new key"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not a courier vendor key.
    #[error("key file {path} is not a courier vendor key: {reason}")]
    Format {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Writes `key` to `path` (mode 0600 on unix), creating missing parent directories
/// (mode 0700). An existing file is refused unless `overwrite` is set; then it is replaced
/// atomically.
pub fn save_key(path: &Path, key: &SigningKey, overwrite: bool) -> Result<(), SaveKeyError> {
    let io = |source| SaveKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent).map_err(io)?;
    }
    let contents = Zeroizing::new(format!(
        "{KEY_FILE_HEADER}\n{}\n",
        hex::encode(key.to_bytes())
    ));
    let written = if overwrite {
        courier_durable::write_atomic(path, contents.as_bytes())
    } else {
        courier_durable::write_new(path, contents.as_bytes())
    };
    written.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SaveKeyError::Exists(path.to_path_buf())
        } else {
            io(e)
        }
    })
}

/// Reads the key at `path`, refusing (on unix) a file that group or others may access.
pub fn load_key(path: &Path) -> Result<SigningKey, LoadKeyError> {
    let io = |source| LoadKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let format = |reason| LoadKeyError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(LoadKeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    // A key file is about 90 bytes: anything much larger is not one.
    if meta.len() > 1024 {
        return Err(format("file is too large"));
    }
    let mut text = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut std::io::Read::take(file, 1024), &mut text).map_err(
        |e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                format("not UTF-8 text")
            } else {
                io(e)
            }
        },
    )?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(KEY_FILE_HEADER) {
        return Err(format("missing the `courier-vendor-key v1` header line"));
    }
    let seed_hex = lines.next().map(str::trim).unwrap_or_default();
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(seed_hex, seed.as_mut())
        .map_err(|_| format("the second line must be 64 hex digits"))?;
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(format("unexpected lines after the key"));
    }
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trip_and_no_silent_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/vendor.key");
        let key = generate_key();
        save_key(&path, &key, false).unwrap();
        let loaded = load_key(&path).unwrap();
        assert_eq!(loaded.to_bytes(), key.to_bytes());
        assert_eq!(public_key(&loaded), VendorKey::of(&key));

        let other = generate_key();
        assert!(matches!(
            save_key(&path, &other, false),
            Err(SaveKeyError::Exists(_))
        ));
        assert_eq!(load_key(&path).unwrap().to_bytes(), key.to_bytes());
        save_key(&path, &other, true).unwrap();
        assert_eq!(load_key(&path).unwrap().to_bytes(), other.to_bytes());
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_open_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vendor.key");
        save_key(&path, &generate_key(), false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key(&path).unwrap_err();
        assert!(
            matches!(err, LoadKeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        // Replacing keeps the private mode.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        save_key(&path, &generate_key(), true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn malformed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            courier_durable::write_new(&path, text.as_bytes()).unwrap();
            path
        };
        for (name, text) in [
            ("empty", ""),
            ("no-header", &format!("{}\n", "ab".repeat(32))),
            ("short", &format!("{KEY_FILE_HEADER}\nabcd\n")),
            (
                "not-hex",
                &format!("{KEY_FILE_HEADER}\n{}\n", "zz".repeat(32)),
            ),
            (
                "extra",
                &format!("{KEY_FILE_HEADER}\n{}\nmore\n", "ab".repeat(32)),
            ),
        ] {
            let err = load_key(&write(name, text)).unwrap_err();
            assert!(matches!(err, LoadKeyError::Format { .. }), "{name}: {err}");
        }
        let ok = load_key(&write(
            "ok",
            &format!("{KEY_FILE_HEADER}\n{}\n", "ab".repeat(32)),
        ));
        assert_eq!(ok.unwrap().to_bytes(), [0xab; 32]);
        assert!(matches!(
            load_key(&dir.path().join("missing")),
            Err(LoadKeyError::Io { .. })
        ));
    }
}
