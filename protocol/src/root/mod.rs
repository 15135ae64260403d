//! Vendor roots (TUF's root role): n ed25519 root keys with a threshold m, and the root
//! statements they sign, each a whole new version of what the root says.
//!
//! A root is named by its [`RootId`], the hash of its first keys, and keeps that name when
//! its keys change. A [`RootStatement`] is the root's complete word at one version: its
//! keys and threshold, the delegations of service names to online keys (each with an
//! expiry), and the online keys it revoked. A newer version replaces an older one as a
//! whole, so revoking or replacing a delegation is a new version without it; an older
//! version never replaces a newer one (rollback). Version `v` is accepted only when signed
//! by at least m distinct keys of the version it follows and m' of its own keys (as TUF
//! does for root rotation). Online keys may delegate further (see [`delegation`]) within
//! what they were given. Every check here is a pure function; times are the caller's.

mod authority;
mod delegation;
mod names;

pub use authority::{Authority, AuthorityError};
pub use delegation::{DelegationError, DelegationStatement, SignedDelegation};
pub use names::{MAX_PATTERN_LEN, NamePattern, NamePatternError};

use crate::codec;
use crate::signing::{ROOT_STATEMENT_DOMAIN, SigningKey, VendorKey, Verified, VerifyError, sign};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Most keys a root may have.
pub const MAX_ROOT_KEYS: usize = 16;
/// Most delegations (and most revoked keys) one root statement may list.
pub const MAX_DELEGATIONS: usize = 64;
/// Most name patterns one delegation may grant.
pub const MAX_PATTERNS: usize = 32;
/// Most signatures a signed root statement may carry.
pub const MAX_ROOT_SIGNATURES: usize = 2 * MAX_ROOT_KEYS;

/// The name of a vendor root: the SHA-256 of its first [`RootKeys`], canonically encoded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RootId(pub [u8; 32]);

impl fmt::Display for RootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "root:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for RootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootId({}…)", &hex::encode(self.0)[..12])
    }
}

impl FromStr for RootId {
    type Err = crate::DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let h = s.strip_prefix("root:").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).map_err(|_| crate::DigestParseError(s.to_string()))?;
        Ok(Self(out))
    }
}

/// A root's keys and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RootKeys {
    /// The root keys, sorted and distinct.
    pub keys: Vec<VendorKey>,
    /// How many distinct keys must sign (1..=keys).
    pub threshold: u8,
}

impl RootKeys {
    /// `keys` (sorted, duplicates dropped) with `threshold`, checked.
    pub fn new(
        keys: impl IntoIterator<Item = VendorKey>,
        threshold: u8,
    ) -> Result<Self, RootError> {
        let keys: BTreeSet<VendorKey> = keys.into_iter().collect();
        let out = Self {
            keys: keys.into_iter().collect(),
            threshold,
        };
        out.check()?;
        Ok(out)
    }

    /// Checks the rules: 1..=[`MAX_ROOT_KEYS`] usable keys, sorted and distinct, and a
    /// threshold between 1 and their number.
    pub fn check(&self) -> Result<(), RootError> {
        let n = self.keys.len();
        if n == 0 || n > MAX_ROOT_KEYS || !self.keys.windows(2).all(|w| w[0] < w[1]) {
            return Err(RootError::Keys(n));
        }
        if self.threshold == 0 || usize::from(self.threshold) > n {
            return Err(RootError::Threshold {
                threshold: self.threshold,
                keys: n,
            });
        }
        for key in &self.keys {
            key.verifying_key()
                .map_err(|e| RootError::BadKey(*key, e))?;
        }
        Ok(())
    }

    /// The id of a root whose first keys these are.
    pub fn id(&self) -> RootId {
        RootId(Sha256::digest(codec::encode(self)).into())
    }

    /// The text form: `<threshold>:<key>,<key>,…` with keys as `ed25519:<hex>`.
    pub fn to_text(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        format!("{}:{}", self.threshold, keys.join(","))
    }

