//! Freshness statements (TUF's timestamp role): a vendor key states, for a few minutes, the
//! current version of each of its services. The registry keeps the latest and serves it with
//! every candidate; it cannot forge one (it has no vendor key). A client refuses a candidate
//! whose statement is missing, expired, too old for its policy, or names a newer version than
//! the one offered, so a registry that freezes or rolls back what it serves is caught within
//! a statement's validity.
//!
//! Signed like a key statement: the signature covers `FRESHNESS_DOMAIN || canonical postcard
//! bytes`, checked with `verify_strict`, weak keys and non-canonical bytes refused (service
//! names are a sorted map, so each appears once, in order).

use crate::codec;
use crate::limits::manifest::NAME_LEN;
use crate::signing::{SigningKey, VendorKey, Verified, VerifyError, sign};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Domain of a freshness statement's signature.
pub const FRESHNESS_DOMAIN: &[u8] = b"courier/freshness/v1\0";

/// Most services one statement names.
pub const MAX_FRESHNESS_SERVICES: usize = 256;

/// Longest validity a statement may claim (`expires_at - issued_at`): an hour. Freshness is
/// about minutes; a statement valid for days would be no timestamp at all.
pub const MAX_FRESHNESS_VALIDITY_MS: u64 = 60 * 60 * 1000;

/// Clock skew allowed by default between the signer's and the checker's clocks when checking
/// a statement's times (smaller than a manifest's: the window itself is minutes).
pub const FRESHNESS_SKEW_MS: u64 = 60 * 1000;

/// What a vendor key states about its services, for a short while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreshnessStatement {
    /// The vendor key, which signs the statement.
    pub vendor: VendorKey,
    /// Each service name with its current proxy version (semver).
    pub services: BTreeMap<String, String>,
    /// When it was signed, milliseconds since the Unix epoch. Also its order: of two
    /// statements about a service, the later one wins.
    pub issued_at_ms: u64,
    /// When it stops counting, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

impl FreshnessStatement {
    /// A statement by `vendor` that `services` are current, from `issued_at_ms` for
    /// `validity_ms`.
    pub fn new(
        vendor: VendorKey,
        services: impl IntoIterator<Item = (String, String)>,
        issued_at_ms: u64,
        validity_ms: u64,
    ) -> Self {
        Self {
            vendor,
            services: services.into_iter().collect(),
            issued_at_ms,
            expires_at_ms: issued_at_ms.saturating_add(validity_ms),
        }
    }

    /// The current version of `service`, if the statement names it.
    pub fn version_of(&self, service: &str) -> Option<semver::Version> {
        self.services
            .get(service)
            .and_then(|v| semver::Version::parse(v).ok())
    }

    /// How old the statement is at `now_ms` (zero if issued in the future).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.issued_at_ms)
    }

    /// Checks the statement at `now_ms` against its own expiry and a `max_age_ms` the checker
    /// chooses, each with `skew_ms` of slack for clocks that disagree (usually
    /// [`FRESHNESS_SKEW_MS`]).
    pub fn check_time(
        &self,
        now_ms: u64,
        max_age_ms: u64,
        skew_ms: u64,
    ) -> Result<(), FreshnessTimeError> {
        if self.issued_at_ms > now_ms.saturating_add(skew_ms) {
            return Err(FreshnessTimeError::NotYetValid {
                ahead_ms: self.issued_at_ms - now_ms,
            });
        }
        if now_ms > self.expires_at_ms.saturating_add(skew_ms) {
            return Err(FreshnessTimeError::Expired {
                ago_ms: now_ms - self.expires_at_ms,
            });
        }
        let age_ms = self.age_ms(now_ms);
        if age_ms > max_age_ms.saturating_add(skew_ms) {
            return Err(FreshnessTimeError::TooOld { age_ms, max_age_ms });
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), FreshnessError> {
        if self.services.is_empty() || self.services.len() > MAX_FRESHNESS_SERVICES {
            return Err(FreshnessError::Services(self.services.len()));
        }
        for (name, version) in &self.services {
            if name.is_empty() || name.len() > NAME_LEN {
                return Err(FreshnessError::Name(name.clone()));
            }
            semver::Version::parse(version)
                .map_err(|e| FreshnessError::Version(name.clone(), e.to_string()))?;
        }
        let validity = self.expires_at_ms.checked_sub(self.issued_at_ms);
        match validity {
            Some(v) if v > 0 && v <= MAX_FRESHNESS_VALIDITY_MS => Ok(()),
            _ => Err(FreshnessError::Validity {
                issued_at_ms: self.issued_at_ms,
                expires_at_ms: self.expires_at_ms,
            }),
        }
    }
}

