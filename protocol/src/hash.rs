//! Fixed-size digests: content hashes of components and pins of TLS public keys.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Error parsing a `sha256:<hex>` string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected sha256:<64 hex digits>, got {0:?}")]
pub struct DigestParseError(pub String);

fn parse_digest(s: &str) -> Result<[u8; 32], DigestParseError> {
    let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| DigestParseError(s.to_string()))?;
    Ok(out)
}

macro_rules! digest_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lowercase hex without the `sha256:` prefix.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "sha256:{}", hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(sha256:{}…)", stringify!($name), &hex::encode(self.0)[..12])
            }
        }

        impl FromStr for $name {
            type Err = DigestParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_digest(s).map(Self)
            }
        }
    };
}

digest_type!(
    /// SHA-256 of a component's bytes: the key under which the registry stores it and the
    /// value the signed manifest commits to.
    ContentHash
);

digest_type!(
    /// SHA-256 of a TLS certificate's SubjectPublicKeyInfo (DER): how a registry or a
    /// provider is pinned. No certificate authority is involved.
    SpkiPin
);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl SpkiPin {
    /// Pins the DER encoding of a SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let h = ContentHash::of(b"hello");
        let s = h.to_string();
        assert!(s.starts_with("sha256:2cf24dba"));
        assert_eq!(s.parse::<ContentHash>().unwrap(), h);
        assert_eq!(h.to_hex().parse::<ContentHash>().unwrap(), h);
        assert!("sha256:zz".parse::<SpkiPin>().is_err());
        assert!("sha256:abcd".parse::<SpkiPin>().is_err());
    }
}