    /// Parses [`RootKeys::to_text`], checked.
    pub fn from_text(text: &str) -> Result<Self, RootError> {
        let bad = || RootError::Text(text.chars().take(80).collect());
        let (threshold, keys) = text.trim().split_once(':').ok_or_else(bad)?;
        let threshold: u8 = threshold.parse().map_err(|_| bad())?;
        let keys = keys
            .split(',')
            .map(|k| k.parse::<VendorKey>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys, threshold)
    }

    /// How many distinct keys of this set made a valid signature over `bytes`.
    fn count_signers(&self, bytes: &[u8], signatures: &[RootSignature]) -> usize {
        let mut signed = BTreeSet::new();
        for s in signatures {
            if self.keys.contains(&s.key)
                && !signed.contains(&s.key)
                && s.key
                    .verify(ROOT_STATEMENT_DOMAIN, bytes, &s.signature)
                    .is_ok()
            {
                signed.insert(s.key);
            }
        }
        signed.len()
    }
}

/// A delegation of service names to an online key, until an expiry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Delegation {
    /// The online key that may sign manifests for the names.
    pub key: VendorKey,
    /// The names it may sign for.
    pub names: Vec<NamePattern>,
    /// Not valid after, milliseconds since the Unix epoch.
    pub not_after_ms: u64,
}

impl Delegation {
    /// Checks the shape: a usable key, 1..=[`MAX_PATTERNS`] valid patterns.
    pub fn check(&self) -> Result<(), RootError> {
        self.key
            .verifying_key()
            .map_err(|e| RootError::BadKey(self.key, e))?;
        if self.names.is_empty() || self.names.len() > MAX_PATTERNS {
            return Err(RootError::Patterns(self.names.len()));
        }
        for p in &self.names {
            p.check()?;
        }
        Ok(())
    }

    /// Whether one of the delegation's patterns covers `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|p| p.covers(name))
    }

    /// Whether every pattern of this delegation lies within one of `parent`'s, and it
    /// expires no later.
    pub fn within(&self, parent: &Delegation) -> bool {
        self.not_after_ms <= parent.not_after_ms
            && self
                .names
                .iter()
                .all(|p| parent.names.iter().any(|q| p.within(q)))
    }
}

/// What a root says at one version: its keys, its delegations, the keys it revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootStatement {
    /// The root this is about.
    pub root: RootId,
    /// The version: each statement of a root has a higher one than the one it follows.
    pub version: u64,
    /// The root's keys from this version on (a change is a rotation).
    pub keys: RootKeys,
    /// Service names delegated to online keys.
    pub delegations: Vec<Delegation>,
    /// Online keys revoked: nothing they signed or delegated counts under this root.
    pub revoked: Vec<VendorKey>,
    /// When it was made, milliseconds since the Unix epoch (informative).
    pub issued_at_ms: u64,
}

impl RootStatement {
    /// The state of a root before any statement: its first keys, version 0, nothing
    /// delegated. Never signed; version 1 is checked against it.
    pub fn genesis(keys: RootKeys) -> Self {
        Self {
            root: keys.id(),
            version: 0,
            keys,
            delegations: Vec::new(),
            revoked: Vec::new(),
            issued_at_ms: 0,
        }
    }

    /// The next version: the same keys, delegations and revocations, version + 1.
    pub fn next(&self, issued_at_ms: u64) -> Self {
        Self {
            version: self.version + 1,
            issued_at_ms,
            ..self.clone()
        }
    }

    /// The delegation to `key`, if this version has one and has not revoked the key.
    pub fn delegation(&self, key: &VendorKey) -> Option<&Delegation> {
        if self.revoked.contains(key) {
            return None;
        }
        self.delegations.iter().find(|d| d.key == *key)
    }

