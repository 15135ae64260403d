//! Why the engine did not install, remove, or open: one error type per operation, each
//! saying whether the managed directory was left as it was.

use std::io;

use super::record::RecordFileError;
use crate::messages::{RecordError, Stage};

/// Why a patch was not installed. Every variant leaves the managed directory as it was,
/// but [`InstallError::RollbackFailed`].
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The record is unusable.
    #[error("refused: {0}")]
    Record(#[from] RecordError),
    /// A file differs from both the fingerprint's needed and applied states.
    #[error("not applied: {0}")]
    ChangedLocally(String),
    /// A payload could not be fetched (the provider is gone, say).
    #[error("not applied: payload of {path} could not be fetched: {message}")]
    Fetch {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A payload is not what the record says.
    #[error("refused: payload of {path}: {problem}")]
    Payload {
        /// The file.
        path: String,
        /// Size or digest mismatch.
        problem: String,
    },
    /// A file operation failed (a full disk, a refused permission, a file in the way);
    /// whatever had been swapped was rolled back.
    #[error("not applied, rolled back: {during} {path}: {error}")]
    Io {
        /// The step.
        during: &'static str,
        /// The file or directory.
        path: String,
        /// The error.
        #[source]
        error: io::Error,
    },
    /// The post-install check failed (a digest on disk, or the health check): rolled back.
    #[error("check failed, rolled back: {0}")]
    Check(String),
    /// A failure, then its rollback failed too: the journal stays for the next run.
    #[error("{reason}; rollback failed: {error} (the next run retries it)")]
    RollbackFailed {
        /// The first failure.
        reason: String,
        /// The rollback's error.
        #[source]
        error: io::Error,
    },
    /// The ledger or journal could not be read.
    #[error("not applied: {0}")]
    State(#[from] StateError),
}

/// Why a patch was not removed. Every variant leaves it in place, but
/// [`RemoveError::RollbackFailed`].
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// The ledger does not have the patch.
    #[error("{0} is not applied here")]
    NotApplied(String),
    /// A file the patch wrote was changed since.
    #[error("not removed: {path} changed since the patch was applied")]
    ChangedLocally {
        /// The file.
        path: String,
    },
    /// A file the patch replaced has no backup.
    #[error("not removed: the backup of {path} is missing")]
    NoBackup {
        /// The file.
        path: String,
    },
    /// A file operation failed; what had been restored was put back.
    #[error("not removed, rolled back: {during} {path}: {error}")]
    Io {
        /// The step.
        during: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        error: io::Error,
    },
    /// A failure, then its rollback failed too: the journal stays for the next run.
    #[error("{reason}; rollback failed: {error} (the next run retries it)")]
    RollbackFailed {
        /// The first failure.
        reason: String,
        /// The rollback's error.
        #[source]
        error: io::Error,
    },
    /// The ledger or journal could not be read.
    #[error("not removed: {0}")]
    State(#[from] StateError),
}

/// Why the engine's state could not be read or recovered.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The managed directory is not a directory.
    #[error("managed directory {path}: {error}")]
    Root {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// Reading a record file failed.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// A record file is damaged (never taken as empty).
    #[error(transparent)]
    Malformed(#[from] RecordFileError),
    /// Undoing the interrupted operation failed.
    #[error("cannot undo the interrupted {operation} of {id}: {error}")]
    Recover {
        /// `install` or `remove`.
        operation: &'static str,
        /// The patch.
        id: String,
        /// Why.
        #[source]
        error: io::Error,
    },
}

impl InstallError {
    /// How the provider files it.
    pub fn stage(&self) -> Stage {
        match self {
            InstallError::Record(_) | InstallError::Payload { .. } | InstallError::Check(_) => {
                Stage::Failed
            }
            InstallError::RollbackFailed { .. } => Stage::RollbackFailed,
            InstallError::ChangedLocally(_)
            | InstallError::Fetch { .. }
            | InstallError::Io { .. }
            | InstallError::State(_) => Stage::NotApplied,
        }
    }
}
