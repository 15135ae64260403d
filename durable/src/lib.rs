//! Durable file writes, in one place for every crate of courier: a file is written to a
//! temporary file beside its destination (named [`TEMP_PREFIX`]…, readable by its owner
//! only), fsynced, renamed over the destination, and the directory is fsynced, so that a
//! crash or power loss leaves either the old file or the new one, never a mix or nothing.
//!
//! `tempfile` makes and names the temporary file and removes it if the write fails; this
//! crate adds the fsyncs that make the rename durable.

use std::io::Write;
use std::path::Path;

/// How every temporary file of a durable write starts, so that a directory's owner can
/// sweep what a crash left behind.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path`, replacing what is there, atomically and durably. The file is
/// readable and writable by its owner only. The directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = synced_temp(path, bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    sync_parent(path)
}

/// Writes `bytes` to a new file `path`, atomically and durably; an existing `path` is left
/// alone and the error is [`std::io::ErrorKind::AlreadyExists`]. Readable and writable by
/// its owner only.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = synced_temp(path, bytes)?;
    file.persist_noclobber(path).map_err(|e| e.error)?;
    sync_parent(path)
}

/// Makes a new entry (a created, renamed or deleted file) in `path`'s directory durable. A
/// bare file name stands for the current directory.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    sync_dir(parent(path))
}

/// Makes the entries of directory `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A temporary file beside `path` holding `bytes`, fsynced.
fn synced_temp(path: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(parent(path))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_atomically_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(entries(dir.path()), vec!["state"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner only");
        }
    }

    #[test]
    fn a_new_file_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new(&path, b"first").unwrap();
        let err = write_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(entries(dir.path()), vec!["key"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_stray_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("absent/state"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn a_bare_file_name_syncs_the_current_directory() {
        sync_parent(Path::new("Cargo.toml")).unwrap();
    }
}
