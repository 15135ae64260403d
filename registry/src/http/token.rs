//! Dashboard tokens an operator key signs (`courier admin token`): a credential for the
//! HTTP side that the registry checks against its operator keys, with no secret of its
//! own to store, rotate or leak. A token names the operator key, says until when it is
//! valid, and is bound to one registry by its TLS pin:
//!
//! `courier-op.<not after, ms since the Unix epoch>.<operator key, hex>.<signature, hex>`
//!
//! The signature covers `DASHBOARD_TOKEN_DOMAIN || pin (32 bytes) || not after (u64,
//! big-endian)` and is checked strictly, like every signature in courier. Removing a key
//! from the registry's operators voids its tokens at once.

use courier_protocol::{SigningKey, SpkiPin, VendorKey, VerifyError};
use std::fmt;
use std::str::FromStr;

/// Domain of a dashboard token's signature.
pub const DASHBOARD_TOKEN_DOMAIN: &[u8] = b"courier/dashboard-token/v1\0";

/// The prefix of a signed token.
const PREFIX: &str = "courier-op";

/// A dashboard token signed by an operator key.
#[derive(Clone, PartialEq, Eq)]
pub struct DashboardToken {
    operator: VendorKey,
    not_after_ms: u64,
    signature: [u8; 64],
}

/// Why a dashboard token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It is not a token of either kind.
    #[error("not a dashboard token")]
    Malformed,
    /// Its time ran out.
    #[error("token expired")]
    Expired,
    /// The key that signed it is not one of this registry's operators.
    #[error("token of a key that is not an operator here")]
    NotAnOperator,
    /// The signature does not verify for this registry.
    #[error("token signature: {0}")]
    Signature(#[from] VerifyError),
}

impl DashboardToken {
    /// A token of `operator` for the registry whose pin is `pin`, valid until
    /// `not_after_ms` (ms since the Unix epoch).
    pub fn sign(operator: &SigningKey, pin: &SpkiPin, not_after_ms: u64) -> Self {
        Self {
            operator: VendorKey::of(operator),
            not_after_ms,
            signature: courier_protocol::sign(
                operator,
                DASHBOARD_TOKEN_DOMAIN,
                &message(pin, not_after_ms),
            ),
        }
    }

    /// The operator key that signed it, if it is one of `operators`, the signature holds
    /// for the registry of `pin`, and `now_ms` is not past its end.
    pub fn verify(
        &self,
        pin: &SpkiPin,
        operators: &[VendorKey],
        now_ms: u64,
    ) -> Result<VendorKey, TokenError> {
        if now_ms > self.not_after_ms {
            return Err(TokenError::Expired);
        }
        if !operators.contains(&self.operator) {
            return Err(TokenError::NotAnOperator);
        }
        self.operator.verify(
            DASHBOARD_TOKEN_DOMAIN,
            &message(pin, self.not_after_ms),
            &self.signature,
        )?;
        Ok(self.operator)
    }

    /// Until when it is valid, ms since the Unix epoch.
    pub fn not_after_ms(&self) -> u64 {
        self.not_after_ms
    }

    /// The operator key it names.
    pub fn operator(&self) -> VendorKey {
        self.operator
    }
}

/// The signed bytes after the domain.
fn message(pin: &SpkiPin, not_after_ms: u64) -> [u8; 40] {
    let mut m = [0u8; 40];
    m[..32].copy_from_slice(&pin.0);
    m[32..].copy_from_slice(&not_after_ms.to_be_bytes());
    m
}

impl fmt::Display for DashboardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.not_after_ms,
            hex::encode(self.operator.0),
            hex::encode(self.signature)
        )
    }
}

impl fmt::Debug for DashboardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DashboardToken({:?} until {})",
            self.operator, self.not_after_ms
        )
    }
}

impl FromStr for DashboardToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.');
        let (Some(PREFIX), Some(at), Some(key), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let not_after_ms = at.parse().map_err(|_| TokenError::Malformed)?;
        let mut operator = [0u8; 32];
        hex::decode_to_slice(key, &mut operator).map_err(|_| TokenError::Malformed)?;
        let mut signature = [0u8; 64];
        hex::decode_to_slice(sig, &mut signature).map_err(|_| TokenError::Malformed)?;
        Ok(Self {
            operator: VendorKey(operator),
            not_after_ms,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_token_round_trips_and_verifies_only_where_it_should() {
        let (op, other) = (key(1), key(2));
        let (pin, elsewhere) = (SpkiPin([5; 32]), SpkiPin([6; 32]));
        let operators = [VendorKey::of(&op)];
        let token = DashboardToken::sign(&op, &pin, 10_000);
        let text = token.to_string();
        assert!(text.starts_with("courier-op.10000."), "{text}");
        let parsed: DashboardToken = text.parse().unwrap();
        assert_eq!(parsed, token);
        assert_eq!(
            parsed.verify(&pin, &operators, 9_999),
            Ok(VendorKey::of(&op))
        );
        assert_eq!(
            parsed.verify(&pin, &operators, 10_001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            parsed.verify(&elsewhere, &operators, 0),
            Err(TokenError::Signature(VerifyError::BadSignature))
        );
        let foreign = DashboardToken::sign(&other, &pin, 10_000);
        assert_eq!(
            foreign.verify(&pin, &operators, 0),
            Err(TokenError::NotAnOperator)
        );
        // A later end claimed over an earlier signature.
        let stretched = text.replacen("10000", "99999", 1);
        let stretched: DashboardToken = stretched.parse().unwrap();
        assert!(matches!(
            stretched.verify(&pin, &operators, 0),
            Err(TokenError::Signature(_))
        ));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "courier-op",
            "courier-op.1.00.00",
            "courier-op.x.aa.bb",
            "other.1.aa.bb",
            "courier-op.1.a.b.c",
        ] {
            assert_eq!(
                bad.parse::<DashboardToken>(),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }
}
