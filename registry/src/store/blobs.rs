//! Component files, content-addressed: `blobs/<sha256 hex>`, each written atomically and
//! durably (`courier_durable`), read back only if it still matches its hash.

use super::StoreError;
use courier_protocol::ContentHash;
use std::path::{Path, PathBuf};

/// What opening a store tidied in its component directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobSweep {
    /// Component files no stored registration names (left by a crash), deleted.
    pub orphans: usize,
    /// Temporary files of interrupted writes, deleted.
    pub temporaries: usize,
}

/// The directory of component files.
#[derive(Debug)]
pub struct BlobDir {
    dir: PathBuf,
}

impl BlobDir {
    /// The directory `dir`, created if needed.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    /// Stores `bytes` under `hash`; nothing happens if a file of that hash and size is there.
    pub fn put(&self, hash: &ContentHash, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(hash);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(());
        }
        Ok(courier_durable::write_atomic(&path, bytes)?)
    }

    /// The size of the file of `hash`, if there is one.
    pub fn size(&self, hash: &ContentHash) -> Result<Option<u64>, StoreError> {
        match std::fs::metadata(self.path(hash)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The bytes stored under `hash`, checked against it.
    pub fn read(&self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(hash)) {
            Ok(bytes) if ContentHash::of(&bytes) == *hash => Ok(Some(bytes)),
            Ok(_) => Err(StoreError::Corrupt(format!(
                "blob {hash} does not match its hash"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the file of `hash`; one that is not there is no error.
    pub fn remove(&self, hash: &ContentHash) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Deletes temporary files, and component files for which `needed` says no. Only names
    /// this store writes are touched (64 lowercase hex digits, or the temporary prefix);
    /// anything else an operator put there is left alone. A file that cannot be deleted now
    /// is only space: it is logged, and the next open tries again.
    pub fn sweep(
        &self,
        mut needed: impl FnMut(&ContentHash) -> Result<bool, StoreError>,
    ) -> Result<BlobSweep, StoreError> {
        let mut swept = BlobSweep::default();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(courier_durable::TEMP_PREFIX) {
                if remove_logged(&entry.path(), name) {
                    swept.temporaries += 1;
                }
                continue;
            }
            let Some(hash) = name
                .parse::<ContentHash>()
                .ok()
                .filter(|h| h.to_hex() == name)
            else {
                continue;
            };
            if !needed(&hash)? && remove_logged(&entry.path(), name) {
                swept.orphans += 1;
            }
        }
        Ok(swept)
    }
}

fn remove_logged(path: &Path, name: &str) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cannot delete {name} in the component directory: {e}");
            false
        }
    }
}
