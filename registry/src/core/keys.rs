//! The key book: which vendor keys were rotated to which, and which were revoked. Pure and
//! in memory; the registry commits every change to the store before applying it here.
//!
//! Rules:
//! - A key rotates at most once, to a key that is not revoked and has not rotated itself;
//!   so rotations form chains that never loop, and [`KeyBook::current`] follows one to the
//!   key that acts for a vendor now.
//! - A rotated key is retired: it can no longer register, renew or cancel; the key it
//!   rotated to (through the whole chain) acts for its names and leases instead.
//! - A revoked key can do nothing any more. Revocation does not undo a rotation made
//!   before it: the new key stays in force.

use courier_protocol::limits::MAX_CHAIN;
use courier_protocol::{
    KeyAction, KeyStatement, SignedKeyStatement, SignedOperatorStatement, VendorKey,
};
use std::collections::{HashMap, HashSet, VecDeque};

/// Why a key may not act, or a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key was revoked.
    #[error("vendor key {0} is revoked")]
    Revoked(VendorKey),
    /// The key was rotated to another key, which acts for it now.
    #[error("vendor key {old} was rotated to {new}")]
    Rotated {
        /// The retired key.
        old: VendorKey,
        /// The key it rotated to.
        new: VendorKey,
    },
    /// A rotation names a revoked key as the new key.
    #[error("cannot rotate to {0}: it is revoked")]
    TargetRevoked(VendorKey),
    /// A rotation names a key that rotated away itself (that could make a loop).
    #[error("cannot rotate to {0}: it was rotated to another key itself")]
    TargetRotated(VendorKey),
    /// The rotation chain is too long.
    #[error("rotation chain longer than {MAX_CHAIN} keys")]
    ChainTooLong,
}

/// A stored key statement that does not verify (the store is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored {what} of {key} does not verify")]
pub struct StoredStatementError {
    /// The key it is stored under.
    pub key: VendorKey,
    /// `rotation` or `revocation`.
    pub what: &'static str,
}

/// Rotations and revocations in force.
#[derive(Debug, Default)]
pub struct KeyBook {
    rotations: HashMap<VendorKey, (VendorKey, SignedKeyStatement)>,
    /// Revoked keys, with the key's own statement (`None`: revoked by the operator).
    revoked: HashMap<VendorKey, Option<SignedKeyStatement>>,
    /// Operators' signed revocations, by the key they revoke.
    by_operators: HashMap<VendorKey, Vec<SignedOperatorStatement>>,
}

impl KeyBook {
    /// An empty book: every key acts for itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// The book the stored statements make: rotations (old key, its statement) and
    /// revocations (key, its own statement, or `None` for the operator's). Every statement
    /// is verified again: one that does not verify, or is about another key than it is
    /// stored under, is an error, since dropping a revocation would trust a revoked key.
    pub fn from_stored(
        rotations: Vec<(VendorKey, SignedKeyStatement)>,
        revocations: Vec<(VendorKey, Option<SignedKeyStatement>)>,
        by_operators: Vec<(VendorKey, SignedOperatorStatement)>,
    ) -> Result<Self, StoredStatementError> {
        let mut book = Self::new();
        let verified = |key: VendorKey, signed: &SignedKeyStatement, what| match signed.verify() {
            Ok(st) if st.key == key => Ok(st.into_inner()),
            _ => Err(StoredStatementError { key, what }),
        };
        for (key, signed) in rotations {
            let st = verified(key, &signed, "rotation")?;
            book.apply(&st, signed);
        }
        for (key, signed) in revocations {
            match signed {
                None => book.revoke_by_operator(key),
                Some(signed) => {
                    let st = verified(key, &signed, "revocation")?;
                    book.apply(&st, signed);
                }
            }
        }
        for (key, signed) in by_operators {
            match signed.verify() {
                Ok(st) if st.subject == key => book.apply_operator(key, signed),
                _ => {
                    return Err(StoredStatementError {
                        key,
                        what: "operator revocation",
                    });
                }
            }
        }
        Ok(book)
    }

