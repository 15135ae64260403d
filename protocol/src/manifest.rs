//! The proxy manifest: what a vendor signs about a proxy component, and its checks.

use crate::hash::{ContentHash, SpkiPin};
use crate::interface::InterfaceName;
use crate::limits::manifest as limits;
use crate::signing::VendorKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One exported service interface and the functions it really has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// Full interface name with version, e.g. `courier:echo/echo@0.1.0`.
    pub interface: String,
    /// Function names exported by that interface, sorted.
    pub functions: Vec<String>,
}

/// What a vendor states, and signs, about one proxy component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The service name (e.g. `acme/echo`): it belongs to the vendor key that first
    /// registered it.
    pub name: String,
    /// The proxy's version (semver).
    pub version: String,
    /// Service interfaces the component exports.
    pub exports: Vec<Export>,
    /// Host interfaces the component imports: the capabilities it asks the client for.
    pub imports: Vec<String>,
    /// Free-form attributes the client can match on.
    pub attributes: BTreeMap<String, String>,
    /// `host:port` addresses of the vendor's provider.
    pub endpoints: Vec<String>,
    /// Pin of the provider's TLS key: the only peer the proxy may reach.
    pub provider_pin: SpkiPin,
    /// Issued at, milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
    /// Not valid after, milliseconds since the Unix epoch.
    pub not_after_ms: u64,
    /// SHA-256 of the component bytes.
    pub component_hash: ContentHash,
    /// Length of the component in bytes (a download stops there).
    pub component_size: u64,
    /// The vendor's ed25519 public key, which signs this manifest.
    pub vendor_key: VendorKey,
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A field breaks a size or shape rule.
    #[error("invalid manifest field {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `not_after` has passed.
    #[error("manifest expired {ago_s}s ago")]
    Expired {
        /// Seconds since it expired.
        ago_s: u64,
    },
    /// `issued_at` is in the future beyond the allowed clock skew.
    #[error("manifest is not valid yet (issued {ahead_s}s in the future)")]
    NotYetValid {
        /// Seconds ahead of the checker's clock.
        ahead_s: u64,
    },
    /// The component bytes do not hash to what the manifest says.
    #[error("component hash mismatch: manifest says {expected}, bytes hash to {actual}")]
    HashMismatch {
        /// From the manifest.
        expected: ContentHash,
        /// Of the bytes at hand.
        actual: ContentHash,
    },
    /// The component length differs from the manifest.
    #[error("component size mismatch: manifest says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// From the manifest.
        expected: u64,
        /// Of the bytes at hand.
        actual: u64,
    },
}

/// Allowed clock skew when checking `issued_at`.
pub const CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

