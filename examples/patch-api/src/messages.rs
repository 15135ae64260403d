//! The messages between the patch proxy and its provider, one request and one answer per
//! provider method (see [`crate::methods`]), encoded with postcard ([`encode`], [`decode`]).
//! Patch records are also what a vendor writes into its catalog folder, as JSON (digests
//! in hex there).

/// What [`decode`] can read (serde's bound, named here so users need not depend on serde).
pub use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::paths::{PathError, RelPath};

/// The largest message [`decode`] accepts (16 MiB).
pub const MAX_MESSAGE: usize = 16 << 20;

/// What a client machine tells the provider: its system facts, its installed packages, and
/// the evidence its fingerprints asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The client's id, as the proxy knows it (kept by the provider with the inventory).
    pub client: String,
    /// The `os` host fact (`linux`).
    pub os: String,
    /// The `arch` host fact (`x86_64`).
    pub arch: String,
    /// The `kernel` host fact (the kernel release).
    pub kernel: String,
    /// The `os-release` host fact: the text of `/etc/os-release`.
    pub os_release: String,
    /// The package manager (`dpkg`, `apk`), when the `package-manager` fact says.
    pub package_manager: String,
    /// The installed packages.
    pub packages: Vec<Package>,
    /// The digests of the files the fingerprints name, in the managed directory.
    pub evidence: Vec<FileEvidence>,
    /// The patches the managed directory's ledger says are in place.
    pub applied: Vec<String>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its installed version.
    pub version: String,
    /// Its architecture (`amd64`, `all`); empty when the host did not say.
    pub arch: String,
}

/// What one file in the managed directory looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEvidence {
    /// The file, relative to the managed directory.
    pub path: String,
    /// Its digest; `None` when there is no such file.
    pub sha256: Option<Digest>,
}

/// The answer to `fingerprints`: the files whose digests the provider's fingerprints need
/// (the signature blocks of seed 004).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatherList {
    /// Paths relative to the managed directory.
    pub paths: Vec<String>,
}

/// The answer to `recommend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Package upgrades, as the machine's package manager would choose them.
    pub upgrades: Vec<UpgradeOffer>,
    /// Patches that apply, each with its reason.
    pub patches: Vec<PatchOffer>,
    /// Anything else worth telling (applied, withdrawn, changed locally, unread indexes).
    pub notes: Vec<String>,
}

/// An installed package and its candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOffer {
    /// The package name.
    pub name: String,
    /// The installed package's architecture.
    pub arch: String,
    /// The installed version.
    pub installed: String,
    /// The candidate version.
    pub candidate: String,
}

/// A patch that applies to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchOffer {
    /// The patch id.
    pub id: String,
    /// One line about it.
    pub title: String,
    /// How urgent it is.
    pub severity: Severity,
    /// Why it applies (the fingerprint's finding).
    pub reason: String,
}

/// How urgent a patch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fix at once.
    Critical,
    /// Fix soon.
    Important,
    /// Fix when convenient.
    Moderate,
    /// Nice to have.
    Low,
}

/// A vendor patch: what it is, when it applies (its fingerprint), the files it brings and
/// the health check that shows it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// The vendor's id: 1-64 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
    pub id: String,
    /// One line about it.
    pub title: String,
    /// How urgent it is.
    pub severity: Severity,
    /// When it applies.
    pub fingerprint: Fingerprint,
    /// The files it writes into the managed directory.
    pub files: Vec<NewFile>,
    /// The command (lent by the client's policy) whose success shows the patch works.
    #[serde(default)]
    pub health: Option<HealthCheck>,
}

/// A patch fingerprint (seed 004): the inventory it requires, and the existence test over
/// the files it gathers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// What the inventory must show (the install dependencies).
    #[serde(default)]
    pub requires: Requires,
    /// The file states showing the patch is needed; all must hold. Every file the patch
    /// writes is listed here, with the digest it must have (or absent) before the patch.
    pub needed: Vec<FileState>,
    /// The file states showing the patch is already applied; all must hold.
    pub applied: Vec<FileState>,
}

/// What a machine must have for a patch to be considered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requires {
    /// The `os` fact or os-release `ID` (`linux`, `debian`), if it matters.
    #[serde(default)]
    pub os: Option<String>,
    /// The `arch` fact (`x86_64`) or dpkg architecture (`amd64`), if it matters.
    #[serde(default)]
    pub arch: Option<String>,
    /// Packages that must be installed.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// A file's expected state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// The file, relative to the managed directory.
    pub path: String,
    /// Its digest; `None` for "no such file".
    pub sha256: Option<Digest>,
}

/// A file a patch writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFile {
    /// Where, relative to the managed directory.
    pub path: String,
    /// The digest of its content, which is also how its payload is fetched.
    pub sha256: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits (applied where the platform has them).
    pub mode: u32,
}

/// A command lent by the client's policy, run after the files are in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The command's name in the client's policy (e.g. `example-app-health`).
    pub command: String,
    /// Arguments appended to it.
    #[serde(default)]
    pub args: Vec<String>,
}

/// The request of `chunk`: up to `len` bytes of the payload `sha256`, from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// The payload.
    pub sha256: Digest,
    /// Where to start.
    pub offset: u64,
    /// How many bytes at most (the provider serves at most [`crate::MAX_CHUNK`]).
    pub len: u32,
}