    /// Whether nothing was ever rotated or revoked (the fast path of every renewal).
    pub fn is_empty(&self) -> bool {
        self.rotations.is_empty() && self.revoked.is_empty()
    }

    /// Whether `key` is revoked.
    pub fn is_revoked(&self, key: &VendorKey) -> bool {
        self.revoked.contains_key(key)
    }

    /// The key `key` rotated to, if it did.
    pub fn successor(&self, key: &VendorKey) -> Option<VendorKey> {
        self.rotations.get(key).map(|(k, _)| *k)
    }

    /// The key that acts for `key` now: the end of its rotation chain (`key` itself if it
    /// never rotated).
    pub fn current(&self, key: &VendorKey) -> VendorKey {
        let mut k = *key;
        for _ in 0..MAX_CHAIN {
            match self.rotations.get(&k) {
                Some((next, _)) => k = *next,
                None => break,
            }
        }
        k
    }

    /// `Ok` if `key` may register, renew or cancel on its own behalf: neither revoked nor
    /// rotated away.
    pub fn check_active(&self, key: &VendorKey) -> Result<(), KeyError> {
        if self.is_revoked(key) {
            return Err(KeyError::Revoked(*key));
        }
        if let Some(new) = self.successor(key) {
            return Err(KeyError::Rotated {
                old: *key,
                new: self.current(&new),
            });
        }
        Ok(())
    }

    /// Whether `auth` may renew or cancel what `owner` registered: `auth` is the key acting
    /// for `owner` now and is not revoked.
    pub fn may_act_for(&self, owner: &VendorKey, auth: &VendorKey) -> bool {
        if self.is_empty() {
            return owner == auth;
        }
        !self.is_revoked(auth) && self.current(owner) == *auth
    }

    /// Checks that `statement` (verified, and made by the key it is about; `signed` is
    /// false for the operator's revocation, which has no statement) can be applied.
    /// `Ok(false)` means it is already in force (the same revocation again). A key's own
    /// revocation after the operator's is applied: it adds the statement clients can learn.
    pub fn admit(&self, statement: &KeyStatement, signed: bool) -> Result<bool, KeyError> {
        let key = &statement.key;
        match statement.action {
            KeyAction::Revoke => Ok(match self.revoked.get(key) {
                None => true,
                Some(None) => signed,
                Some(Some(_)) => false,
            }),
            KeyAction::RotateTo(new) => {
                self.check_active(key)?;
                if self.is_revoked(&new) {
                    return Err(KeyError::TargetRevoked(new));
                }
                if self.successor(&new).is_some() {
                    return Err(KeyError::TargetRotated(new));
                }
                if self.chain_len_into(key) + 1 >= MAX_CHAIN {
                    return Err(KeyError::ChainTooLong);
                }
                Ok(true)
            }
        }
    }

    /// Length of the longest chain of rotations that ends at `key`.
    fn chain_len_into(&self, key: &VendorKey) -> usize {
        let mut best = 0;
        let mut queue = VecDeque::from([(*key, 0usize)]);
        let mut seen = HashSet::new();
        while let Some((k, d)) = queue.pop_front() {
            best = best.max(d);
            if !seen.insert(k) || d > MAX_CHAIN {
                continue;
            }
            for (old, (new, _)) in &self.rotations {
                if *new == k {
                    queue.push_back((*old, d + 1));
                }
            }
        }
        best
    }

    /// Records a statement (after [`KeyBook::admit`] and the durable commit).
    pub fn apply(&mut self, statement: &KeyStatement, signed: SignedKeyStatement) {
        match statement.action {
            KeyAction::RotateTo(new) => {
                self.rotations.insert(statement.key, (new, signed));
            }
            KeyAction::Revoke => {
                let slot = self.revoked.entry(statement.key).or_insert(None);
                if slot.is_none() {
                    *slot = Some(signed);
                }
            }
        }
    }

    /// Records a revocation by the operator (no statement a client could verify).
    pub fn revoke_by_operator(&mut self, key: VendorKey) {
        self.revoked.entry(key).or_insert(None);
    }

