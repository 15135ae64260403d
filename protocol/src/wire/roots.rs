//! What a client asks about vendor roots, and the root statements and further delegations
//! the registry answers with (the client verifies them itself).

use crate::root::{RootId, SignedDelegation, SignedRootStatement};
use serde::{Deserialize, Serialize};

/// Most roots one request may ask about, and most statements one answer holds.
pub const MAX_ROOTS_ASKED: usize = 256;

/// A root asked about, and the newest version the asker already holds (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootSince {
    /// The root.
    pub root: RootId,
    /// Statements of this version or older are not wanted.
    pub after_version: u64,
}

/// Root statements (oldest version first, per root) and further delegations under them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootBatch {
    /// Root statements newer than asked, in version order per root.
    pub statements: Vec<SignedRootStatement>,
    /// Further delegations made by online keys under the roots asked about.
    pub delegations: Vec<SignedDelegation>,
}
