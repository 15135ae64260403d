//! The client's state directory: the names of the files in it (the highest proxy versions
//! accepted, the learned key statements), the error of reading or writing them, and the
//! durable write and the lock between processes they all use.

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

/// Takes an exclusive lock on `<path>.lock` (made if missing, with the state directory),
/// held until the returned file is dropped: two processes of one client change the file at
/// `path` one at a time, each reading it as the other left it.
pub fn lock_beside(path: &Path) -> Result<std::fs::File, StateError> {
    lock_beside_telling(path, || {})
}

/// [`lock_beside`], calling `waiting` first if another holder makes it wait.
pub fn lock_beside_telling(
    path: &Path,
    waiting: impl FnOnce(),
) -> Result<std::fs::File, StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(name))
        .map_err(io)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting();
            lock.lock().map_err(io)?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    Ok(lock)
}
