//! Key statements: a vendor rotates its key to a new one, or revokes it, with a statement
//! signed by the key the statement is about.
//!
//! A statement is signed like a manifest: the signature covers
//! `KEY_STATEMENT_DOMAIN || canonical postcard bytes`, verification is `verify_strict`,
//! refuses weak keys, and refuses bytes that do not re-encode identically. The registry
//! keeps and serves statements; clients verify them themselves (the registry is not trusted
//! for keys any more than for code).

use crate::codec;
use crate::signing::{KEY_STATEMENT_DOMAIN, SigningKey, VendorKey, Verified, VerifyError, sign};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a key states about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAction {
    /// From now on the vendor signs with this key: what the old key owned (service names,
    /// the trust of clients) passes to it, and the old key signs nothing more.
    RotateTo(VendorKey),
    /// The key must no longer be trusted for anything.
    Revoke,
}

/// A statement by a vendor key about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatement {
    /// The key the statement is about, which signs it.
    pub key: VendorKey,
    /// What it states.
    pub action: KeyAction,
    /// When it was made, milliseconds since the Unix epoch (informative).
    pub issued_at_ms: u64,
}

impl KeyStatement {
    /// A rotation of `old` to `new`.
    pub fn rotate(old: VendorKey, new: VendorKey, issued_at_ms: u64) -> Self {
        Self {
            key: old,
            action: KeyAction::RotateTo(new),
            issued_at_ms,
        }
    }

    /// A revocation of `key`.
    pub fn revoke(key: VendorKey, issued_at_ms: u64) -> Self {
        Self {
            key,
            action: KeyAction::Revoke,
            issued_at_ms,
        }
    }

    /// The new key, for a rotation.
    pub fn successor(&self) -> Option<VendorKey> {
        match self.action {
            KeyAction::RotateTo(k) => Some(k),
            KeyAction::Revoke => None,
        }
    }
}

impl fmt::Display for KeyStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            KeyAction::RotateTo(new) => write!(f, "{} rotated to {new}", self.key),
            KeyAction::Revoke => write!(f, "{} revoked", self.key),
        }
    }
}

/// Why a key statement is refused, beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The signature, encoding or key does not verify.
    #[error("key statement: {0}")]
    Verify(#[from] VerifyError),
    /// A rotation names the same key as old and new.
    #[error("key statement rotates {0} to itself")]
    SelfRotation(VendorKey),
    /// A rotation's new key is not a usable ed25519 key.
    #[error("key statement rotates to an unusable key: {0}")]
    BadNewKey(VerifyError),
}

/// A key statement as its canonical bytes plus the signature of the key it is about.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedKeyStatement {
    /// Canonical postcard encoding of a [`KeyStatement`].
    pub bytes: Vec<u8>,
    /// ed25519 signature over `KEY_STATEMENT_DOMAIN || bytes` by the statement's key.
    #[serde(with = "crate::signing::sig_serde")]
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedKeyStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peek() {
            Ok(s) => write!(f, "SignedKeyStatement({s})"),
            Err(_) => write!(f, "SignedKeyStatement(<{} bytes>)", self.bytes.len()),
        }
    }
}

impl SignedKeyStatement {
    /// Encodes `statement` canonically and signs it with `key` (which should be the
    /// statement's key: anything else fails verification).
    pub fn sign(statement: &KeyStatement, key: &SigningKey) -> Self {
        let bytes = codec::encode(statement);
        let signature = sign(key, KEY_STATEMENT_DOMAIN, &bytes);
        Self { bytes, signature }
    }

    /// Decodes the statement without checking it (for display only).
    pub fn peek(&self) -> Result<KeyStatement, codec::CodecError> {
        codec::decode(&self.bytes)
    }