/// What a client did with the patches and upgrades it was offered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallReport {
    /// The client's id.
    pub client: String,
    /// One entry per patch (or `packages` for the upgrade step).
    pub entries: Vec<ReportEntry>,
}

/// What became of one patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportEntry {
    /// The patch id, or `packages`.
    pub id: String,
    /// What happened.
    pub stage: Stage,
    /// One line.
    pub detail: String,
}

/// What happened to one patch or to the upgrade step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Installed and checked.
    Applied,
    /// Already in place: nothing done.
    AlreadyApplied,
    /// The operator said no: nothing done.
    Declined,
    /// Not applied, nothing changed, and not the patch's fault: files changed locally, no
    /// health command lent, the provider gone, a full disk (rolled back).
    NotApplied,
    /// The patch failed (payload digest, post-install check): rolled back, nothing left
    /// changed. Counts against the patch.
    Failed,
    /// The patch failed and so did its rollback: the journal is kept for the next run.
    RollbackFailed,
    /// Removed: the backup is back in place.
    Removed,
    /// The package upgrades ran.
    Upgraded,
    /// The package upgrades were not run (no command lent, or it failed).
    NotUpgraded,
}

impl Stage {
    /// Whether the provider counts it as a failure of the patch.
    pub fn is_failure(self) -> bool {
        matches!(self, Stage::Failed | Stage::RollbackFailed)
    }

    /// Whether the patch is in place afterwards.
    pub fn in_place(self) -> bool {
        matches!(
            self,
            Stage::Applied | Stage::AlreadyApplied | Stage::Upgraded
        )
    }
}

impl Severity {
    /// Its name: `critical`, `important`, `moderate` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Important => "important",
            Severity::Moderate => "moderate",
            Severity::Low => "low",
        }
    }
}

/// Why a patch record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The id is not 1-64 of `A-Z a-z 0-9 . _ -`, or starts with `.`.
    #[error("patch id {0:?} is not 1-64 letters, digits, '.', '_' or '-'")]
    Id(String),
    /// A path is not a plain relative path outside the state directory.
    #[error("patch {id}: {error}")]
    Path {
        /// The patch.
        id: String,
        /// The path's fault.
        error: PathError,
    },
    /// The patch writes no file.
    #[error("patch {0} writes no file")]
    NoFiles(String),
    /// A file is written twice.
    #[error("patch {id} writes {path} twice")]
    Twice {
        /// The patch.
        id: String,
        /// The file.
        path: String,
    },
    /// A file the patch writes has no state in the fingerprint's `needed` list, so the
    /// engine could not tell it changed locally.
    #[error("patch {id} writes {path}, which its fingerprint's needed files do not name")]
    Unfingerprinted {
        /// The patch.
        id: String,
        /// The file.
        path: String,
    },
    /// The fingerprint's `applied` list is empty, so a second run could not tell it is done.
    #[error("patch {0} has no applied state in its fingerprint")]
    NoAppliedState(String),
}

impl PatchRecord {
    /// Checks the id, every path, and that the fingerprint covers every file written;
    /// returns the files' checked paths, in the record's order.
    pub fn validate(&self) -> Result<Vec<RelPath>, RecordError> {
        check_id(&self.id)?;
        let path = |p: &str| {
            RelPath::parse(p).map_err(|error| RecordError::Path {
                id: self.id.clone(),
                error,
            })
        };
        for state in self
            .fingerprint
            .needed
            .iter()
            .chain(&self.fingerprint.applied)
        {
            path(&state.path)?;
        }
        if self.files.is_empty() {
            return Err(RecordError::NoFiles(self.id.clone()));
        }
        if self.fingerprint.applied.is_empty() {
            return Err(RecordError::NoAppliedState(self.id.clone()));
        }
        let mut paths = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let checked = path(&file.path)?;
            if paths.contains(&checked) {
                return Err(RecordError::Twice {
                    id: self.id.clone(),
                    path: file.path.clone(),
                });
            }
            if !self.fingerprint.needed.iter().any(|s| s.path == file.path) {
                return Err(RecordError::Unfingerprinted {
                    id: self.id.clone(),
                    path: file.path.clone(),
                });
            }
            paths.push(checked);
        }
        Ok(paths)
    }

    /// The state the fingerprint expects of `path` before the patch, if it names it.
    pub fn needed_state(&self, path: &str) -> Option<Option<Digest>> {
        self.fingerprint
            .needed
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.sha256)
    }

    /// What the operator is shown: `id (severity): title`.
    pub fn summary(&self) -> String {
        format!("{} ({}): {}", self.id, self.severity.as_str(), self.title)
    }
}

/// Checks a patch id: 1-64 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_id(id: &str) -> Result<(), RecordError> {
    let ok = (1..=64).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or_else(|| RecordError::Id(id.into()))
}

impl Inventory {
    /// The inventory as pretty JSON, as the proxy's `inventory` shows it.
    pub fn to_json(&self) -> String {
        // Plain data with string keys only: serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the 16 MiB cap")]
    TooLarge(usize),
    /// Not the message expected.
    #[error("malformed {what}: {error}")]
    Malformed {
        /// The message expected.
        what: &'static str,
        /// What postcard said.
        error: postcard::Error,
    },
}

/// Encodes a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // postcard's only failures are for types it cannot represent, which ours are not.
    postcard::to_stdvec(message).unwrap_or_default()
}

/// Decodes a message of type `T`, named `what` in the error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    postcard::from_bytes(bytes).map_err(|error| DecodeError::Malformed { what, error })
}
