//! The client's trust store: the vendor keys whose signed proxies it is willing to run, and
//! the key statements (rotations, revocations) it has learned about them.
//!
//! A proxy signed by a key that is not trusted, or that is revoked, is refused before a
//! byte of it is compiled. A key is trusted when it is listed, or when a listed key rotated
//! to it (directly or through a chain of rotations), each rotation proven by a statement
//! signed by the key it retires. A revocation, signed by the revoked key itself, makes the
//! key untrusted even if it is listed, and voids its statements: rotations out of a revoked
//! key are not followed (whoever revoked it could not tell its own rotations from a thief's),
//! so trust that reached a key only through it is lost. Statements are verified when
//! learned and again when loaded; the registry that serves them is not trusted for them.
//!
//! A client may also follow operator keys (room `operators`): a vendor key such an operator
//! revoked, by a statement the operator signed, is refused the same way.
//!
//! On disk the store is a text file of `ed25519:<64 hex digits>` lines (trusted keys),
//! `statement:<hex>` lines (learned statements), `operator:ed25519:<hex>` lines (followed
//! operator keys) and `operator-statement:<hex>.<hex>` lines (learned operator
//! statements); blank lines and lines starting with `#` are ignored.

mod operators;
#[cfg(test)]
mod root_tests;
mod roots;

pub use operators::OperatorLearnError;

use courier_protocol::limits::MAX_CHAIN;
use courier_protocol::{
    KeyAction, OperatorStatement, SignedKeyStatement, SignedOperatorStatement, StatementError,
    VendorKey,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Trusted vendor keys and learned key statements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    /// The keys listed as trusted.
    keys: BTreeSet<VendorKey>,
    /// Learned, verified statements by (key, is a revocation).
    statements: BTreeMap<(VendorKey, bool), SignedKeyStatement>,
    /// Rotations learned: old key -> new key.
    successor: BTreeMap<VendorKey, VendorKey>,
    /// Keys whose revocation was learned.
    revoked: BTreeSet<VendorKey>,
    /// Listed keys and every key their rotation chains lead to (not past a revoked key).
    effective: BTreeSet<VendorKey>,
    /// Operator keys followed.
    operators: BTreeSet<VendorKey>,
    /// Learned, verified operator statements by (subject, operator); only those of
    /// followed operators count.
    by_operators: BTreeMap<(VendorKey, VendorKey), (OperatorStatement, SignedOperatorStatement)>,
    /// Trusted vendor roots and what was learned about them.
    roots: roots::Roots,
}

/// Why a trust store could not be read or written, or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read or written.
    #[error("trust store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A line is not an `ed25519:<hex>` key.
    #[error("trust store line {line}: expected ed25519:<64 hex digits>, got {text:?}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The offending text (shortened).
        text: String,
    },
    /// The key is not a usable ed25519 key (invalid point or small order).
    #[error("trust store line {line}: {key} is not a usable ed25519 key")]
    BadKey {
        /// 1-based line number (0 when added programmatically).
        line: usize,
        /// The key.
        key: VendorKey,
    },
    /// A stored key statement does not decode or verify.
    #[error("trust store line {line}: key statement refused: {reason}")]
    Statement {
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
}

/// Why a key statement was not learned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LearnError {
    /// The statement does not verify.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// The key already rotated to another key: it signed two rotations (the first one
    /// learned stays in force).
    #[error("{key} already rotated to {existing}, refusing a second rotation to {offered}")]
    Conflict {
        /// The key.
        key: VendorKey,
        /// The rotation in force.
        existing: VendorKey,
        /// The refused one.
        offered: VendorKey,
    },
    /// Following the rotation would lead back to the key (a loop).
    #[error("rotation of {0} would make a loop")]
    Loop(VendorKey),
    /// A root statement or delegation does not verify, or does not follow what is known
    /// (a rollback, too few signatures, a widening delegation).
    #[error("root: {0}")]
    Root(String),
}