impl fmt::Display for FreshnessStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} current at {}:", self.vendor, self.issued_at_ms)?;
        for (name, version) in &self.services {
            write!(f, " {name} {version}")?;
        }
        Ok(())
    }
}

/// Why a freshness statement is refused, beyond its time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreshnessError {
    /// The signature, encoding or key does not verify.
    #[error("freshness statement: {0}")]
    Verify(#[from] VerifyError),
    /// It names no service, or too many.
    #[error("freshness statement names {0} services (1..={MAX_FRESHNESS_SERVICES} allowed)")]
    Services(usize),
    /// A service name is empty or too long.
    #[error("freshness statement names a bad service {0:?}")]
    Name(String),
    /// A version is not semver.
    #[error("freshness statement gives {0} a bad version: {1}")]
    Version(String, String),
    /// It expires before it is issued, or is valid for longer than allowed.
    #[error(
        "freshness statement valid from {issued_at_ms} to {expires_at_ms} (at most {MAX_FRESHNESS_VALIDITY_MS} ms)"
    )]
    Validity {
        /// Its issue time.
        issued_at_ms: u64,
        /// Its expiry.
        expires_at_ms: u64,
    },
}

/// Why a verified freshness statement does not count at a given time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreshnessTimeError {
    /// Its expiry has passed.
    #[error("freshness statement expired {}s ago", ago_ms / 1000)]
    Expired {
        /// Milliseconds since it expired.
        ago_ms: u64,
    },
    /// It is older than the checker accepts.
    #[error("freshness statement is {}s old (at most {}s accepted)", age_ms / 1000, max_age_ms / 1000)]
    TooOld {
        /// Its age.
        age_ms: u64,
        /// The most the checker accepts.
        max_age_ms: u64,
    },
    /// It is issued in the future beyond the allowed skew.
    #[error("freshness statement issued {}s in the future", ahead_ms / 1000)]
    NotYetValid {
        /// How far ahead of the checker's clock.
        ahead_ms: u64,
    },
}

/// A freshness statement as its canonical bytes and the vendor's signature.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedFreshness {
    /// Canonical postcard encoding of a [`FreshnessStatement`].
    pub bytes: Vec<u8>,
    /// ed25519 signature over `FRESHNESS_DOMAIN || bytes` by the statement's vendor key.
    #[serde(with = "crate::signing::sig_serde")]
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedFreshness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peek() {
            Ok(s) => write!(f, "SignedFreshness({s})"),
            Err(_) => write!(f, "SignedFreshness(<{} bytes>)", self.bytes.len()),
        }
    }
}

impl SignedFreshness {
    /// Encodes `statement` canonically and signs it with `key` (the statement's vendor:
    /// anything else fails verification).
    pub fn sign(statement: &FreshnessStatement, key: &SigningKey) -> Self {
        let bytes = codec::encode(statement);
        let signature = sign(key, FRESHNESS_DOMAIN, &bytes);
        Self { bytes, signature }
    }

    /// Decodes the statement without checking it (for display only).
    pub fn peek(&self) -> Result<FreshnessStatement, codec::CodecError> {
        codec::decode(&self.bytes)
    }

