//! ed25519 signatures over canonical encodings, with domain separation.
//!
//! A signature covers `DOMAIN || bytes`, where the domain names what is signed, so a
//! signature made for one purpose is never valid for another. Verification uses
//! `verify_strict` and refuses weak (small-order) keys. The signed bytes are the canonical
//! postcard encoding: a verifier decodes them and re-encodes, and refuses any difference.

use crate::codec;
use crate::manifest::{Manifest, ManifestError};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub use ed25519_dalek::SigningKey;

/// Domain of a manifest signature.
pub const MANIFEST_DOMAIN: &[u8] = b"courier/manifest/v1\0";
/// Domain of a vendor's answer to a registry's connection challenge.
pub const AUTH_DOMAIN: &[u8] = b"courier/auth/v1\0";
/// Domain of a key statement (rotation or revocation), see [`crate::statement`].
pub const KEY_STATEMENT_DOMAIN: &[u8] = b"courier/key-statement/v1\0";
/// Domain of an operator's statement about a vendor key, see [`crate::operator`].
pub const OPERATOR_STATEMENT_DOMAIN: &[u8] = b"courier/operator-statement/v1\0";
/// Domain of a vendor root's statement, see [`crate::root`].
pub const ROOT_STATEMENT_DOMAIN: &[u8] = b"courier/root-statement/v1\0";
/// Domain of an online key's further delegation, see [`crate::root`].
pub const DELEGATION_DOMAIN: &[u8] = b"courier/delegation/v1\0";

/// A vendor's ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VendorKey(pub [u8; 32]);

impl VendorKey {
    /// The public key of `signing`.
    pub fn of(signing: &SigningKey) -> Self {
        Self(signing.verifying_key().to_bytes())
    }

    /// The key as a dalek key, refusing points that are not valid or have small order.
    pub fn verifying_key(&self) -> Result<VerifyingKey, VerifyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| VerifyError::InvalidKey)?;
        if key.is_weak() {
            return Err(VerifyError::WeakKey);
        }
        Ok(key)
    }

    /// Verifies `signature` over `domain || message` strictly.
    pub fn verify(
        &self,
        domain: &[u8],
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), VerifyError> {
        let key = self.verifying_key()?;
        let sig = Signature::from_bytes(signature);
        let mut buf = Vec::with_capacity(domain.len() + message.len());
        buf.extend_from_slice(domain);
        buf.extend_from_slice(message);
        key.verify_strict(&buf, &sig)
            .map_err(|_| VerifyError::BadSignature)
    }
}

impl fmt::Display for VendorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for VendorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VendorKey(ed25519:{}…)", &hex::encode(self.0)[..12])
    }
}

/// Error parsing an `ed25519:<hex>` string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected ed25519:<64 hex digits>, got {0:?}")]
pub struct VendorKeyParseError(pub String);

impl FromStr for VendorKey {
    type Err = VendorKeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let h = s.strip_prefix("ed25519:").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out).map_err(|_| VendorKeyParseError(s.to_string()))?;
        Ok(Self(out))
    }
}

/// Signs `domain || message`.
pub fn sign(key: &SigningKey, domain: &[u8], message: &[u8]) -> [u8; 64] {
    let mut buf = Vec::with_capacity(domain.len() + message.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(message);
    key.sign(&buf).to_bytes()
}

/// Why a signed object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The public key is not a valid curve point.
    #[error("vendor key is not a valid ed25519 key")]
    InvalidKey,
    /// The public key has small order: anyone could forge signatures for it.
    #[error("vendor key is weak (small order)")]
    WeakKey,
    /// The signature does not verify (strictly) over the bytes with the expected domain.
    #[error("signature does not verify")]
    BadSignature,
    /// The signed bytes do not decode.
    #[error("signed bytes do not decode: {0}")]
    Decode(#[from] codec::CodecError),
    /// The signed bytes decode but are not the canonical encoding.
    #[error("signed bytes are not in canonical encoding")]
    NotCanonical,
    /// The manifest fails its shape rules.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// A manifest as its canonical bytes plus the vendor's signature over them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// Canonical postcard encoding of a [`Manifest`].
    pub bytes: Vec<u8>,
    /// ed25519 signature over `MANIFEST_DOMAIN || bytes`.
    #[serde(with = "sig_serde")]
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedManifest")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

pub(crate) mod sig_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(sig)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: &[u8] = <&[u8]>::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(v.len(), &"64 bytes"))
    }
}

