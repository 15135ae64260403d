//! Further delegation (TUF's delegated roles): an online key the root delegated names to
//! hands some of them on to another key, with a statement it signs itself.
//!
//! Such a statement is only a claim until checked against the root's current word with
//! [`super::Authority`]: it counts when its signer holds a grant there and it grants no
//! name outside that grant and no time past its expiry.

use super::{Delegation, RootError, RootId};
use crate::codec;
use crate::signing::{DELEGATION_DOMAIN, SigningKey, VendorKey, Verified, VerifyError, sign};
use serde::{Deserialize, Serialize};

/// A delegation made by an online key (the parent) under a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationStatement {
    /// The root the parent's grant comes from.
    pub root: RootId,
    /// The delegating key, which signs the statement.
    pub parent: VendorKey,
    /// What it hands on.
    pub delegation: Delegation,
    /// When it was made, milliseconds since the Unix epoch (informative).
    pub issued_at_ms: u64,
}

/// A delegation statement as its canonical bytes plus the parent's signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedDelegation {
    /// Canonical postcard encoding of a [`DelegationStatement`].
    pub bytes: Vec<u8>,
    /// ed25519 signature over `DELEGATION_DOMAIN || bytes` by the parent key.
    #[serde(with = "crate::signing::sig_serde")]
    pub signature: [u8; 64],
}

/// Why a delegation statement is refused on its own (before the root is consulted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    /// The signature, encoding or parent key does not verify.
    #[error("delegation: {0}")]
    Verify(#[from] VerifyError),
    /// The delegation's shape is wrong (key, patterns).
    #[error("delegation: {0}")]
    Shape(#[from] RootError),
    /// A key delegating to itself.
    #[error("{0} delegates to itself")]
    SelfDelegation(VendorKey),
}

impl SignedDelegation {
    /// Encodes `statement` canonically and signs it with `key` (its parent).
    pub fn sign(statement: &DelegationStatement, key: &SigningKey) -> Self {
        let bytes = codec::encode(statement);
        let signature = sign(key, DELEGATION_DOMAIN, &bytes);
        Self { bytes, signature }
    }

    /// Decodes without checking (for display and routing only).
    pub fn peek(&self) -> Result<DelegationStatement, codec::CodecError> {
        codec::decode(&self.bytes)
    }

    /// Decodes, checks canonical form and shape, and that the parent signed it strictly.
    pub fn verify(&self) -> Result<Verified<DelegationStatement>, DelegationError> {
        let statement: DelegationStatement =
            codec::decode(&self.bytes).map_err(VerifyError::from)?;
        if codec::encode(&statement) != self.bytes {
            return Err(VerifyError::NotCanonical.into());
        }
        statement.delegation.check()?;
        if statement.delegation.key == statement.parent {
            return Err(DelegationError::SelfDelegation(statement.parent));
        }
        statement
            .parent
            .verify(DELEGATION_DOMAIN, &self.bytes, &self.signature)?;
        Ok(Verified(statement))
    }

    /// The text form: the hex of the postcard encoding (used in files).
    pub fn to_hex(&self) -> String {
        codec::to_hex(self)
    }

    /// Parses [`SignedDelegation::to_hex`] (no verification).
    pub fn from_hex(text: &str) -> Result<Self, codec::CodecError> {
        codec::from_hex(text)
    }
}
