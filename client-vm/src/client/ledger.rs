//! The ledger of what this client installed into its managed directory to meet proxies'
//! prerequisites: each interface with the installer (service name, version, vendor) that
//! put it there, and each system package installed through the policy's command. Kept in
//! the state directory (`installed.toml`, out of every proxy's reach, written atomically
//! before the install it records is reported done), in memory without one. `courier updates`
//! reads it to offer newer installers.

use crate::state::{StateError, lock_beside, lock_beside_telling, write_atomic};
use courier_protocol::VendorKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// File name of the ledger in the state directory.
pub const LEDGER_FILE: &str = "installed.toml";

/// One thing installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerEntry {
    /// An interface installed by an installer proxy.
    Service {
        /// The interface (`acme:fonts/glyphs`).
        provides: String,
        /// The installer's service name.
        installer: String,
        /// The installer's version: the version installed.
        version: semver::Version,
        /// The key that signed the installer.
        vendor: VendorKey,
        /// The version requirement it was installed for (`^1`): updates stay within it.
        requirement: String,
        /// Who needed it (`acme/greeter 1.0.0`).
        required_by: String,
        /// When (ms since the epoch).
        installed_at_ms: u64,
    },
    /// A system package installed through the policy's `install-package` command.
    Package {
        /// The package name.
        name: String,
        /// Who needed it.
        required_by: String,
        /// When (ms since the epoch).
        installed_at_ms: u64,
    },
}

impl LedgerEntry {
    /// What it stands for: the interface, or `package NAME`.
    pub fn key(&self) -> String {
        match self {
            LedgerEntry::Service { provides, .. } => provides.clone(),
            LedgerEntry::Package { name, .. } => format!("package {name}"),
        }
    }
}

/// The file's form: strings, so that a person can read it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerFile {
    #[serde(default)]
    installed: Vec<Row>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    provides: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    installer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requirement: Option<String>,
    required_by: String,
    installed_at_ms: u64,
}

/// The ledger, written through. Each change is made under an exclusive lock on
/// `installed.toml.lock` to the file as it is on disk then, so that two processes of one
/// client (two `courier call`s) never lose each other's entries.
pub(super) struct Ledger {
    entries: Mutex<Vec<LedgerEntry>>,
    file: Option<PathBuf>,
}

impl Ledger {
    /// The ledger kept in `state_dir` (empty on a first run), in memory without one.
    pub(super) fn open(state_dir: Option<&Path>) -> Result<Self, StateError> {
        let file = state_dir.map(|d| d.join(LEDGER_FILE));
        let entries = match &file {
            Some(path) => load(path)?,
            None => Vec::new(),
        };
        Ok(Self {
            entries: Mutex::new(entries),
            file,
        })
    }

    /// Waits for, then holds until the returned file is dropped, the right to install:
    /// an exclusive lock on `installing.lock` beside the ledger, so that two processes of
    /// one client never resolve prerequisites (or apply updates) at the same time, each
    /// taking the other's fresh install for its own to undo. `None` for a ledger in memory
    /// (one process). Waits on the blocking pool.
    pub(super) async fn installing(&self) -> Result<Option<std::fs::File>, StateError> {
        let Some(dir) = self.file.as_deref().and_then(Path::parent) else {
            return Ok(None);
        };
        let path = dir.join("installing");
        let io = |e: tokio::task::JoinError| StateError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        };
        let waiting = path.clone();
        tokio::task::spawn_blocking(move || {
            lock_beside_telling(&waiting, || {
                tracing::warn!(
                    "waiting for another courier process of this client that is installing"
                );
            })
            .map(Some)
        })
        .await
        .map_err(io)?
    }

    /// Every entry, in the order installed, as the file says now (another process of this
    /// client may have changed it since this one last read it; as last read or written by
    /// this process if the file cannot be read now).
    pub(super) fn entries(&self) -> Vec<LedgerEntry> {
        self.current().clone()
    }

    /// Whether an entry with `key` is recorded, as the file says now.
    pub(super) fn has(&self, key: &str) -> bool {
        self.current().iter().any(|e| e.key() == key)
    }

    /// The entries, read again from the file first.
    fn current(&self) -> std::sync::MutexGuard<'_, Vec<LedgerEntry>> {
        let mut entries = self.lock();
        if let Some(path) = &self.file
            && let Ok(current) = load(path)
        {
            *entries = current;
        }
        entries
    }

    /// Records `entry`, replacing one with the same key.
    pub(super) fn record(&self, entry: LedgerEntry) -> Result<(), StateError> {
        let key = entry.key();
        self.change(|entries| {
            entries.retain(|e| e.key() != key);
            entries.push(entry);
            true
        })
        .map(|_| ())
    }

    /// Forgets the entry with `key`; false if there was none.
    pub(super) fn forget(&self, key: &str) -> Result<bool, StateError> {
        self.change(|entries| {
            let before = entries.len();
            entries.retain(|e| e.key() != key);
            entries.len() != before
        })
    }

    /// Applies `edit` to the ledger as it is on disk now (under the lock), and writes it if
    /// `edit` says it changed anything.
    fn change(&self, edit: impl FnOnce(&mut Vec<LedgerEntry>) -> bool) -> Result<bool, StateError> {
        let mut entries = self.lock();
        let Some(path) = &self.file else {
            return Ok(edit(&mut entries));
        };
        let _lock = lock_beside(path)?;
        let mut current = load(path)?;
        let changed = edit(&mut current);
        if changed {
            save(path, &current)?;
        }
        *entries = current;
        Ok(changed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LedgerEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `entries` to `path` atomically.
fn save(path: &Path, entries: &[LedgerEntry]) -> Result<(), StateError> {
    let file = LedgerFile {
        installed: entries.iter().map(row).collect(),
    };
    let text = toml::to_string(&file).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        line: 0,
        reason: format!("cannot write the ledger: {e}"),
    })?;
    let header = "# What courier installed into the managed directory (courier updates).\n";
    write_atomic(path, format!("{header}{text}").as_bytes()).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn row(entry: &LedgerEntry) -> Row {
    match entry {
        LedgerEntry::Service {
            provides,
            installer,
            version,
            vendor,
            requirement,
            required_by,
            installed_at_ms,
        } => Row {
            provides: Some(provides.clone()),
            package: None,
            installer: Some(installer.clone()),
            version: Some(version.to_string()),
            vendor: Some(vendor.to_string()),
            requirement: Some(requirement.clone()),
            required_by: required_by.clone(),
            installed_at_ms: *installed_at_ms,
        },
        LedgerEntry::Package {
            name,
            required_by,
            installed_at_ms,
        } => Row {
            provides: None,
            package: Some(name.clone()),
            installer: None,
            version: None,
            vendor: None,
            requirement: None,
            required_by: required_by.clone(),
            installed_at_ms: *installed_at_ms,
        },
    }
}

fn load(path: &Path) -> Result<Vec<LedgerEntry>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let corrupt = |line: usize, reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let file: LedgerFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(1);
        corrupt(line, e.message().to_string())
    })?;
    file.installed
        .into_iter()
        .enumerate()
        .map(|(i, r)| entry(r).map_err(|reason| corrupt(0, format!("entry {}: {reason}", i + 1))))
        .collect()
}