/// A value whose signature has been checked. Only [`SignedManifest::verify`] (and
/// [`crate::statement::SignedKeyStatement::verify`]) makes one, so
/// code that takes a `Verified<Manifest>` cannot be handed an unverified manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T>(pub(crate) T);

impl<T> Verified<T> {
    /// The verified value.
    pub fn get(&self) -> &T {
        &self.0
    }
    /// Unwraps the verified value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl SignedManifest {
    /// Encodes `manifest` canonically and signs it with the vendor key.
    pub fn sign(manifest: &Manifest, key: &SigningKey) -> Self {
        let bytes = codec::encode(manifest);
        let signature = sign(key, MANIFEST_DOMAIN, &bytes);
        Self { bytes, signature }
    }

    /// Decodes the manifest without checking the signature (for display only).
    pub fn peek(&self) -> Result<Manifest, codec::CodecError> {
        codec::decode(&self.bytes)
    }

    /// Decodes, checks canonical form and shape, checks the vendor key is strong, and
    /// verifies the signature strictly. Times and trust are the caller's policy.
    pub fn verify(&self) -> Result<Verified<Manifest>, VerifyError> {
        let manifest: Manifest = codec::decode(&self.bytes)?;
        if codec::encode(&manifest) != self.bytes {
            return Err(VerifyError::NotCanonical);
        }
        manifest
            .vendor_key
            .verify(MANIFEST_DOMAIN, &self.bytes, &self.signature)?;
        manifest.validate()?;
        Ok(Verified(manifest))
    }
}

/// The bytes a vendor signs to answer a registry's challenge: the challenge and the pin of
/// the registry it is talking to, so the answer cannot be relayed to another registry.
pub fn auth_message(challenge: &[u8; 32], registry_pin: &crate::SpkiPin) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(challenge);
    m.extend_from_slice(registry_pin.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_and_verify() {
        let k = key(1);
        let m = sample(VendorKey::of(&k), b"component");
        let s = SignedManifest::sign(&m, &k);
        assert_eq!(s.verify().unwrap().get(), &m);
    }

    #[test]
    fn tampered_bytes_fail() {
        let k = key(1);
        let m = sample(VendorKey::of(&k), b"component");
        let mut s = SignedManifest::sign(&m, &k);
        let last = s.bytes.len() - 1;
        s.bytes[last] ^= 1;
        assert!(s.verify().is_err());
        let mut s = SignedManifest::sign(&m, &k);
        s.signature[0] ^= 1;
        assert_eq!(s.verify(), Err(VerifyError::BadSignature));
    }

    #[test]
    fn wrong_key_fails() {
        let k = key(1);
        let m = sample(VendorKey::of(&key(2)), b"component");
        let s = SignedManifest::sign(&m, &k);
        assert_eq!(s.verify(), Err(VerifyError::BadSignature));
    }

    #[test]
    fn other_domain_fails() {
        let k = key(1);
        let m = sample(VendorKey::of(&k), b"component");
        let bytes = codec::encode(&m);
        let signature = sign(&k, AUTH_DOMAIN, &bytes);
        let s = SignedManifest { bytes, signature };
        assert_eq!(s.verify(), Err(VerifyError::BadSignature));
    }

    #[test]
    fn weak_key_refused() {
        // The identity point: a small-order key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VendorKey(identity).verifying_key().err(),
            Some(VerifyError::WeakKey)
        );
        let m = sample(VendorKey(identity), b"component");
        let s = SignedManifest {
            bytes: codec::encode(&m),
            signature: [0; 64],
        };
        assert_eq!(s.verify(), Err(VerifyError::WeakKey));
    }

    #[test]
    fn non_canonical_signature_refused() {
        // Add the group order L to S: the same signature for lax verifiers, refused strictly.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let k = key(3);
        let m = sample(VendorKey::of(&k), b"component");
        let mut s = SignedManifest::sign(&m, &k);
        let mut carry = 0u16;
        for (byte, l) in s.signature[32..].iter_mut().zip(L) {
            let v = *byte as u16 + l as u16 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        assert_eq!(s.verify(), Err(VerifyError::BadSignature));
    }

    #[test]
    fn vendor_key_text_round_trip() {
        let v = VendorKey::of(&key(9));
        assert_eq!(v.to_string().parse::<VendorKey>().unwrap(), v);
    }
}