    /// Records an operator's signed revocation of `subject` (verified, committed).
    pub fn apply_operator(&mut self, subject: VendorKey, signed: SignedOperatorStatement) {
        self.revoked.entry(subject).or_insert(None);
        let held = self.by_operators.entry(subject).or_default();
        if !held.contains(&signed) {
            held.push(signed);
        }
    }

    /// The operators' statements about `keys`.
    pub fn operator_statements_for(&self, keys: &[VendorKey]) -> Vec<SignedOperatorStatement> {
        keys.iter()
            .filter_map(|k| self.by_operators.get(k))
            .flatten()
            .cloned()
            .collect()
    }

    /// The statements about `keys` and about every key their rotations lead to: what a
    /// client needs to follow them itself.
    pub fn statements_for(&self, keys: &[VendorKey]) -> Vec<SignedKeyStatement> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for key in keys {
            let mut k = *key;
            for _ in 0..MAX_CHAIN {
                if !seen.insert(k) {
                    break;
                }
                if let Some(Some(s)) = self.revoked.get(&k) {
                    out.push(s.clone());
                }
                match self.rotations.get(&k) {
                    Some((next, s)) => {
                        out.push(s.clone());
                        k = *next;
                    }
                    None => break,
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::SigningKey;

    fn k(seed: u8) -> (SigningKey, VendorKey) {
        let s = SigningKey::from_bytes(&[seed; 32]);
        let v = VendorKey::of(&s);
        (s, v)
    }

    fn apply(book: &mut KeyBook, st: KeyStatement, key: &SigningKey) -> Result<bool, KeyError> {
        let fresh = book.admit(&st, true)?;
        book.apply(&st, SignedKeyStatement::sign(&st, key));
        Ok(fresh)
    }

    #[test]
    fn chains_follow_and_never_loop() {
        let ((a, va), (b, vb), (_, vc)) = (k(1), k(2), k(3));
        let mut book = KeyBook::new();
        assert!(book.may_act_for(&va, &va));
        apply(&mut book, KeyStatement::rotate(va, vb, 1), &a).unwrap();
        assert_eq!(book.current(&va), vb);
        assert!(book.may_act_for(&va, &vb));
        assert!(!book.may_act_for(&va, &va));
        assert!(matches!(
            book.check_active(&va),
            Err(KeyError::Rotated { .. })
        ));
        // A rotated key cannot rotate again, and nobody can rotate back into it.
        assert!(book.admit(&KeyStatement::rotate(va, vc, 2), true).is_err());
        assert_eq!(
            book.admit(&KeyStatement::rotate(vb, va, 2), true),
            Err(KeyError::TargetRotated(va))
        );
        apply(&mut book, KeyStatement::rotate(vb, vc, 3), &b).unwrap();
        assert_eq!(book.current(&va), vc);
        assert_eq!(book.statements_for(&[va]).len(), 2);
    }

    #[test]
    fn revocation_stops_a_key_but_not_its_earlier_rotation() {
        let ((a, va), (b, vb), (_, vc)) = (k(1), k(2), k(3));
        let mut book = KeyBook::new();
        apply(&mut book, KeyStatement::rotate(va, vb, 1), &a).unwrap();
        assert!(apply(&mut book, KeyStatement::revoke(va, 2), &a).unwrap());
        assert!(!book.admit(&KeyStatement::revoke(va, 3), true).unwrap());
        assert!(book.may_act_for(&va, &vb));
        assert_eq!(book.statements_for(&[va]).len(), 2);
        apply(&mut book, KeyStatement::revoke(vb, 4), &b).unwrap();
        assert!(!book.may_act_for(&va, &vb));
        assert_eq!(book.check_active(&vb), Err(KeyError::Revoked(vb)));
        assert_eq!(
            book.admit(&KeyStatement::rotate(vc, vb, 5), true),
            Err(KeyError::TargetRevoked(vb))
        );
        assert_eq!(book.statements_for(&[va]).len(), 3);
    }
}