/// Why the trust store refuses a vendor key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustRefusal {
    /// The key is not trusted (nor reached by a rotation from a trusted key).
    #[error("vendor {0} is not trusted")]
    Untrusted(VendorKey),
    /// The key's own revocation was learned.
    #[error("vendor key {0} is revoked")]
    Revoked(VendorKey),
    /// An operator this client follows revoked the key.
    #[error("vendor key {key} is revoked by operator {operator}: {reason}")]
    RevokedByOperator {
        /// The vendor key.
        key: VendorKey,
        /// The operator who revoked it.
        operator: VendorKey,
        /// The operator's reason.
        reason: String,
    },
    /// A trusted root knows the key but its delegation does not let it sign for the name
    /// now (expired, revoked, not covering it, or widening its parent's grant).
    #[error("vendor key {key} refused by {root}: {reason}")]
    Delegation {
        /// The online key.
        key: VendorKey,
        /// The root whose delegation it is.
        root: courier_protocol::RootId,
        /// Why (boxed: it names up to two keys).
        reason: Box<courier_protocol::AuthorityError>,
    },
}

impl TrustStore {
    /// An empty store: nothing is trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store trusting exactly `keys`.
    pub fn from_keys(keys: impl IntoIterator<Item = VendorKey>) -> Self {
        let mut store = Self {
            keys: keys.into_iter().collect(),
            ..Self::default()
        };
        store.recompute();
        store
    }