    /// Decodes, checks canonical form, checks the statement's key is strong and signed it
    /// (strictly), and for a rotation that the new key is usable and not the old one.
    pub fn verify(&self) -> Result<Verified<KeyStatement>, StatementError> {
        let statement: KeyStatement = codec::decode(&self.bytes).map_err(VerifyError::from)?;
        if codec::encode(&statement) != self.bytes {
            return Err(VerifyError::NotCanonical.into());
        }
        statement
            .key
            .verify(KEY_STATEMENT_DOMAIN, &self.bytes, &self.signature)?;
        if let KeyAction::RotateTo(new) = statement.action {
            if new == statement.key {
                return Err(StatementError::SelfRotation(new));
            }
            new.verifying_key().map_err(StatementError::BadNewKey)?;
        }
        Ok(Verified(statement))
    }

    /// The text form: the hex of the postcard encoding (used in files).
    pub fn to_hex(&self) -> String {
        codec::to_hex(self)
    }

    /// Parses [`SignedKeyStatement::to_hex`] (no verification).
    pub fn from_hex(text: &str) -> Result<Self, codec::CodecError> {
        codec::from_hex(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{AUTH_DOMAIN, MANIFEST_DOMAIN};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn rotation_and_revocation_verify() {
        let (a, b) = (key(1), key(2));
        let s = KeyStatement::rotate(VendorKey::of(&a), VendorKey::of(&b), 5);
        let signed = SignedKeyStatement::sign(&s, &a);
        assert_eq!(signed.verify().unwrap().get(), &s);
        assert_eq!(
            SignedKeyStatement::from_hex(&signed.to_hex()).unwrap(),
            signed
        );
        let r = KeyStatement::revoke(VendorKey::of(&b), 6);
        assert_eq!(SignedKeyStatement::sign(&r, &b).verify().unwrap().get(), &r);
    }

    #[test]
    fn foreign_tampered_and_other_domain_refused() {
        let (a, b, c) = (key(1), key(2), key(3));
        let s = KeyStatement::rotate(VendorKey::of(&a), VendorKey::of(&b), 5);
        // Signed by the new key, or by a third key: not the old key's statement.
        for k in [&b, &c] {
            assert_eq!(
                SignedKeyStatement::sign(&s, k).verify(),
                Err(StatementError::Verify(VerifyError::BadSignature))
            );
        }
        let mut t = SignedKeyStatement::sign(&s, &a);
        let last = t.bytes.len() - 1;
        t.bytes[last] ^= 1;
        assert!(t.verify().is_err());
        for domain in [MANIFEST_DOMAIN, AUTH_DOMAIN] {
            let bytes = codec::encode(&s);
            let signature = sign(&a, domain, &bytes);
            assert_eq!(
                SignedKeyStatement { bytes, signature }.verify(),
                Err(StatementError::Verify(VerifyError::BadSignature))
            );
        }
    }

    #[test]
    fn self_rotation_weak_and_non_canonical_refused() {
        let a = key(1);
        let s = KeyStatement::rotate(VendorKey::of(&a), VendorKey::of(&a), 5);
        assert!(matches!(
            SignedKeyStatement::sign(&s, &a).verify(),
            Err(StatementError::SelfRotation(_))
        ));
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let s = KeyStatement::rotate(VendorKey::of(&a), VendorKey(weak), 5);
        assert!(matches!(
            SignedKeyStatement::sign(&s, &a).verify(),
            Err(StatementError::BadNewKey(VerifyError::WeakKey))
        ));
        // A non-minimal varint for issued_at decodes to the same value but is refused.
        let s = KeyStatement::revoke(VendorKey::of(&a), 5);
        let mut bytes = codec::encode(&s);
        let n = bytes.len();
        bytes[n - 1] = 0x85;
        bytes.push(0x00);
        let signature = sign(&a, KEY_STATEMENT_DOMAIN, &bytes);
        let signed = SignedKeyStatement { bytes, signature };
        assert_eq!(
            signed.verify(),
            Err(StatementError::Verify(VerifyError::NotCanonical))
        );
    }
}
