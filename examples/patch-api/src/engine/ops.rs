//! The engine's file operations, each counted so that a test can make the n-th one fail as
//! a full disk or a refused permission would ([`Faults`]), and the swap of a set of files
//! with its exact undo.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::Hasher;

/// A planned fault: the `at`-th counted file operation (from 0) fails with `kind`.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    plan: Option<(usize, io::ErrorKind)>,
    count: Cell<usize>,
    fired: Cell<bool>,
}

impl Faults {
    pub(crate) fn at(at: usize, kind: io::ErrorKind) -> Self {
        Self {
            plan: Some((at, kind)),
            ..Self::default()
        }
    }

    /// Counts one operation; the error if it is the planned one.
    pub(crate) fn check(&self) -> io::Result<()> {
        let n = self.count.get();
        self.count.set(n + 1);
        match self.plan {
            Some((at, kind)) if at == n => {
                self.fired.set(true);
                Err(io::Error::new(kind, "injected fault"))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.get()
    }
}

/// Counted file operations.
#[derive(Debug, Default)]
pub(crate) struct Io {
    pub(crate) faults: Faults,
}

impl Io {
    pub(crate) fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.check()?;
        fs::create_dir(path)
    }

    /// Makes `path` and its missing parents, each one counted.
    pub(crate) fn create_dirs(&self, path: &Path) -> io::Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.create_dirs(parent)?;
        }
        match self.create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            other => other,
        }
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check()?;
        fs::rename(from, to)
    }

    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.check()?;
        fs::remove_file(path)
    }

    pub(crate) fn create(&self, path: &Path) -> io::Result<File> {
        self.faults.check()?;
        File::create(path)
    }

    pub(crate) fn sync(&self, file: &File) -> io::Result<()> {
        self.faults.check()?;
        file.sync_all()
    }

    #[cfg(unix)]
    pub(crate) fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.faults.check()?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
    }

    /// Permission bits are not there to set (WASI): the file keeps the default.
    #[cfg(not(unix))]
    pub(crate) fn set_mode(&self, _path: &Path, _mode: u32) -> io::Result<()> {
        self.faults.check()
    }

    /// Writes `bytes` to `path` through a temporary file beside it, synced, then renamed.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let temp = path.with_extension("tmp");
        let result = (|| {
            let mut file = self.create(&temp)?;
            self.faults.check()?;
            file.write_all(bytes)?;
            self.sync(&file)?;
            self.rename(&temp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// A writer into a staged file that hashes what it writes, refuses more than `limit`
/// bytes, counts each write as a file operation, and keeps the first I/O error it met so
/// that it is not mistaken for the payload source's own failure.
pub(crate) struct StagedWriter<'a> {
    pub(crate) file: io::BufWriter<File>,
    pub(crate) hasher: Hasher,
    pub(crate) written: u64,
    pub(crate) limit: u64,
    pub(crate) io_error: Option<io::Error>,
    pub(crate) overflow: bool,
    pub(crate) io: &'a Io,
}

impl Write for StagedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.overflow = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "payload longer than its declared size",
            ));
        }
        let result = self
            .io
            .faults
            .check()
            .and_then(|()| self.file.write_all(buf));
        if let Err(e) = result {
            let kept = io::Error::new(e.kind(), e.to_string());
            self.io_error.get_or_insert(e);
            return Err(kept);
        }
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// One file to swap: what is at `target` goes `aside` (if `existed`), then `incoming` (if
/// any) takes its place.
#[derive(Debug, Clone)]
pub(crate) struct Swap {
    pub(crate) target: PathBuf,
    pub(crate) incoming: Option<PathBuf>,
    pub(crate) aside: PathBuf,
    pub(crate) existed: bool,
}

/// How far a swap got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    Untouched,
    Aside,
    Placed,
}

impl Swap {
    /// What the disk shows of this swap (after a crash).
    pub(crate) fn progress_on_disk(&self) -> Progress {
        let placed = self
            .incoming
            .as_ref()
            .is_some_and(|i| !i.exists() && self.target.exists());
        if placed {
            Progress::Placed
        } else if self.existed && self.aside.exists() {
            Progress::Aside
        } else {
            Progress::Untouched
        }
    }
}

/// Swaps the files in order; on an error, the progress of each swap so far (the failed one
/// included) and the error.
pub(crate) fn apply(io: &Io, swaps: &[Swap]) -> Result<(), (Vec<Progress>, io::Error)> {
    let mut progress = Vec::with_capacity(swaps.len());
    for swap in swaps {
        progress.push(Progress::Untouched);
        let last = progress.len() - 1;
        if swap.existed {
            io.rename(&swap.target, &swap.aside)
                .map_err(|e| (progress.clone(), e))?;
            progress[last] = Progress::Aside;
        }
        if let Some(incoming) = &swap.incoming {
            if let Some(parent) = swap.target.parent() {
                io.create_dirs(parent).map_err(|e| (progress.clone(), e))?;
            }
            io.rename(incoming, &swap.target)
                .map_err(|e| (progress.clone(), e))?;
            progress[last] = Progress::Placed;
        }
    }
    Ok(())
}

/// Undoes swaps, the last first, from their progress: a placed file goes back where it
/// came from, the file set aside comes back. Stops at the first error.
pub(crate) fn undo(swaps: &[Swap], progress: &[Progress]) -> io::Result<()> {
    for (swap, progress) in swaps.iter().zip(progress).rev() {
        if *progress == Progress::Placed
            && let Some(incoming) = &swap.incoming
        {
            fs::rename(&swap.target, incoming)?;
        }
        if *progress != Progress::Untouched && swap.existed {
            if let Some(parent) = swap.target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&swap.aside, &swap.target)?;
        }
    }
    Ok(())
}

/// Removes the directories (innermost last in `dirs`) that are empty, the innermost first.
pub(crate) fn remove_empty_dirs(dirs: &[PathBuf]) {
    for dir in dirs.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
}
