//! The client's state directory: the names of the files in it (the highest proxy versions
//! accepted, the learned key statements), the error of reading or writing them, and the
//! durable write they all use.

use std::path::{Path, PathBuf};

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

/// Writes `bytes` to `path` atomically and durably (`courier_durable`), creating the state
/// directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    courier_durable::write_atomic(path, bytes)
}