    /// Parses the text form: one `ed25519:<hex>` key per line, `#` comments, blank lines.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let mut keys = BTreeSet::new();
        let mut statements = Vec::new();
        let mut operators = BTreeSet::new();
        let mut operator_statements = Vec::new();
        let mut root_lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Allow a trailing comment after the key.
            let token = line.split_whitespace().next().unwrap_or(line);
            if let Some(hex) = token.strip_prefix(operators::STATEMENT_PREFIX) {
                let statement =
                    operators::parse_statement(hex).map_err(|reason| TrustError::Statement {
                        line: i + 1,
                        reason,
                    })?;
                operator_statements.push(statement);
                continue;
            }
            if let Some(root_line) = roots::parse_line(token) {
                let root_line = root_line.map_err(|reason| TrustError::Statement {
                    line: i + 1,
                    reason,
                })?;
                root_lines.push((i + 1, root_line));
                continue;
            }
            let (token, set) = match token.strip_prefix(operators::OPERATOR_PREFIX) {
                Some(key) => (key, &mut operators),
                None => (token, &mut keys),
            };
            if let Some(hex) = token.strip_prefix("statement:") {
                let bad = |reason: String| TrustError::Statement {
                    line: i + 1,
                    reason,
                };
                let signed = SignedKeyStatement::from_hex(hex).map_err(|e| bad(e.to_string()))?;
                signed.verify().map_err(|e| bad(e.to_string()))?;
                statements.push((i + 1, signed));
                continue;
            }
            if !token.starts_with("ed25519:") {
                return Err(TrustError::Parse {
                    line: i + 1,
                    text: token.chars().take(80).collect(),
                });
            }
            let key: VendorKey = token.parse().map_err(|_| TrustError::Parse {
                line: i + 1,
                text: token.chars().take(80).collect(),
            })?;
            if key.verifying_key().is_err() {
                return Err(TrustError::BadKey { line: i + 1, key });
            }
            set.insert(key);
        }
        let mut store = Self::from_keys(keys);
        store.operators = operators;
        for (statement, signed) in operator_statements {
            store.keep_operator_statement(statement, signed);
        }
        for (line, signed) in statements {
            store.learn(&signed).map_err(|e| TrustError::Statement {
                line,
                reason: e.to_string(),
            })?;
        }
        store
            .load_root_lines(root_lines)
            .map_err(|(line, reason)| TrustError::Statement { line, reason })?;
        Ok(store)
    }

    /// Loads a store from a file in the text form.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Loads a store from `path`, or an empty store if the file does not exist.
    pub fn load_or_empty(path: &Path) -> Result<Self, TrustError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            _ => Self::load(path),
        }
    }

    /// The text form: one key per line, sorted, then the learned statements.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# courier trusted vendor keys\n");
        for key in &self.keys {
            out.push_str(&key.to_string());
            out.push('\n');
        }
        if !self.statements.is_empty() {
            out.push_str("# learned key statements (rotations, revocations), verified on load\n");
        }
        // Rotations in chain order is not needed: loading learns them in any order.
        for s in self.statements.values() {
            out.push_str("statement:");
            out.push_str(&s.to_hex());
            out.push('\n');
        }
        if !self.operators.is_empty() {
            out.push_str("# followed operator keys\n");
        }
        for key in &self.operators {
            out.push_str(&format!("{}{key}\n", operators::OPERATOR_PREFIX));
        }
        if !self.by_operators.is_empty() {
            out.push_str("# learned operator statements, verified on load\n");
        }
        for (_, signed) in self.by_operators.values() {
            out.push_str(&operators::to_text(signed));
            out.push('\n');
        }
        self.roots_text(&mut out);
        out
    }

    /// Writes the store to `path` atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        crate::state::write_atomic(path, self.to_text().as_bytes()).map_err(|source| {
            TrustError::Io {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Learns a key statement after verifying it: a rotation extends the trust of the old
    /// key to the new one, a revocation makes the key untrusted. Returns whether it was new.
    /// Statements about keys this store does not trust are kept too (a key trusted later
    /// is then covered at once).
    pub fn learn(&mut self, signed: &SignedKeyStatement) -> Result<bool, LearnError> {
        let statement = signed.verify()?.into_inner();
        let key = statement.key;
        match statement.action {
            KeyAction::Revoke => {
                if !self.revoked.insert(key) {
                    return Ok(false);
                }
                self.statements.insert((key, true), signed.clone());
            }
            KeyAction::RotateTo(new) => {
                if let Some(existing) = self.successor.get(&key) {
                    if *existing == new {
                        return Ok(false);
                    }
                    return Err(LearnError::Conflict {
                        key,
                        existing: *existing,
                        offered: new,
                    });
                }
                if self.chain(&new).any(|k| k == key) {
                    return Err(LearnError::Loop(key));
                }
                self.successor.insert(key, new);
                self.statements.insert((key, false), signed.clone());
            }
        }
        self.recompute();
        Ok(true)
    }

    /// `key` and the keys its rotations lead to, in order (bounded by [`MAX_CHAIN`]).
    fn chain(&self, key: &VendorKey) -> impl Iterator<Item = VendorKey> + '_ {
        let mut next = Some(*key);
        std::iter::from_fn(move || {
            let k = next?;
            next = self.successor.get(&k).copied();
            Some(k)
        })
        .take(MAX_CHAIN)
    }

    /// The key acting for `key` now: the end of its learned rotation chain. For an online
    /// key a trusted root delegated to, the root itself (its id's bytes stand for it), so
    /// that what is remembered per vendor survives the root replacing its online key.
    pub fn current(&self, key: &VendorKey) -> VendorKey {
        if !self.successor.contains_key(key)
            && let Some(root) = self.root_of(key)
        {
            return VendorKey(root.0);
        }
        self.chain(key).last().unwrap_or(*key)
    }

    fn recompute(&mut self) {
        let mut effective = BTreeSet::new();
        for key in &self.keys {
            // Follow rotations, but none out of a revoked key.
            for k in self.chain(key) {
                effective.insert(k);
                if self.revoked.contains(&k) || self.revoked_by_operator(&k) {
                    break;
                }
            }
        }
        self.effective = effective;
    }

    /// Whether `key`'s revocation was learned.
    pub fn is_revoked(&self, key: &VendorKey) -> bool {
        self.revoked.contains(key)
    }

    /// The learned statements.
    pub fn statements(&self) -> impl Iterator<Item = &SignedKeyStatement> {
        self.statements.values()
    }

    /// Learns every statement of `other` (e.g. loaded from the client's state), keeping
    /// this store's trusted keys. Returns how many were new.
    pub fn absorb(&mut self, other: &TrustStore) -> Result<usize, LearnError> {
        let mut new = 0;
        for s in other.statements() {
            new += usize::from(self.learn(s)?);
        }
        for (statement, signed) in other.by_operators.values() {
            new += usize::from(self.keep_operator_statement(statement.clone(), signed.clone()));
        }
        new += self.absorb_roots(other);
        Ok(new)
    }

    /// The same statements, without trusted keys (what the client persists as learned).
    pub fn learned_only(&self) -> TrustStore {
        let mut out = TrustStore::new();
        out.statements = self.statements.clone();
        out.successor = self.successor.clone();
        out.revoked = self.revoked.clone();
        out.by_operators = self.by_operators.clone();
        out.roots = self.roots_learned_only();
        out
    }

    /// Whether statements about `key` matter to this store: it is listed or reached by
    /// rotation from a listed key.
    pub fn follows(&self, key: &VendorKey) -> bool {
        self.effective.contains(key)
    }

    /// The keys whose statements a client should ask for: the trusted keys and every key
    /// their rotations lead to.
    pub fn followed_keys(&self) -> Vec<VendorKey> {
        self.effective.iter().copied().collect()
    }

    /// Trusts `key`; false if it was already trusted. Unusable keys are refused.
    pub fn add(&mut self, key: VendorKey) -> Result<bool, TrustError> {
        if key.verifying_key().is_err() {
            return Err(TrustError::BadKey { line: 0, key });
        }
        let added = self.keys.insert(key);
        self.recompute();
        Ok(added)
    }

    /// Stops trusting `key` (a listed key); false if it was not listed.
    pub fn remove(&mut self, key: &VendorKey) -> bool {
        let removed = self.keys.remove(key);
        self.recompute();
        removed
    }

    /// Whether `key` is trusted: listed or reached by rotation from a listed key, and not
    /// revoked.
    pub fn is_trusted(&self, key: &VendorKey) -> bool {
        self.check(key).is_ok()
    }

    /// `Ok` if `key` is trusted; otherwise whether it is unknown or revoked.
    pub fn check(&self, key: &VendorKey) -> Result<(), TrustRefusal> {
        if self.revoked.contains(key) {
            Err(TrustRefusal::Revoked(*key))
        } else if let Some(s) = self.operator_revocation(key) {
            Err(TrustRefusal::RevokedByOperator {
                key: *key,
                operator: s.operator,
                reason: s.reason.clone(),
            })
        } else if self.effective.contains(key) {
            Ok(())
        } else {
            Err(TrustRefusal::Untrusted(*key))
        }
    }

    /// `Ok` if `key` may sign a manifest for the service `name` at `now_ms`: it is trusted
    /// (listed, or reached by rotation), or a trusted root's unexpired, unrevoked
    /// delegation chain reaches it and covers the name.
    pub fn check_for(&self, key: &VendorKey, name: &str, now_ms: u64) -> Result<(), TrustRefusal> {
        match self.check(key) {
            Err(TrustRefusal::Untrusted(_)) => match self.root_check(key, name, now_ms)? {
                Some(_) => Ok(()),
                None => Err(TrustRefusal::Untrusted(*key)),
            },
            other => other,
        }
    }

    /// The listed trusted keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &VendorKey> {
        self.keys.iter()
    }

    /// Number of listed trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing is trusted (no key, no root).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.roots().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::SigningKey;

    fn key(seed: u8) -> VendorKey {
        VendorKey::of(&SigningKey::from_bytes(&[seed; 32]))
    }

    #[test]
    fn parse_add_remove_round_trip() {
        let text = format!("# comment\n\n{}  # acme\n{}\n", key(1), key(2));
        let mut store = TrustStore::parse(&text).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.is_trusted(&key(1)));
        assert!(store.check(&key(3)).is_err());
        assert!(store.add(key(3)).unwrap());
        assert!(!store.add(key(3)).unwrap());
        assert!(store.remove(&key(1)));
        assert!(!store.remove(&key(1)));
        let again = TrustStore::parse(&store.to_text()).unwrap();
        assert_eq!(again, store);
    }

    #[test]
    fn bad_lines_and_weak_keys_refused() {
        assert!(matches!(
            TrustStore::parse("ed25519:zz"),
            Err(TrustError::Parse { line: 1, .. })
        ));
        assert!(matches!(
            TrustStore::parse(&format!("\n{}", hex::encode([1u8; 32]))),
            Err(TrustError::Parse { line: 2, .. })
        ));
        // The identity point has small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let line = format!("ed25519:{}", hex::encode(weak));
        assert!(matches!(
            TrustStore::parse(&line),
            Err(TrustError::BadKey { .. })
        ));
        assert!(TrustStore::new().add(VendorKey(weak)).is_err());
    }

    #[test]
    fn statements_extend_and_revoke_trust_and_survive_the_text_form() {
        use courier_protocol::KeyStatement;
        let k = |seed: u8| SigningKey::from_bytes(&[seed; 32]);
        let (a, b, c) = (k(1), k(2), k(3));
        let (va, vb, vc) = (key(1), key(2), key(3));
        let mut store = TrustStore::from_keys([va]);
        assert!(!store.is_trusted(&vb));
        // Signed by the new key instead of the old one: refused, nothing learned.
        let forged = SignedKeyStatement::sign(&KeyStatement::rotate(va, vb, 1), &b);
        assert!(store.learn(&forged).is_err());
        assert!(!store.is_trusted(&vb));
        let ab = SignedKeyStatement::sign(&KeyStatement::rotate(va, vb, 1), &a);
        assert!(store.learn(&ab).unwrap());
        assert!(!store.learn(&ab).unwrap());
        assert!(store.is_trusted(&vb));
        assert_eq!(store.current(&va), vb);
        let ac = SignedKeyStatement::sign(&KeyStatement::rotate(va, vc, 2), &a);
        assert!(matches!(store.learn(&ac), Err(LearnError::Conflict { .. })));
        let ba = SignedKeyStatement::sign(&KeyStatement::rotate(vb, va, 2), &b);
        assert_eq!(store.learn(&ba), Err(LearnError::Loop(vb)));
        let rb = SignedKeyStatement::sign(&KeyStatement::revoke(vb, 3), &b);
        assert!(store.learn(&rb).unwrap());
        assert_eq!(store.check(&vb), Err(TrustRefusal::Revoked(vb)));
        assert!(store.is_trusted(&va));
        // A revoked key's rotations are void: B rotating to C gives C nothing.
        let bc = SignedKeyStatement::sign(&KeyStatement::rotate(vb, vc, 4), &b);
        assert!(store.learn(&bc).unwrap());
        assert_eq!(store.check(&vc), Err(TrustRefusal::Untrusted(vc)));
        let again = TrustStore::parse(&store.to_text()).unwrap();
        assert_eq!(again, store);
        let mut fresh = TrustStore::from_keys([va]);
        assert_eq!(fresh.absorb(&store.learned_only()).unwrap(), 3);
        assert_eq!(fresh, store);
        // Revoking the listed key voids the trust that reached B through it.
        let ra = SignedKeyStatement::sign(&KeyStatement::revoke(va, 5), &a);
        let mut only_ab = TrustStore::from_keys([va]);
        only_ab.learn(&ab).unwrap();
        assert!(only_ab.is_trusted(&vb));
        only_ab.learn(&ra).unwrap();
        assert!(!only_ab.is_trusted(&vb) && !only_ab.is_trusted(&va));
        // A damaged statement line is a clear error, not a silent reset.
        let text = store.to_text().replace("statement:", "statement:00");
        assert!(matches!(
            TrustStore::parse(&text),
            Err(TrustError::Statement { .. })
        ));
        let _ = c;
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/trust.txt");
        assert!(TrustStore::load_or_empty(&path).unwrap().is_empty());
        let store = TrustStore::from_keys([key(4), key(5)]);
        store.save(&path).unwrap();
        assert_eq!(TrustStore::load(&path).unwrap(), store);
    }
}