fn entry(row: Row) -> Result<LedgerEntry, String> {
    match (row.provides, row.package) {
        (Some(provides), None) => {
            let installer = row.installer.ok_or("no installer")?;
            let version = row
                .version
                .ok_or("no version")?
                .parse()
                .map_err(|e| format!("version: {e}"))?;
            let vendor = row
                .vendor
                .ok_or("no vendor")?
                .parse()
                .map_err(|e| format!("vendor: {e}"))?;
            let requirement = row.requirement.unwrap_or_else(|| "*".into());
            requirement
                .parse::<semver::VersionReq>()
                .map_err(|e| format!("requirement: {e}"))?;
            Ok(LedgerEntry::Service {
                provides,
                installer,
                version,
                vendor,
                requirement,
                required_by: row.required_by,
                installed_at_ms: row.installed_at_ms,
            })
        }
        (None, Some(name)) => Ok(LedgerEntry::Package {
            name,
            required_by: row.required_by,
            installed_at_ms: row.installed_at_ms,
        }),
        _ => Err("names neither one interface (provides) nor one package".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(provides: &str, version: &str) -> LedgerEntry {
        LedgerEntry::Service {
            provides: provides.into(),
            installer: "acme/glyphs".into(),
            version: version.parse().unwrap(),
            vendor: VendorKey([7; 32]),
            requirement: "^1".into(),
            required_by: "acme/greeter 1.0.0".into(),
            installed_at_ms: 5,
        }
    }

    #[test]
    fn entries_persist_replace_and_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(Some(dir.path())).unwrap();
        ledger
            .record(service("acme:fonts/glyphs", "1.4.0"))
            .unwrap();
        ledger
            .record(LedgerEntry::Package {
                name: "zlib1g".into(),
                required_by: "acme/glyphs 1.4.0".into(),
                installed_at_ms: 6,
            })
            .unwrap();
        ledger
            .record(service("acme:fonts/glyphs", "1.5.0"))
            .unwrap();
        let again = Ledger::open(Some(dir.path())).unwrap();
        assert_eq!(again.entries(), ledger.entries());
        assert_eq!(again.entries().len(), 2);
        assert_eq!(again.entries()[1], service("acme:fonts/glyphs", "1.5.0"));
        assert!(again.has("package zlib1g"));
        assert!(again.forget("package zlib1g").unwrap());
        assert!(!again.forget("package zlib1g").unwrap());
        assert_eq!(Ledger::open(Some(dir.path())).unwrap().entries().len(), 1);
    }

    #[test]
    fn two_processes_keep_each_others_entries() {
        let dir = tempfile::tempdir().unwrap();
        let first = Ledger::open(Some(dir.path())).unwrap();
        let second = Ledger::open(Some(dir.path())).unwrap();
        first.record(service("acme:fonts/glyphs", "1.4.0")).unwrap();
        second.record(service("acme:db/driver", "2.0.0")).unwrap();
        let keys: Vec<String> = Ledger::open(Some(dir.path()))
            .unwrap()
            .entries()
            .iter()
            .map(LedgerEntry::key)
            .collect();
        assert_eq!(keys, ["acme:fonts/glyphs", "acme:db/driver"]);
        assert!(first.forget("acme:db/driver").unwrap());
        assert_eq!(Ledger::open(Some(dir.path())).unwrap().entries().len(), 1);
    }

    #[test]
    fn a_damaged_ledger_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        std::fs::write(
            &path,
            "[[installed]]\nprovides = \"a:b/c\"\nrequired_by = \"x\"\ninstalled_at_ms = 1\n",
        )
        .unwrap();
        assert!(matches!(
            Ledger::open(Some(dir.path())),
            Err(StateError::Corrupt { .. })
        ));
        std::fs::write(&path, "not toml [").unwrap();
        assert!(matches!(
            Ledger::open(Some(dir.path())),
            Err(StateError::Corrupt { .. })
        ));
    }
}
