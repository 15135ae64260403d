//! Operator statements: an operator revokes a vendor key with a statement its own key signs.
//! The registry follows it, and so does every client that trusts that operator key, which
//! verifies the statement itself (the registry is not trusted for keys).
//!
//! Signed like a key statement: the signature covers `OPERATOR_STATEMENT_DOMAIN ||
//! canonical postcard bytes`, checked strictly, weak keys and non-canonical bytes refused.

use crate::codec;
use crate::signing::{
    OPERATOR_STATEMENT_DOMAIN, SigningKey, VendorKey, Verified, VerifyError, sign,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What an operator states about a vendor key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStatement {
    /// The operator key, which signs the statement.
    pub operator: VendorKey,
    /// The vendor key revoked.
    pub subject: VendorKey,
    /// Why, in one line.
    pub reason: String,
    /// When it was made, milliseconds since the Unix epoch (informative).
    pub issued_at_ms: u64,
}

impl fmt::Display for OperatorStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} revoked by operator {} ({})",
            self.subject, self.operator, self.reason
        )
    }
}

/// An operator statement as its canonical bytes and the operator's signature.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedOperatorStatement {
    /// Canonical postcard encoding of an [`OperatorStatement`].
    pub bytes: Vec<u8>,
    /// ed25519 signature over `OPERATOR_STATEMENT_DOMAIN || bytes` by the operator key.
    #[serde(with = "crate::signing::sig_serde")]
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedOperatorStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peek() {
            Ok(s) => write!(f, "SignedOperatorStatement({s})"),
            Err(_) => write!(f, "SignedOperatorStatement(<{} bytes>)", self.bytes.len()),
        }
    }
}

impl SignedOperatorStatement {
    /// Encodes `statement` canonically and signs it with `key` (the statement's operator:
    /// anything else fails verification).
    pub fn sign(statement: &OperatorStatement, key: &SigningKey) -> Self {
        let bytes = codec::encode(statement);
        let signature = sign(key, OPERATOR_STATEMENT_DOMAIN, &bytes);
        Self { bytes, signature }
    }

    /// Decodes the statement without checking it (for display only).
    pub fn peek(&self) -> Result<OperatorStatement, codec::CodecError> {
        codec::decode(&self.bytes)
    }

    /// Decodes, checks canonical form, and checks the operator key is strong and signed it
    /// (strictly). Whether that operator is trusted is the verifier's decision.
    pub fn verify(&self) -> Result<Verified<OperatorStatement>, VerifyError> {
        let statement: OperatorStatement = codec::decode(&self.bytes)?;
        if codec::encode(&statement) != self.bytes {
            return Err(VerifyError::NotCanonical);
        }
        statement
            .operator
            .verify(OPERATOR_STATEMENT_DOMAIN, &self.bytes, &self.signature)?;
        statement.subject.verifying_key()?;
        Ok(Verified(statement))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn statement(operator: &SigningKey) -> OperatorStatement {
        OperatorStatement {
            operator: VendorKey::of(operator),
            subject: VendorKey::of(&SigningKey::from_bytes(&[9; 32])),
            reason: "leaked".into(),
            issued_at_ms: 5,
        }
    }

    #[test]
    fn only_the_named_operator_signs_and_nothing_else_verifies() {
        let (op, other) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let st = statement(&op);
        let signed = SignedOperatorStatement::sign(&st, &op);
        assert_eq!(signed.verify().unwrap().into_inner(), st);
        let forged = SignedOperatorStatement::sign(&st, &other);
        assert_eq!(forged.verify().unwrap_err(), VerifyError::BadSignature);
        let mut tampered = signed.clone();
        *tampered.bytes.last_mut().unwrap() ^= 1;
        assert!(tampered.verify().is_err());
        // A key statement's signature is not an operator statement's (domains differ).
        let mut cross = signed.clone();
        cross.signature = sign(&op, crate::KEY_STATEMENT_DOMAIN, &signed.bytes);
        assert_eq!(cross.verify().unwrap_err(), VerifyError::BadSignature);
    }
}
