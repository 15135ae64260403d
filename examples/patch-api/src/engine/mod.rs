//! The install engine: puts a patch's files into the managed directory so that it is either
//! wholly in place and checked, or not there at all.
//!
//! [`Engine::install`]:
//! 1. checks the record (paths, fingerprint covering every file) and the ledger (a patch in
//!    the ledger, or whose `applied` state already holds, is left alone);
//! 2. checks every `needed` file state on disk: a file changed locally since the vendor took
//!    the fingerprint stops the install, nothing changed;
//! 3. stages each payload into `.courier-patch/staging/<id>/` and checks its size and
//!    SHA-256: a mismatch stops the install, nothing changed;
//! 4. writes the journal, then swaps each file in, the old one going to
//!    `.courier-patch/backup/<id>/<n>`;
//! 5. checks again: the digests on disk, then the caller's health check;
//! 6. records the patch in the ledger and drops the journal.
//!
//! Any failure from step 4 on undoes every swap, so the directory is byte for byte as
//! before; a crash is undone by the next [`Engine::open`] from the journal.
//! [`Engine::remove`] is the same swap the other way, from the backup.

mod errors;
mod ops;
mod record;

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use errors::{InstallError, RemoveError, StateError};
pub use record::{Applied, AppliedFile, Operation, RecordFileError};

use crate::STATE_DIR;
use crate::digest::{Digest, Hasher};
use crate::fingerprint::{self, Finding};
use crate::messages::{FileEvidence, NewFile, PatchRecord};
use crate::paths::RelPath;
use ops::{Faults, Io, Progress, StagedWriter, Swap};

/// Fetches the payload of a file into the writer (the proxy reads it from its provider in
/// chunks); an error says why it could not.
pub type Fetch<'a> = dyn FnMut(&NewFile, &mut dyn Write) -> Result<(), String> + 'a;

/// Checks an installed patch (the proxy runs its health command); an error says why it
/// failed.
pub type Health<'a> = dyn FnMut(&PatchRecord) -> Result<(), String> + 'a;

/// The install engine over one managed directory.
#[derive(Debug)]
pub struct Engine {
    root: PathBuf,
    io: Io,
    recovered: Option<String>,
}

/// What [`Engine::install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// The patch is in place and passed its checks.
    Applied {
        /// How many files it wrote.
        files: usize,
    },
    /// The ledger already has it: nothing done.
    AlreadyApplied,
    /// Its fingerprint's `applied` state already holds: nothing done.
    AlreadyInPlace,
}

impl Engine {
    /// The engine over the managed directory `root`; undoes an install or removal a crash
    /// interrupted (see [`Engine::recovered`]).
    pub fn open(root: impl Into<PathBuf>) -> Result<Engine, StateError> {
        let root = root.into();
        let meta = fs::metadata(&root).and_then(|m| {
            m.is_dir()
                .then_some(())
                .ok_or_else(|| io::Error::other("not a directory"))
        });
        meta.map_err(|error| StateError::Root {
            path: root.display().to_string(),
            error,
        })?;
        let mut engine = Engine {
            root,
            io: Io::default(),
            recovered: None,
        };
        engine.recover()?;
        engine.sweep_stale();
        Ok(engine)
    }

    /// For tests: the `at`-th file operation from now (counting from 0) fails with `kind`,
    /// as a full disk ([`io::ErrorKind::StorageFull`]) or a refused permission would.
    pub fn fail_operation(&mut self, at: usize, kind: io::ErrorKind) {
        self.io.faults = Faults::at(at, kind);
    }

    /// Whether the planned fault has happened.
    pub fn fault_fired(&self) -> bool {
        self.io.faults.fired()
    }