fn invalid(field: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn check_str(field: &'static str, s: &str) -> Result<(), ManifestError> {
    if s.is_empty() || s.len() > limits::STRING_LEN {
        return Err(invalid(
            field,
            format!("length {} not in 1..={}", s.len(), limits::STRING_LEN),
        ));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

impl Manifest {
    /// Checks shape and size rules (not time, not signature).
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.name.is_empty() || self.name.len() > limits::NAME_LEN {
            return Err(invalid(
                "name",
                format!("length must be 1..={}", limits::NAME_LEN),
            ));
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(invalid(
                "name",
                "only ASCII letters, digits and -_./ are allowed",
            ));
        }
        semver::Version::parse(&self.version).map_err(|e| invalid("version", e.to_string()))?;
        if self.exports.is_empty() || self.exports.len() > limits::EXPORTS {
            return Err(invalid(
                "exports",
                format!("must name 1..={} interfaces", limits::EXPORTS),
            ));
        }
        for export in &self.exports {
            let name: InterfaceName = export
                .interface
                .parse()
                .map_err(|e: crate::InterfaceNameError| invalid("exports", e.to_string()))?;
            if name.version.is_none() {
                return Err(invalid(
                    "exports",
                    format!("{} has no @version", export.interface),
                ));
            }
            if export.functions.len() > limits::FUNCTIONS {
                return Err(invalid("exports", "too many functions"));
            }
            for f in &export.functions {
                check_str("exports.functions", f)?;
            }
        }
        if self.imports.len() > limits::IMPORTS {
            return Err(invalid("imports", "too many imports"));
        }
        for i in &self.imports {
            check_str("imports", i)?;
        }
        if self.attributes.len() > limits::ATTRIBUTES {
            return Err(invalid("attributes", "too many attributes"));
        }
        for (k, v) in &self.attributes {
            check_str("attributes", k)?;
            if v.len() > limits::STRING_LEN {
                return Err(invalid("attributes", "value too long"));
            }
        }
        if self.endpoints.is_empty() || self.endpoints.len() > limits::ENDPOINTS {
            return Err(invalid(
                "endpoints",
                format!("must list 1..={}", limits::ENDPOINTS),
            ));
        }
        for e in &self.endpoints {
            check_str("endpoints", e)?;
        }
        if self.not_after_ms <= self.issued_at_ms {
            return Err(invalid("not_after_ms", "must be after issued_at_ms"));
        }
        if self.component_size == 0 || self.component_size > limits::COMPONENT_SIZE {
            return Err(invalid(
                "component_size",
                format!("must be 1..={}", limits::COMPONENT_SIZE),
            ));
        }
        Ok(())
    }

    /// Checks the validity window against `now_ms` (milliseconds since the Unix epoch).
    pub fn check_times(&self, now_ms: u64) -> Result<(), ManifestError> {
        if now_ms >= self.not_after_ms {
            return Err(ManifestError::Expired {
                ago_s: (now_ms - self.not_after_ms) / 1000,
            });
        }
        if self.issued_at_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
            return Err(ManifestError::NotYetValid {
                ahead_s: (self.issued_at_ms - now_ms) / 1000,
            });
        }
        Ok(())
    }

    /// Checks that `component` is exactly the bytes the manifest commits to.
    pub fn check_component(&self, component: &[u8]) -> Result<(), ManifestError> {
        if component.len() as u64 != self.component_size {
            return Err(ManifestError::SizeMismatch {
                expected: self.component_size,
                actual: component.len() as u64,
            });
        }
        let actual = ContentHash::of(component);
        if actual != self.component_hash {
            return Err(ManifestError::HashMismatch {
                expected: self.component_hash,
                actual,
            });
        }
        Ok(())
    }

    /// The parsed semantic version (validated by [`Manifest::validate`]).
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(vendor: VendorKey, component: &[u8]) -> Manifest {
        Manifest {
            name: "acme/echo".into(),
            version: "1.2.3".into(),
            exports: vec![Export {
                interface: "courier:echo/echo@0.1.0".into(),
                functions: vec!["say".into()],
            }],
            imports: vec!["courier:proxy/provider@0.1.0".into()],
            attributes: [("region".to_string(), "eu".to_string())].into(),
            endpoints: vec!["127.0.0.1:7901".into()],
            provider_pin: SpkiPin([7; 32]),
            issued_at_ms: 1_000_000,
            not_after_ms: 2_000_000,
            component_hash: ContentHash::of(component),
            component_size: component.len() as u64,
            vendor_key: vendor,
        }
    }

    #[test]
    fn validates_shape() {
        let m = sample(VendorKey([1; 32]), b"abc");
        m.validate().unwrap();
        let mut bad = m.clone();
        bad.exports[0].interface = "courier:echo/echo".into();
        assert!(matches!(
            bad.validate(),
            Err(ManifestError::Invalid {
                field: "exports",
                ..
            })
        ));
        let mut bad = m.clone();
        bad.version = "one".into();
        assert!(bad.validate().is_err());
        let mut bad = m.clone();
        bad.endpoints.clear();
        assert!(bad.validate().is_err());
        let mut bad = m;
        bad.not_after_ms = bad.issued_at_ms;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn checks_times_and_component() {
        let m = sample(VendorKey([1; 32]), b"abc");
        m.check_times(1_500_000).unwrap();
        assert!(matches!(
            m.check_times(2_000_000),
            Err(ManifestError::Expired { .. })
        ));
        assert!(matches!(
            m.check_times(1),
            Err(ManifestError::NotYetValid { .. })
        ));
        m.check_component(b"abc").unwrap();
        assert!(matches!(
            m.check_component(b"abd"),
            Err(ManifestError::HashMismatch { .. })
        ));
        assert!(matches!(
            m.check_component(b"ab"),
            Err(ManifestError::SizeMismatch { .. })
        ));
    }
}
