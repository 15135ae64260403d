//! Operator keys in the trust store: a client may follow operators (`operator:ed25519:…`
//! lines, `--trust-operator`, the policy file's `[trust] operators`). A vendor key that a
//! followed operator revoked, by a statement the operator signed (served by the registry,
//! verified here), is refused like a key revoked by its own statement, naming the operator
//! and its reason; rotations out of it are not followed.
//!
//! Learned operator statements are kept whoever signed them (in the text form as
//! `operator-statement:<hex bytes>.<hex signature>` lines, verified again on load), but
//! count only while their operator is followed, so un-following an operator undoes its
//! revocations at once.

use super::{TrustError, TrustStore};
use courier_protocol::{OperatorStatement, SignedOperatorStatement, VendorKey, VerifyError};

/// The text-form prefix of a learned operator statement.
pub(super) const STATEMENT_PREFIX: &str = "operator-statement:";
/// The text-form prefix of a followed operator key.
pub(super) const OPERATOR_PREFIX: &str = "operator:";

/// Why an operator statement was not learned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorLearnError {
    /// The statement does not verify.
    #[error("operator statement: {0}")]
    Statement(#[from] VerifyError),
    /// It is signed by an operator this client does not follow.
    #[error("operator {0} is not followed")]
    NotFollowed(VendorKey),
}

impl TrustStore {
    /// Follows the operator key `key`: its signed revocations count. False if it already
    /// did. Unusable keys are refused.
    pub fn add_operator(&mut self, key: VendorKey) -> Result<bool, TrustError> {
        if key.verifying_key().is_err() {
            return Err(TrustError::BadKey { line: 0, key });
        }
        let added = self.operators.insert(key);
        self.recompute();
        Ok(added)
    }

    /// The operator keys followed, sorted.
    pub fn operators(&self) -> impl Iterator<Item = &VendorKey> {
        self.operators.iter()
    }

    /// Learns an operator's statement after verifying it, if its operator is followed.
    /// Returns whether it was new.
    pub fn learn_operator(
        &mut self,
        signed: &SignedOperatorStatement,
    ) -> Result<bool, OperatorLearnError> {
        let statement = signed.verify()?.into_inner();
        if !self.operators.contains(&statement.operator) {
            return Err(OperatorLearnError::NotFollowed(statement.operator));
        }
        Ok(self.keep_operator_statement(statement, signed.clone()))
    }

    /// Keeps a verified statement (first one per subject and operator); whether it was new.
    pub(super) fn keep_operator_statement(
        &mut self,
        statement: OperatorStatement,
        signed: SignedOperatorStatement,
    ) -> bool {
        let slot = (statement.subject, statement.operator);
        if self.by_operators.contains_key(&slot) {
            return false;
        }
        self.by_operators.insert(slot, (statement, signed));
        self.recompute();
        true
    }

    /// The revocation of `key` by a followed operator, if one was learned (the first by
    /// operator key order).
    pub fn operator_revocation(&self, key: &VendorKey) -> Option<&OperatorStatement> {
        self.by_operators
            .range((*key, VendorKey([0; 32]))..=(*key, VendorKey([0xff; 32])))
            .map(|(_, (statement, _))| statement)
            .find(|s| self.operators.contains(&s.operator))
    }

    /// Whether a followed operator revoked `key`.
    pub(super) fn revoked_by_operator(&self, key: &VendorKey) -> bool {
        self.operator_revocation(key).is_some()
    }
}

/// The text form of a signed operator statement.
pub(super) fn to_text(signed: &SignedOperatorStatement) -> String {
    format!(
        "{STATEMENT_PREFIX}{}.{}",
        hex::encode(&signed.bytes),
        hex::encode(signed.signature)
    )
}

/// Parses and verifies the hex after [`STATEMENT_PREFIX`].
pub(super) fn parse_statement(
    hex_text: &str,
) -> Result<(OperatorStatement, SignedOperatorStatement), String> {
    let (bytes, signature) = hex_text
        .split_once('.')
        .ok_or("expected <hex bytes>.<hex signature>")?;
    let bytes = hex::decode(bytes).map_err(|e| format!("hex: {e}"))?;
    let signature: [u8; 64] = hex::decode(signature)
        .map_err(|e| format!("hex: {e}"))?
        .try_into()
        .map_err(|_| "a signature is 64 bytes".to_string())?;
    let signed = SignedOperatorStatement { bytes, signature };
    let statement = signed.verify().map_err(|e| e.to_string())?.into_inner();
    Ok((statement, signed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::{KeyStatement, SignedKeyStatement, SigningKey};

    fn k(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn revoke(operator: &SigningKey, subject: VendorKey, reason: &str) -> SignedOperatorStatement {
        SignedOperatorStatement::sign(
            &OperatorStatement {
                operator: VendorKey::of(operator),
                subject,
                reason: reason.into(),
                issued_at_ms: 1,
            },
            operator,
        )
    }

    #[test]
    fn a_followed_operators_revocation_refuses_the_vendor_and_voids_its_rotations() {
        let (vendor, next, op, stranger) = (k(1), k(2), k(10), k(11));
        let (v, n) = (VendorKey::of(&vendor), VendorKey::of(&next));
        let mut store = TrustStore::from_keys([v]);
        let rotation = SignedKeyStatement::sign(&KeyStatement::rotate(v, n, 1), &vendor);
        store.learn(&rotation).unwrap();
        assert!(store.is_trusted(&n));
        // Not followed: refused, nothing learned.
        let by_op = revoke(&op, v, "leaked");
        assert_eq!(
            store.learn_operator(&by_op),
            Err(OperatorLearnError::NotFollowed(VendorKey::of(&op)))
        );
        assert!(store.is_trusted(&v));
        assert!(store.add_operator(VendorKey::of(&op)).unwrap());
        // Signed by someone else in the operator's name: does not verify.
        let mut forged = revoke(&stranger, v, "x");
        forged.bytes = by_op.bytes.clone();
        assert!(matches!(
            store.learn_operator(&forged),
            Err(OperatorLearnError::Statement(_))
        ));
        assert!(store.learn_operator(&by_op).unwrap());
        assert!(!store.learn_operator(&by_op).unwrap());
        assert_eq!(
            store.check(&v),
            Err(super::super::TrustRefusal::RevokedByOperator {
                key: v,
                operator: VendorKey::of(&op),
                reason: "leaked".into()
            })
        );
        // Trust that reached the next key only through the revoked one is gone.
        assert!(!store.is_trusted(&n));
        // The text form keeps followed operators and their statements, verified on load.
        let text = store.to_text();
        assert!(text.contains(&format!("operator:{}", VendorKey::of(&op))));
        let again = TrustStore::parse(&text).unwrap();
        assert_eq!(again, store);
        let damaged = text.replace(STATEMENT_PREFIX, &format!("{STATEMENT_PREFIX}00"));
        assert!(matches!(
            TrustStore::parse(&damaged),
            Err(TrustError::Statement { .. })
        ));
        // Learned statements carried to a store that does not follow the operator: kept,
        // but they do not count.
        let mut other = TrustStore::from_keys([v]);
        other.absorb(&store.learned_only()).unwrap();
        assert!(other.is_trusted(&v));
        other.add_operator(VendorKey::of(&op)).unwrap();
        assert!(!other.is_trusted(&v));
    }
}