    /// What [`Engine::open`] undid, if anything.
    pub fn recovered(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    /// The managed directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The patches in place, from the ledger.
    pub fn applied(&self) -> Result<Vec<Applied>, StateError> {
        match self.read_state("ledger")? {
            Some(text) => Ok(record::parse_ledger(&text)?),
            None => Ok(Vec::new()),
        }
    }

    /// The current digests of `paths` (invalid paths are left out).
    pub fn gather(&self, paths: &[String]) -> Vec<FileEvidence> {
        paths
            .iter()
            .filter_map(|p| {
                let path = RelPath::parse(p).ok()?;
                let sha256 = Digest::of_file(&path.under(&self.root)).ok()?;
                Some(FileEvidence {
                    path: p.clone(),
                    sha256,
                })
            })
            .collect()
    }

    /// Installs `record`, fetching payloads with `fetch` and checking the result with
    /// `health` (see the module documentation for the steps).
    pub fn install(
        &mut self,
        record: &PatchRecord,
        fetch: &mut Fetch<'_>,
        health: &mut Health<'_>,
    ) -> Result<Installed, InstallError> {
        let paths = record.validate()?;
        if self.applied()?.iter().any(|a| a.id == record.id) {
            return Ok(Installed::AlreadyApplied);
        }
        match self.existence(record) {
            Finding::AlreadyApplied => return Ok(Installed::AlreadyInPlace),
            Finding::Needed { .. } => {}
            other => return Err(InstallError::ChangedLocally(other.describe())),
        }
        let result = self.install_checked(record, &paths, fetch, health);
        self.prune(&record.id);
        result
    }

    /// Removes the patch `id`, restoring the files it replaced from their backups and
    /// deleting those it created.
    pub fn remove(&mut self, id: &str) -> Result<Applied, RemoveError> {
        let ledger = self.applied()?;
        let entry = ledger
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| RemoveError::NotApplied(id.into()))?;
        for (n, file) in entry.files.iter().enumerate() {
            let now = Digest::of_file(&file.path.under(&self.root)).ok().flatten();
            if now != Some(file.after) {
                return Err(RemoveError::ChangedLocally {
                    path: file.path.to_string(),
                });
            }
            if file.existed && !self.backup(id, n).is_file() {
                return Err(RemoveError::NoBackup {
                    path: file.path.to_string(),
                });
            }
        }
        let result = self.remove_checked(&entry, &ledger);
        self.prune(id);
        result.map(|()| entry)
    }