    /// Shape rules: keys, delegations (one per key, none to a root key), bounds.
    pub fn check(&self) -> Result<(), RootError> {
        self.keys.check()?;
        if self.delegations.len() > MAX_DELEGATIONS || self.revoked.len() > MAX_DELEGATIONS {
            return Err(RootError::Delegations(self.delegations.len()));
        }
        let mut seen = BTreeSet::new();
        for d in &self.delegations {
            d.check()?;
            if !seen.insert(d.key) || self.keys.keys.contains(&d.key) {
                return Err(RootError::DuplicateDelegation(d.key));
            }
        }
        Ok(())
    }
}

/// One root key's signature over a root statement.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RootSignature {
    /// The signing root key.
    pub key: VendorKey,
    /// ed25519 signature over `ROOT_STATEMENT_DOMAIN || bytes`.
    #[serde(with = "crate::signing::sig_serde")]
    pub signature: [u8; 64],
}

impl fmt::Debug for RootSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootSignature({:?})", self.key)
    }
}

/// A root statement as its canonical bytes plus the root keys' signatures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedRootStatement {
    /// Canonical postcard encoding of a [`RootStatement`].
    pub bytes: Vec<u8>,
    /// Signatures by root keys (of this version and of the one it follows).
    pub signatures: Vec<RootSignature>,
}