    /// Decodes, checks canonical form, checks the vendor key is strong and signed it
    /// (strictly), and checks its shape (services, versions, validity). Its time, and
    /// whether the vendor is trusted, are the verifier's to check.
    pub fn verify(&self) -> Result<Verified<FreshnessStatement>, FreshnessError> {
        let statement: FreshnessStatement =
            codec::decode(&self.bytes).map_err(VerifyError::from)?;
        if codec::encode(&statement) != self.bytes {
            return Err(VerifyError::NotCanonical.into());
        }
        statement
            .vendor
            .verify(FRESHNESS_DOMAIN, &self.bytes, &self.signature)?;
        statement.validate()?;
        Ok(Verified(statement))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::signing::{KEY_STATEMENT_DOMAIN, MANIFEST_DOMAIN};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn statement(k: &SigningKey) -> FreshnessStatement {
        FreshnessStatement::new(
            VendorKey::of(k),
            [
                ("acme/echo".to_string(), "2.0.0".to_string()),
                ("acme/kv".to_string(), "1.1.0".to_string()),
            ],
            1_000_000,
            600_000,
        )
    }

    #[test]
    fn a_signed_statement_verifies_and_says_what_is_current() {
        let k = key(1);
        let st = statement(&k);
        let signed = SignedFreshness::sign(&st, &k);
        let verified = signed.verify().unwrap().into_inner();
        assert_eq!(verified, st);
        assert_eq!(
            verified.version_of("acme/echo"),
            Some(semver::Version::new(2, 0, 0))
        );
        assert_eq!(verified.version_of("acme/other"), None);
    }

    #[test]
    fn forged_tampered_and_other_domain_statements_are_refused() {
        let (k, other) = (key(1), key(2));
        let st = statement(&k);
        assert_eq!(
            SignedFreshness::sign(&st, &other).verify(),
            Err(FreshnessError::Verify(VerifyError::BadSignature))
        );
        let mut tampered = SignedFreshness::sign(&st, &k);
        *tampered.bytes.last_mut().unwrap() ^= 1;
        assert!(tampered.verify().is_err());
        for domain in [MANIFEST_DOMAIN, KEY_STATEMENT_DOMAIN] {
            let bytes = codec::encode(&st);
            let signature = sign(&k, domain, &bytes);
            assert_eq!(
                SignedFreshness { bytes, signature }.verify(),
                Err(FreshnessError::Verify(VerifyError::BadSignature))
            );
        }
        let unsigned = SignedFreshness {
            bytes: codec::encode(&st),
            signature: [0; 64],
        };
        assert!(unsigned.verify().is_err());
    }

    #[test]
    fn non_canonical_and_malformed_statements_are_refused() {
        let k = key(1);
        // A non-minimal varint for the expiry decodes to the same value but is refused.
        let mut bytes = codec::encode(&statement(&k));
        let n = bytes.len();
        bytes[n - 1] |= 0x80;
        bytes.push(0x00);
        let signature = sign(&k, FRESHNESS_DOMAIN, &bytes);
        assert_eq!(
            SignedFreshness { bytes, signature }.verify(),
            Err(FreshnessError::Verify(VerifyError::NotCanonical))
        );
        let vendor = VendorKey::of(&k);
        let empty = FreshnessStatement::new(vendor, [], 1, 1000);
        assert_eq!(
            SignedFreshness::sign(&empty, &k).verify(),
            Err(FreshnessError::Services(0))
        );
        let bad_version = FreshnessStatement::new(vendor, [("a".into(), "two".into())], 1, 1000);
        assert!(matches!(
            SignedFreshness::sign(&bad_version, &k).verify(),
            Err(FreshnessError::Version(..))
        ));
        let for_days = FreshnessStatement::new(
            vendor,
            [("a".into(), "1.0.0".into())],
            1,
            MAX_FRESHNESS_VALIDITY_MS + 1,
        );
        assert!(matches!(
            SignedFreshness::sign(&for_days, &k).verify(),
            Err(FreshnessError::Validity { .. })
        ));
    }

    #[test]
    fn time_checks_allow_skew_and_nothing_more() {
        let st = statement(&key(1)); // issued 1,000,000, expires 1,600,000
        let skew = FRESHNESS_SKEW_MS;
        assert_eq!(st.check_time(1_000_000, 600_000, skew), Ok(()));
        assert_eq!(st.check_time(1_000_000 - skew, 600_000, skew), Ok(()));
        assert!(matches!(
            st.check_time(1_000_000 - skew - 1, 600_000, skew),
            Err(FreshnessTimeError::NotYetValid { .. })
        ));
        assert_eq!(
            st.check_time(1_600_000 + skew, 600_000 + skew, skew),
            Ok(())
        );
        assert!(matches!(
            st.check_time(1_600_000 + skew + 1, u64::MAX, skew),
            Err(FreshnessTimeError::Expired { .. })
        ));
        assert!(matches!(
            st.check_time(1_600_001, u64::MAX, 0),
            Err(FreshnessTimeError::Expired { ago_ms: 1 })
        ));
        assert_eq!(
            st.check_time(1_300_000, 200_000, skew),
            Err(FreshnessTimeError::TooOld {
                age_ms: 300_000,
                max_age_ms: 200_000
            })
        );
    }
}