    fn install_checked(
        &mut self,
        record: &PatchRecord,
        paths: &[RelPath],
        fetch: &mut Fetch<'_>,
        health: &mut Health<'_>,
    ) -> Result<Installed, InstallError> {
        let id = &record.id;
        // Stage every payload and check it before anything in the tree changes.
        let staging = self.state_path(&format!("staging/{id}"));
        self.io
            .create_dirs(&staging)
            .map_err(|e| install_io("creating", &staging, e))?;
        for (n, file) in record.files.iter().enumerate() {
            self.stage(file, &staging.join(n.to_string()), fetch)?;
        }
        // Plan the swaps and the directories they create.
        let mut dirs: Vec<RelPath> = Vec::new();
        for path in paths {
            for dir in path.ancestors() {
                if !dir.under(&self.root).is_dir() && !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        let entry = Applied {
            id: id.clone(),
            files: paths
                .iter()
                .zip(&record.files)
                .map(|(path, file)| AppliedFile {
                    path: path.clone(),
                    existed: record.needed_state(&file.path).flatten().is_some(),
                    after: file.sha256,
                })
                .collect(),
            dirs,
        };
        let mut ledger = self.applied()?;
        ledger.push(entry.clone());
        let transaction = Transaction {
            operation: Operation::Install,
            entry: &entry,
            swaps: self.swaps(Operation::Install, &entry),
            area: self.state_path(&format!("backup/{id}")),
            ledger: &ledger,
        };
        let check = || self.check_installed(record, &entry, health);
        self.run(transaction, check, install_io, |reason, error| {
            InstallError::RollbackFailed { reason, error }
        })?;
        Ok(Installed::Applied {
            files: entry.files.len(),
        })
    }

    fn remove_checked(&mut self, entry: &Applied, ledger: &[Applied]) -> Result<(), RemoveError> {
        let rest: Vec<Applied> = ledger
            .iter()
            .filter(|a| a.id != entry.id)
            .cloned()
            .collect();
        let swaps = self.swaps(Operation::Remove, entry);
        let transaction = Transaction {
            operation: Operation::Remove,
            entry,
            swaps: swaps.clone(),
            area: self.state_path(&format!("removing/{}", entry.id)),
            ledger: &rest,
        };
        let remove_io = |during, path: &Path, error| RemoveError::Io {
            during,
            path: path.display().to_string(),
            error,
        };
        self.run(
            transaction,
            || Ok(()),
            remove_io,
            |reason, error| RemoveError::RollbackFailed { reason, error },
        )?;
        let dirs: Vec<PathBuf> = entry.dirs.iter().map(|d| d.under(&self.root)).collect();
        ops::remove_empty_dirs(&dirs);
        for swap in &swaps {
            let _ = fs::remove_file(&swap.aside);
        }
        Ok(())
    }

    /// Makes `transaction.area`, writes the journal, swaps, runs `check`, writes the
    /// ledger and drops the journal; on any failure after the journal, undoes the swaps.
    fn run<E: std::fmt::Display>(
        &self,
        transaction: Transaction<'_>,
        check: impl FnOnce() -> Result<(), E>,
        io_error: impl Fn(&'static str, &Path, io::Error) -> E,
        rollback_failed: impl FnOnce(String, io::Error) -> E,
    ) -> Result<(), E> {
        let Transaction {
            operation,
            entry,
            swaps,
            area,
            ledger,
        } = transaction;
        self.io
            .create_dirs(&area)
            .map_err(|e| io_error("creating", &area, e))?;
        let journal = self.state_path("journal");
        let text = record::format(Some(operation), std::slice::from_ref(entry));
        self.io
            .write_atomic(&journal, text.as_bytes())
            .map_err(|e| io_error("writing", &journal, e))?;
        let outcome = match ops::apply(&self.io, &swaps) {
            Err((progress, error)) => {
                let target = swaps.get(progress.len() - 1).map(|s| s.target.as_path());
                Err((
                    progress,
                    io_error("swapping", target.unwrap_or(&self.root), error),
                ))
            }
            Ok(()) => {
                let done = vec![Progress::Placed; swaps.len()];
                let ledger_path = self.state_path("ledger");
                check()
                    .and_then(|()| {
                        self.write_ledger(ledger)
                            .map_err(|e| io_error("writing", &ledger_path, e))
                    })
                    .map_err(|failure| (done, failure))
            }
        };
        match outcome {
            Ok(()) => {
                let _ = fs::remove_file(&journal);
                Ok(())
            }
            Err((progress, failure)) => {
                let created = match operation {
                    Operation::Install => entry.dirs.as_slice(),
                    Operation::Remove => &[],
                };
                self.roll_back(&swaps, &progress, created, &journal)
                    .map_err(|error| rollback_failed(failure.to_string(), error))?;
                Err(failure)
            }
        }
    }

    /// Stages one payload and checks its size and digest.
    fn stage(
        &self,
        file: &NewFile,
        staged: &Path,
        fetch: &mut Fetch<'_>,
    ) -> Result<(), InstallError> {
        let io_err = |error| InstallError::Io {
            during: "staging",
            path: file.path.clone(),
            error,
        };
        let out = self.io.create(staged).map_err(io_err)?;
        let mut writer = StagedWriter {
            file: BufWriter::new(out),
            hasher: Hasher::new(),
            written: 0,
            limit: file.size,
            io_error: None,
            overflow: false,
            io: &self.io,
        };
        let fetched = fetch(file, &mut writer);
        if let Some(error) = writer.io_error.take() {
            return Err(io_err(error));
        }
        if writer.overflow {
            return Err(InstallError::Payload {
                path: file.path.clone(),
                problem: format!("longer than its declared {} bytes", file.size),
            });
        }
        fetched.map_err(|message| InstallError::Fetch {
            path: file.path.clone(),
            message,
        })?;
        let StagedWriter {
            file: out,
            hasher,
            written,
            ..
        } = writer;
        let out = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        self.io.sync(&out).map_err(io_err)?;
        let found = hasher.finish();
        if written != file.size || found != file.sha256 {
            return Err(InstallError::Payload {
                path: file.path.clone(),
                problem: format!(
                    "expected {} bytes with sha256 {}, got {written} bytes with sha256 {found}",
                    file.size, file.sha256
                ),
            });
        }
        self.io.set_mode(staged, file.mode).map_err(io_err)
    }

    /// The post-install check: the digests on disk, then the health check.
    fn check_installed(
        &self,
        record: &PatchRecord,
        entry: &Applied,
        health: &mut Health<'_>,
    ) -> Result<(), InstallError> {
        for file in &entry.files {
            let found = Digest::of_file(&file.path.under(&self.root)).ok().flatten();
            if found != Some(file.after) {
                return Err(InstallError::Check(format!(
                    "{} does not have the digest the patch gave it",
                    file.path
                )));
            }
        }
        health(record).map_err(InstallError::Check)
    }

    /// The existence test of `record` against the files on disk.
    fn existence(&self, record: &PatchRecord) -> Finding {
        fingerprint::existence(&record.fingerprint, |path| {
            let path = RelPath::parse(path).ok()?;
            Digest::of_file(&path.under(&self.root)).ok()
        })
    }

    fn roll_back(
        &self,
        swaps: &[Swap],
        progress: &[Progress],
        created: &[RelPath],
        journal: &Path,
    ) -> io::Result<()> {
        ops::undo(swaps, progress)?;
        let dirs: Vec<PathBuf> = created.iter().map(|d| d.under(&self.root)).collect();
        ops::remove_empty_dirs(&dirs);
        match fs::remove_file(journal) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Undoes what the journal says was under way, or finishes it if the ledger shows it
    /// completed.
    fn recover(&mut self) -> Result<(), StateError> {
        let Some(text) = self.read_state("journal")? else {
            return Ok(());
        };
        let (operation, entry) = record::parse_journal(&text)?;
        let in_ledger = self.applied()?.iter().any(|a| a.id == entry.id);
        let swaps = self.swaps(operation, &entry);
        let (name, done) = match operation {
            Operation::Install => ("install", in_ledger),
            Operation::Remove => ("remove", !in_ledger),
        };
        let journal = self.state_path("journal");
        let undo = || -> io::Result<()> {
            if done {
                return fs::remove_file(&journal);
            }
            let progress: Vec<Progress> = swaps.iter().map(Swap::progress_on_disk).collect();
            let created = if operation == Operation::Install {
                entry.dirs.as_slice()
            } else {
                &[]
            };
            self.roll_back(&swaps, &progress, created, &journal)
        };
        undo().map_err(|error| StateError::Recover {
            operation: name,
            id: entry.id.clone(),
            error,
        })?;
        self.prune(&entry.id);
        let what = if done { "finished" } else { "undid" };
        self.recovered = Some(format!("{what} the interrupted {name} of {}", entry.id));
        Ok(())
    }

    /// Without a journal, staged files and files set aside belong to no operation (a crash
    /// before the journal was written, or after it was dropped): they are deleted.
    fn sweep_stale(&self) {
        for area in ["staging", "removing"] {
            let Ok(patches) = fs::read_dir(self.state_path(area)) else {
                continue;
            };
            for patch in patches.flatten() {
                if let Ok(files) = fs::read_dir(patch.path()) {
                    for file in files.flatten() {
                        let _ = fs::remove_file(file.path());
                    }
                }
                let _ = fs::remove_dir(patch.path());
                let id = patch.file_name().to_string_lossy().into_owned();
                self.prune(&id);
            }
        }
    }

    /// The swaps of an install (staged file in, old one to the backup) or of a removal
    /// (patched file aside, the backup back in, if there was one).
    fn swaps(&self, operation: Operation, entry: &Applied) -> Vec<Swap> {
        let area = |name: &str, n: usize| self.state_path(&format!("{name}/{}/{n}", entry.id));
        let swap = |(n, file): (usize, &AppliedFile)| {
            let target = file.path.under(&self.root);
            let backup = self.backup(&entry.id, n);
            match operation {
                Operation::Install => Swap {
                    target,
                    incoming: Some(area("staging", n)),
                    aside: backup,
                    existed: file.existed,
                },
                Operation::Remove => Swap {
                    target,
                    incoming: file.existed.then_some(backup),
                    aside: area("removing", n),
                    existed: true,
                },
            }
        };
        entry.files.iter().enumerate().map(swap).collect()
    }

    fn backup(&self, id: &str, n: usize) -> PathBuf {
        self.state_path(&format!("backup/{id}/{n}"))
    }

    fn state_path(&self, rel: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(rel)
    }

    fn read_state(&self, name: &str) -> Result<Option<String>, StateError> {
        let path = self.state_path(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StateError::Read {
                path: path.display().to_string(),
                error,
            }),
        }
    }

    /// Writes the ledger; an empty one is deleted, so that removing every patch leaves
    /// the directory as it was before the first.
    fn write_ledger(&self, entries: &[Applied]) -> io::Result<()> {
        let path = self.state_path("ledger");
        if entries.is_empty() {
            return match self.io.remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        self.io
            .write_atomic(&path, record::format(None, entries).as_bytes())
    }

    /// Removes the state directories left empty (staging and removal areas always, the
    /// patch's backups once emptied, the state directory itself once empty).
    fn prune(&self, id: &str) {
        let state = self.root.join(STATE_DIR);
        for dir in [
            format!("staging/{id}"),
            "staging".into(),
            format!("removing/{id}"),
            "removing".into(),
            format!("backup/{id}"),
            "backup".into(),
        ] {
            let dir = state.join(dir);
            // Staged files of a failed install are dropped with their directory.
            if dir.ends_with(format!("staging/{id}"))
                && let Ok(entries) = fs::read_dir(&dir)
            {
                for entry in entries.flatten() {
                    let _ = fs::remove_file(entry.path());
                }
            }
            let _ = fs::remove_dir(dir);
        }
        let _ = fs::remove_dir(&state);
    }
}

/// One install or removal: the swaps of an entry, the state area they use, and the ledger
/// to write once they are done and checked.
struct Transaction<'a> {
    operation: Operation,
    entry: &'a Applied,
    swaps: Vec<Swap>,
    area: PathBuf,
    ledger: &'a [Applied],
}

fn install_io(during: &'static str, path: &Path, error: io::Error) -> InstallError {
    InstallError::Io {
        during,
        path: path.display().to_string(),
        error,
    }
}
