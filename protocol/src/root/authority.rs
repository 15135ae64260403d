//! Who may sign for a service name under a root: the root's current statement, and the
//! further delegations its online keys made, followed from the root down.

use super::{Delegation, DelegationStatement, RootStatement};
use crate::signing::VendorKey;

/// Longest chain of further delegations followed below a root's own delegation.
pub const MAX_DELEGATION_DEPTH: usize = 4;

/// A root's current statement and the further delegations known under it (each verified
/// on its own; this checks them against the root).
#[derive(Debug, Clone, Copy)]
pub struct Authority<'a> {
    /// The root's newest verified statement.
    pub root: &'a RootStatement,
    /// Verified delegation statements made under the root.
    pub further: &'a [DelegationStatement],
}

/// Why a key may not sign for a name under a root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// No delegation of the root reaches the key.
    #[error("{0} holds no delegation from this root")]
    NotDelegated(VendorKey),
    /// The root revoked the key (or a key its delegation comes through).
    #[error("{0} is revoked by its root")]
    Revoked(VendorKey),
    /// The delegation reaching the key has expired.
    #[error("delegation to {key} expired {ago_s}s ago")]
    Expired {
        /// The key.
        key: VendorKey,
        /// Seconds since it expired.
        ago_s: u64,
    },
    /// The key's delegation does not cover the name.
    #[error("delegation to {key} does not cover {name:?}")]
    NotCovered {
        /// The key.
        key: VendorKey,
        /// The name.
        name: String,
    },
    /// A further delegation grants more than its parent holds (names or time).
    #[error("delegation by {parent} to {key} widens what {parent} was granted")]
    Widens {
        /// The delegating key.
        parent: VendorKey,
        /// The key delegated to.
        key: VendorKey,
    },
}

impl Authority<'_> {
    /// The grant `key` holds under the root: the root's own delegation, or a further one
    /// whose parent holds a grant it stays within (followed at most
    /// [`MAX_DELEGATION_DEPTH`] deep). Expiry is not checked here.
    pub fn grant(&self, key: &VendorKey) -> Result<Delegation, AuthorityError> {
        self.grant_at(key, 0)
    }

    fn grant_at(&self, key: &VendorKey, depth: usize) -> Result<Delegation, AuthorityError> {
        if self.root.revoked.contains(key) {
            return Err(AuthorityError::Revoked(*key));
        }
        if let Some(d) = self.root.delegation(key) {
            return Ok(d.clone());
        }
        if depth >= MAX_DELEGATION_DEPTH {
            return Err(AuthorityError::NotDelegated(*key));
        }
        let mut refusal = AuthorityError::NotDelegated(*key);
        for s in self.further.iter().filter(|s| s.delegation.key == *key) {
            match self.admit_at(s, depth + 1) {
                Ok(()) => return Ok(s.delegation.clone()),
                Err(e) => refusal = e,
            }
        }
        Err(refusal)
    }

    /// Checks that a further delegation counts: its parent holds a grant under this root
    /// and it stays within it. A widening delegation is refused.
    pub fn admit(&self, statement: &DelegationStatement) -> Result<(), AuthorityError> {
        self.admit_at(statement, 0)
    }

    fn admit_at(&self, s: &DelegationStatement, depth: usize) -> Result<(), AuthorityError> {
        if s.root != self.root.root {
            return Err(AuthorityError::NotDelegated(s.parent));
        }
        if self.root.revoked.contains(&s.delegation.key) {
            return Err(AuthorityError::Revoked(s.delegation.key));
        }
        let parent = self.grant_at(&s.parent, depth)?;
        if !s.delegation.within(&parent) {
            return Err(AuthorityError::Widens {
                parent: s.parent,
                key: s.delegation.key,
            });
        }
        Ok(())
    }

    /// Checks that `key` may sign for the service `name` at `now_ms`.
    pub fn authorize(
        &self,
        key: &VendorKey,
        name: &str,
        now_ms: u64,
    ) -> Result<(), AuthorityError> {
        let grant = self.grant(key)?;
        if now_ms > grant.not_after_ms {
            return Err(AuthorityError::Expired {
                key: *key,
                ago_s: (now_ms - grant.not_after_ms) / 1000,
            });
        }
        if !grant.covers(name) {
            return Err(AuthorityError::NotCovered {
                key: *key,
                name: name.to_string(),
            });
        }
        Ok(())
    }
}