/// Why a root statement (or root keys) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    /// The bytes do not decode or are not canonical.
    #[error("root statement: {0}")]
    Verify(#[from] VerifyError),
    /// No keys, too many, or not sorted and distinct.
    #[error("a root needs 1..={MAX_ROOT_KEYS} distinct sorted keys, got {0}")]
    Keys(usize),
    /// The threshold is 0 or above the number of keys.
    #[error("threshold {threshold} of {keys} root keys")]
    Threshold {
        /// The threshold.
        threshold: u8,
        /// The number of keys.
        keys: usize,
    },
    /// A key is not a usable ed25519 key.
    #[error("{0} is not a usable key: {1}")]
    BadKey(VendorKey, VerifyError),
    /// A delegation grants no pattern or too many.
    #[error("a delegation needs 1..={MAX_PATTERNS} name patterns, got {0}")]
    Patterns(usize),
    /// A name pattern is malformed.
    #[error(transparent)]
    Pattern(#[from] NamePatternError),
    /// Too many delegations or revocations.
    #[error("too many delegations or revocations ({0})")]
    Delegations(usize),
    /// Two delegations to one key, or a delegation to a root key.
    #[error("{0} is delegated to twice, or is a root key")]
    DuplicateDelegation(VendorKey),
    /// Too many signatures attached.
    #[error("too many signatures ({0})")]
    Signatures(usize),
    /// The statement is about another root.
    #[error("statement is about {offered}, expected {expected}")]
    OtherRoot {
        /// The root expected.
        expected: RootId,
        /// The root named.
        offered: RootId,
    },
    /// The version is not above the one known: an old statement cannot replace a newer one.
    #[error("root version {offered} does not follow version {known} (rollback)")]
    Rollback {
        /// The version known.
        known: u64,
        /// The version offered.
        offered: u64,
    },
    /// Too few distinct keys of the previous version signed.
    #[error("signed by {signed} of the previous root keys, {threshold} needed")]
    PreviousThreshold {
        /// Distinct valid signers.
        signed: usize,
        /// Threshold needed.
        threshold: u8,
    },
    /// Too few distinct keys of the new version signed.
    #[error("signed by {signed} of its own root keys, {threshold} needed")]
    OwnThreshold {
        /// Distinct valid signers.
        signed: usize,
        /// Threshold needed.
        threshold: u8,
    },
    /// A first statement (version 1) whose keys are not the root's first keys.
    #[error("version 1 must keep the keys the root is named by")]
    FirstKeys,
    /// A text form does not parse.
    #[error("expected <threshold>:ed25519:<hex>,…, got {0:?}")]
    Text(String),
}

impl SignedRootStatement {
    /// Encodes `statement` canonically, with no signatures yet.
    pub fn unsigned(statement: &RootStatement) -> Self {
        Self {
            bytes: codec::encode(statement),
            signatures: Vec::new(),
        }
    }

    /// Adds `key`'s signature (replacing an earlier one by the same key).
    pub fn add_signature(&mut self, key: &SigningKey) {
        let public = VendorKey::of(key);
        self.signatures.retain(|s| s.key != public);
        self.signatures.push(RootSignature {
            key: public,
            signature: sign(key, ROOT_STATEMENT_DOMAIN, &self.bytes),
        });
    }

    /// `statement` signed by each of `keys`.
    pub fn sign(statement: &RootStatement, keys: &[&SigningKey]) -> Self {
        let mut out = Self::unsigned(statement);
        for k in keys {
            out.add_signature(k);
        }
        out
    }

    /// Decodes the statement without checking it (for display and routing only).
    pub fn peek(&self) -> Result<RootStatement, codec::CodecError> {
        codec::decode(&self.bytes)
    }

    /// Decodes, checks canonical form and shape.
    fn decode_checked(&self) -> Result<RootStatement, RootError> {
        if self.signatures.len() > MAX_ROOT_SIGNATURES {
            return Err(RootError::Signatures(self.signatures.len()));
        }
        let statement: RootStatement = codec::decode(&self.bytes).map_err(VerifyError::from)?;
        if codec::encode(&statement) != self.bytes {
            return Err(VerifyError::NotCanonical.into());
        }
        statement.check()?;
        Ok(statement)
    }

    /// Verifies this statement as the successor of `previous` (a verified statement, or
    /// [`RootStatement::genesis`]): same root, a higher version, signed by at least the
    /// threshold of `previous`'s keys and of its own keys (distinct keys, strictly
    /// verified; duplicates and unknown keys do not count).
    pub fn verify_after(
        &self,
        previous: &RootStatement,
    ) -> Result<Verified<RootStatement>, RootError> {
        let statement = self.decode_checked()?;
        if statement.root != previous.root {
            return Err(RootError::OtherRoot {
                expected: previous.root,
                offered: statement.root,
            });
        }
        if statement.version <= previous.version {
            return Err(RootError::Rollback {
                known: previous.version,
                offered: statement.version,
            });
        }
        if previous.version == 0 && statement.keys != previous.keys {
            return Err(RootError::FirstKeys);
        }
        let signed = previous.keys.count_signers(&self.bytes, &self.signatures);
        if signed < usize::from(previous.keys.threshold) {
            return Err(RootError::PreviousThreshold {
                signed,
                threshold: previous.keys.threshold,
            });
        }
        let signed = statement.keys.count_signers(&self.bytes, &self.signatures);
        if signed < usize::from(statement.keys.threshold) {
            return Err(RootError::OwnThreshold {
                signed,
                threshold: statement.keys.threshold,
            });
        }
        Ok(Verified(statement))
    }

    /// Verifies a first statement (version 1) on its own: its keys name its root, and it
    /// is signed by their threshold. What a registry that has seen nothing of the root
    /// checks.
    pub fn verify_first(&self) -> Result<Verified<RootStatement>, RootError> {
        let statement = self.decode_checked()?;
        if statement.version != 1 || statement.root != statement.keys.id() {
            return Err(RootError::FirstKeys);
        }
        self.verify_after(&RootStatement::genesis(statement.keys))
    }

    /// The text form: the hex of the postcard encoding (used in files).
    pub fn to_hex(&self) -> String {
        codec::to_hex(self)
    }

    /// Parses [`SignedRootStatement::to_hex`] (no verification).
    pub fn from_hex(text: &str) -> Result<Self, codec::CodecError> {
        codec::from_hex(text)
    }
}

#[cfg(test)]
mod tests;
