//! The root book: vendor roots' statements and further delegations, verified and kept so
//! that the registry can serve them to clients, and so that names registered under a root
//! belong to the root rather than to whichever online key signed them. Pure and in memory;
//! the registry commits every statement to the store before applying it here.
//!
//! Rules:
//! - A root's first statement (version 1) is accepted on its own threshold; each later one
//!   only when it verifies after the newest held (higher version, m of the old keys, m' of
//!   its own), so the registry never serves a chain a client could not follow, and an old
//!   statement never replaces a newer one.
//! - A further delegation is kept when its parent holds a grant under the root's newest
//!   statement and it stays within it; a widening one is refused.
//! - A name a root's delegated key registers is owned by the root: it stands in the catalog
//!   as the key [`owner_key`] makes of the root's id, which no one can sign with.

use crate::core::keys::StoredStatementError;
use courier_protocol::{
    Authority, AuthorityError, DelegationError, DelegationStatement, MAX_ROOTS_ASKED, RootBatch,
    RootError, RootId, RootSince, RootStatement, SignedDelegation, SignedRootStatement, VendorKey,
};
use std::collections::HashMap;

/// Most further delegations kept per root.
pub const MAX_FURTHER: usize = 256;

/// Why a root statement or delegation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootRefused {
    /// The statement does not verify, or does not follow the newest held.
    #[error("root statement refused: {0}")]
    Root(#[from] RootError),
    /// The delegation does not verify on its own.
    #[error("{0}")]
    Delegation(#[from] DelegationError),
    /// The delegation names a root the registry holds no statement of.
    #[error("no statement of {0} is held")]
    UnknownRoot(RootId),
    /// The delegation's parent holds no grant, or it widens it.
    #[error("delegation refused: {0}")]
    Authority(#[from] AuthorityError),
    /// The root has as many further delegations as are kept.
    #[error("{0} has {MAX_FURTHER} delegations already")]
    Full(RootId),
}

/// The key standing for a root as the owner of names in the catalog.
pub fn owner_key(root: &RootId) -> VendorKey {
    VendorKey(root.0)
}

/// One root: every statement held, in version order, the newest verified, and the further
/// delegations under it.
#[derive(Debug)]
struct RootRecord {
    chain: Vec<SignedRootStatement>,
    current: RootStatement,
    further: Vec<(DelegationStatement, SignedDelegation)>,
}

impl RootRecord {
    fn with<T>(&self, f: impl FnOnce(Authority<'_>) -> T) -> T {
        let further: Vec<DelegationStatement> =
            self.further.iter().map(|(s, _)| s.clone()).collect();
        f(Authority {
            root: &self.current,
            further: &further,
        })
    }
}

/// The roots held.
#[derive(Debug, Default)]
pub struct RootBook {
    roots: HashMap<RootId, RootRecord>,
}

impl RootBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The book the stored statements and delegations make, each verified again in
    /// version order (a stored one that does not verify means the store is corrupt).
    pub fn from_stored(
        mut statements: Vec<SignedRootStatement>,
        delegations: Vec<SignedDelegation>,
    ) -> Result<Self, StoredStatementError> {
        let mut book = Self::new();
        statements.sort_by_key(|s| s.peek().map_or(0, |p| p.version));
        let corrupt = |what: &'static str, root: Option<RootId>| StoredStatementError {
            key: root.map_or(VendorKey([0; 32]), |r| owner_key(&r)),
            what,
        };
        for s in statements {
            let root = s.peek().ok().map(|p| p.root);
            let verified = book
                .admit_root(&s)
                .map_err(|_| corrupt("root statement", root))?;
            if let Some(statement) = verified {
                book.apply_root(statement, s);
            }
        }
        for d in delegations {
            let root = d.peek().ok().map(|p| p.root);
            let verified = book
                .admit_delegation(&d)
                .map_err(|_| corrupt("delegation", root))?;
            if let Some(statement) = verified {
                book.apply_delegation(statement, d);
            }
        }
        Ok(book)
    }

    /// Checks a root statement against the newest held: `Ok(None)` if it is held already.
    pub fn admit_root(
        &self,
        signed: &SignedRootStatement,
    ) -> Result<Option<RootStatement>, RootRefused> {
        let peek = signed.peek().map_err(|e| RootError::Verify(e.into()))?;
        let verified = match self.roots.get(&peek.root) {
            Some(record) if record.chain.contains(signed) => return Ok(None),
            Some(record) => signed.verify_after(&record.current)?,
            None => signed.verify_first()?,
        };
        Ok(Some(verified.into_inner()))
    }

    /// Applies a root statement [`RootBook::admit_root`] accepted (after it was stored).
    pub fn apply_root(&mut self, statement: RootStatement, signed: SignedRootStatement) {
        match self.roots.get_mut(&statement.root) {
            Some(record) => {
                record.current = statement;
                record.chain.push(signed);
            }
            None => {
                self.roots.insert(
                    statement.root,
                    RootRecord {
                        current: statement,
                        chain: vec![signed],
                        further: Vec::new(),
                    },
                );
            }
        }
    }

    /// Checks a further delegation: `Ok(None)` if it is held already.
    pub fn admit_delegation(
        &self,
        signed: &SignedDelegation,
    ) -> Result<Option<DelegationStatement>, RootRefused> {
        let statement = signed.verify()?.into_inner();
        let record = self
            .roots
            .get(&statement.root)
            .ok_or(RootRefused::UnknownRoot(statement.root))?;
        if record.further.iter().any(|(_, s)| s == signed) {
            return Ok(None);
        }
        if record.further.len() >= MAX_FURTHER {
            return Err(RootRefused::Full(statement.root));
        }
        record.with(|a| a.admit(&statement))?;
        Ok(Some(statement))
    }

    /// Applies a delegation [`RootBook::admit_delegation`] accepted (after it was stored).
    pub fn apply_delegation(&mut self, statement: DelegationStatement, signed: SignedDelegation) {
        if let Some(record) = self.roots.get_mut(&statement.root) {
            record.further.push((statement, signed));
        }
    }

    /// The root a name registered by `key` belongs to: the first root whose delegation lets
    /// `key` sign for `name` at wall-clock `wall_ms`.
    pub fn root_for(&self, key: &VendorKey, name: &str, wall_ms: u64) -> Option<RootId> {
        self.roots
            .iter()
            .find(|(_, r)| r.with(|a| a.authorize(key, name, wall_ms)).is_ok())
            .map(|(id, _)| *id)
    }

    /// Whether `key` could sign for `name` under `statement` (a root's next statement, not
    /// applied yet) and the delegations held under its root, at `wall_ms`.
    pub fn authorized_under(
        &self,
        statement: &RootStatement,
        key: &VendorKey,
        name: &str,
        wall_ms: u64,
    ) -> bool {
        let further: Vec<DelegationStatement> = self
            .roots
            .get(&statement.root)
            .map(|r| r.further.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default();
        let authority = Authority {
            root: statement,
            further: &further,
        };
        authority.authorize(key, name, wall_ms).is_ok()
    }

    /// Whether `owner` stands for a root held here.
    pub fn root_of_owner(&self, owner: &VendorKey) -> Option<RootId> {
        let id = RootId(owner.0);
        self.roots.contains_key(&id).then_some(id)
    }

    /// Whether `key` may still sign for `name` under `root` at `wall_ms`.
    pub fn authorized(&self, root: &RootId, key: &VendorKey, name: &str, wall_ms: u64) -> bool {
        self.roots
            .get(root)
            .is_some_and(|r| r.with(|a| a.authorize(key, name, wall_ms)).is_ok())
    }

    /// Whether a statement of `root` is held.
    pub fn knows(&self, root: &RootId) -> bool {
        self.roots.contains_key(root)
    }

    /// Every root held, with the newest version held of its statements.
    pub fn held(&self) -> Vec<RootSince> {
        self.roots
            .iter()
            .map(|(root, r)| RootSince {
                root: *root,
                after_version: r.current.version,
            })
            .collect()
    }

    /// The statements newer than each version asked, and the delegations under those
    /// roots (at most [`MAX_ROOTS_ASKED`] statements).
    pub fn statements_for(&self, asked: &[RootSince]) -> RootBatch {
        let mut batch = RootBatch::default();
        for since in asked.iter().take(MAX_ROOTS_ASKED) {
            let Some(record) = self.roots.get(&since.root) else {
                continue;
            };
            let newer = record
                .chain
                .iter()
                .filter(|s| s.peek().is_ok_and(|p| p.version > since.after_version));
            batch.statements.extend(newer.cloned());
            batch
                .delegations
                .extend(record.further.iter().map(|(_, s)| s.clone()));
        }
        batch.statements.truncate(MAX_ROOTS_ASKED);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_protocol::{Delegation, NamePattern, RootKeys, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn first_then_following_statements_are_kept_and_served_and_rollback_refused() {
        let keys = RootKeys::new([VendorKey::of(&key(1)), VendorKey::of(&key(2))], 2).unwrap();
        let mut v1 = RootStatement::genesis(keys).next(1);
        v1.delegations.push(Delegation {
            key: VendorKey::of(&key(10)),
            names: vec![NamePattern::new("acme/*").unwrap()],
            not_after_ms: 1000,
        });
        let s1 = SignedRootStatement::sign(&v1, &[&key(1), &key(2)]);
        let mut book = RootBook::new();
        let st = book.admit_root(&s1).unwrap().unwrap();
        book.apply_root(st, s1.clone());
        assert_eq!(book.admit_root(&s1), Ok(None));
        let id = v1.root;
        assert_eq!(
            book.root_for(&VendorKey::of(&key(10)), "acme/x", 5),
            Some(id)
        );
        assert_eq!(
            book.root_for(&VendorKey::of(&key(10)), "acme/x", 1001),
            None
        );
        let mut v2 = v1.next(2);
        v2.revoked.push(VendorKey::of(&key(10)));
        let s2 = SignedRootStatement::sign(&v2, &[&key(1), &key(2)]);
        let st = book.admit_root(&s2).unwrap().unwrap();
        book.apply_root(st, s2.clone());
        assert!(!book.authorized(&id, &VendorKey::of(&key(10)), "acme/x", 5));
        let mut old = v1.next(2);
        old.version = 1;
        old.issued_at_ms = 7;
        let replay = SignedRootStatement::sign(&old, &[&key(1), &key(2)]);
        assert!(matches!(
            book.admit_root(&replay),
            Err(RootRefused::Root(RootError::Rollback { .. }))
        ));
        let since = RootSince {
            root: id,
            after_version: 1,
        };
        assert_eq!(book.statements_for(&[since]).statements, vec![s2]);
        let again = RootBook::from_stored(vec![s1.clone()], vec![]).unwrap();
        assert_eq!(again.root_of_owner(&owner_key(&id)), Some(id));
    }
}
