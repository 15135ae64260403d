//! The vendor side of the patch provider's catalog: patch records and their payload files
//! from a catalog folder, checked when loaded.
//!
//! ```text
//! <catalog>/patches/<id>.json                 one PatchRecord each (digests in hex)
//! <catalog>/payloads/<id>/<path of the file>  the bytes each file of the patch gets
//! ```
//!
//! A record that does not parse or validate, or whose payload file is missing or differs
//! from the size and SHA-256 the record gives, is left out with a note naming the file;
//! the other patches are still served. Payloads are served by digest, in chunks.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use courier_patch_api::{ChunkRequest, Digest, GatherList, MAX_CHUNK, PatchRecord, RelPath};

/// The patches of a catalog folder.
#[derive(Debug, Default)]
pub struct VendorCatalog {
    records: Vec<PatchRecord>,
    payloads: HashMap<Digest, (PathBuf, u64)>,
    notes: Vec<String>,
}

/// Why the catalog folder could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// `<catalog>/patches` could not be listed.
    #[error("cannot read the patch catalog {path}: {error}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// Why a chunk could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// No patch of the catalog has a file with that digest.
    #[error("no payload with sha256 {0}")]
    Unknown(Digest),
    /// The offset lies past the payload's end.
    #[error("offset {offset} is past the end of payload {digest} ({size} bytes)")]
    Offset {
        /// The payload.
        digest: Digest,
        /// The offset asked for.
        offset: u64,
        /// Its size.
        size: u64,
    },
    /// The payload file could not be read.
    #[error("cannot read payload {digest}: {error}")]
    Read {
        /// The payload.
        digest: Digest,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

impl VendorCatalog {
    /// Loads the catalog folder `dir`.
    pub fn load(dir: &Path) -> Result<VendorCatalog, CatalogError> {
        let patches = dir.join("patches");
        let entries = std::fs::read_dir(&patches).map_err(|error| CatalogError::Folder {
            path: patches.display().to_string(),
            error,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let mut catalog = VendorCatalog::default();
        for file in files {
            match load_record(dir, &file) {
                Ok((record, payloads)) if catalog.record(&record.id).is_none() => {
                    for (digest, path, size) in payloads {
                        catalog.payloads.insert(digest, (path, size));
                    }
                    catalog.records.push(record);
                }
                Ok((record, _)) => {
                    catalog.refuse(&file, &format!("patch id {} is taken", record.id))
                }
                Err(problem) => catalog.refuse(&file, &problem),
            }
        }
        catalog.records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(catalog)
    }

    /// The patches, sorted by id.
    pub fn records(&self) -> &[PatchRecord] {
        &self.records
    }

    /// The patch `id`.
    pub fn record(&self, id: &str) -> Option<&PatchRecord> {
        self.records.iter().find(|r| r.id == id)
    }

    /// One line per record left out.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The files every fingerprint needs, sorted, each once.
    pub fn gather_list(&self) -> GatherList {
        let paths: BTreeSet<&str> = self
            .records
            .iter()
            .flat_map(|r| r.fingerprint.needed.iter().chain(&r.fingerprint.applied))
            .map(|s| s.path.as_str())
            .collect();
        GatherList {
            paths: paths.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Up to `request.len` bytes (at most [`MAX_CHUNK`]) of the payload `request.sha256`
    /// from `request.offset`; empty at the payload's end.
    pub fn chunk(&self, request: &ChunkRequest) -> Result<Vec<u8>, ChunkError> {
        let digest = request.sha256;
        let (path, size) = self
            .payloads
            .get(&digest)
            .ok_or(ChunkError::Unknown(digest))?;
        if request.offset > *size {
            return Err(ChunkError::Offset {
                digest,
                offset: request.offset,
                size: *size,
            });
        }
        let len = u64::from(request.len.min(MAX_CHUNK)).min(size - request.offset);
        let read = || -> std::io::Result<Vec<u8>> {
            let mut file = File::open(path)?;
            file.seek(SeekFrom::Start(request.offset))?;
            let mut bytes = Vec::with_capacity(len as usize);
            file.take(len).read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        read().map_err(|error| ChunkError::Read { digest, error })
    }

    fn refuse(&mut self, file: &Path, problem: &str) {
        let note = format!("patch record {} not served: {problem}", file.display());
        tracing::warn!("{note}");
        self.notes.push(note);
    }
}

/// Each payload of a record: its digest, its file and its size.
type Payloads = Vec<(Digest, PathBuf, u64)>;

/// Reads, validates and checks the payloads of one record file.
fn load_record(dir: &Path, file: &Path) -> Result<(PatchRecord, Payloads), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let record: PatchRecord = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let paths = record.validate().map_err(|e| e.to_string())?;
    let mut payloads = Vec::new();
    for (new, path) in record.files.iter().zip(&paths) {
        let payload = payload_path(dir, &record.id, path);
        let found =
            std::fs::read(&payload).map_err(|e| format!("payload {}: {e}", payload.display()))?;
        let digest = Digest::of(&found);
        if digest != new.sha256 || found.len() as u64 != new.size {
            return Err(format!(
                "payload {} has {} bytes with sha256 {digest}; the record says {} bytes with sha256 {}",
                payload.display(),
                found.len(),
                new.size,
                new.sha256
            ));
        }
        payloads.push((digest, payload, new.size));
    }
    Ok((record, payloads))
}

/// Where the payload of `path` in patch `id` lies in the catalog folder.
fn payload_path(dir: &Path, id: &str, path: &RelPath) -> PathBuf {
    path.under(&dir.join("payloads").join(id))
}
