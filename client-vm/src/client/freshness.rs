//! Check 4 of the order in `vet`: the freshness statement served with a candidate (TUF's
//! timestamp role). Its vendor signs, every few minutes, which version of each of its
//! services is current; the registry serves the latest with every candidate but cannot make
//! one. A candidate is refused when its statement is missing (unless the policy lets that
//! through), does not verify, is signed by a key that does not act for the candidate's
//! vendor, is expired or older than the policy's window, does not name the service, or
//! names a newer version than the one offered (unless the service is pinned). So a registry
//! that freezes what it serves is refused once the statement lapses, and one that rolls back
//! is caught at a client's first contact. Each refusal names the service; a stale one its
//! age too.

use super::trusted_keys::TrustedKeys;
use super::verified::VerifiedCache;
use crate::policy::FreshnessPolicy;
use courier_protocol::{
    Candidate, FreshnessError, FreshnessStatement, FreshnessTimeError, Manifest, VendorKey,
    Verified,
};
use std::fmt;
use std::time::Duration;

/// Why a candidate's freshness statement does not let it through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreshnessRefusal {
    /// The registry served no statement with the candidate, and the policy requires one.
    #[error("{service}: no freshness statement from its vendor (required by the policy)")]
    Missing {
        /// The service offered.
        service: String,
    },
    /// The statement does not verify (signature, encoding, key or shape).
    #[error("{service}: {reason}")]
    Invalid {
        /// The service offered.
        service: String,
        /// Why it does not verify.
        reason: FreshnessError,
    },
    /// The statement is signed by a key that does not act for the candidate's vendor (not
    /// its key, nor a trusted key of its rotation chain or root for this service).
    #[error("{service}: freshness statement signed by {signer}, not by its vendor {vendor}")]
    Foreign {
        /// The service offered.
        service: String,
        /// The vendor key of the candidate's manifest.
        vendor: VendorKey,
        /// The key that signed the statement.
        signer: VendorKey,
    },
    /// The statement is expired, older than the policy's window, or from the future: a
    /// frozen registry replaying an old answer.
    #[error("{service}: stale freshness statement, {} old: {reason}", Age(*age))]
    Stale {
        /// The service offered.
        service: String,
        /// How old the statement is by this machine's clock.
        age: Duration,
        /// Which time check it fails.
        reason: FreshnessTimeError,
    },
    /// The statement does not name the service.
    #[error("{service}: its vendor's freshness statement does not name it")]
    NotNamed {
        /// The service offered.
        service: String,
    },
    /// The vendor says a newer version is current: the registry offers an older one (a
    /// rollback), and the service is not pinned.
    #[error("{service}: {offered} offered, but its vendor says {current} is current")]
    Outdated {
        /// The service offered.
        service: String,
        /// The version offered.
        offered: semver::Version,
        /// The version the vendor's statement names.
        current: semver::Version,
    },
}

impl FreshnessRefusal {
    /// The service the refused candidate offered.
    pub fn service(&self) -> &str {
        match self {
            Self::Missing { service }
            | Self::Invalid { service, .. }
            | Self::Foreign { service, .. }
            | Self::Stale { service, .. }
            | Self::NotNamed { service }
            | Self::Outdated { service, .. } => service,
        }
    }
}

/// A duration as minutes and seconds (`12m 5s`), or seconds alone below a minute.
struct Age(Duration);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        match (secs / 60, secs % 60) {
            (0, s) => write!(f, "{s}s"),
            (m, s) => write!(f, "{m}m {s}s"),
        }
    }
}

/// Checks `candidate`'s freshness statement for `manifest` (already verified, its vendor
/// trusted, within its validity) at `now_ms` under `policy`. Returns the version the vendor
/// states is current, if a statement came with it (the caller raises its rollback memory
/// with it), or `None` when none came and the policy lets that through. A service that is
/// `pinned` may be offered below the stated version. The statement's signature is checked
/// once per statement (`verified`); its times on every call.
pub(super) fn check(
    candidate: &Candidate,
    manifest: &Manifest,
    trust: &TrustedKeys,
    verified: &VerifiedCache<FreshnessStatement>,
    policy: &FreshnessPolicy,
    pinned: bool,
    now_ms: u64,
) -> Result<Option<semver::Version>, FreshnessRefusal> {
    let service = || manifest.name.clone();
    let Some(signed) = &candidate.freshness else {
        return if policy.required {
            Err(FreshnessRefusal::Missing { service: service() })
        } else {
            Ok(None)
        };
    };
    let statement = verified
        .verify(&signed.bytes, &signed.signature, || {
            signed.verify().map(Verified::into_inner)
        })
        .map_err(|reason| FreshnessRefusal::Invalid {
            service: service(),
            reason,
        })?;
    if !acts_for(&statement, manifest, trust, now_ms) {
        return Err(FreshnessRefusal::Foreign {
            service: service(),
            vendor: manifest.vendor_key,
            signer: statement.vendor,
        });
    }
    statement
        .check_time(now_ms, policy.max_age_ms(), policy.skew_ms())
        .map_err(|reason| FreshnessRefusal::Stale {
            service: service(),
            age: Duration::from_millis(statement.age_ms(now_ms)),
            reason,
        })?;
    let Some(current) = statement.version_of(&manifest.name) else {
        return Err(FreshnessRefusal::NotNamed { service: service() });
    };
    let offered = manifest.semver();
    if let Some(offered) = offered
        && offered < current
        && !pinned
    {
        return Err(FreshnessRefusal::Outdated {
            service: service(),
            offered,
            current,
        });
    }
    Ok(Some(current))
}

/// Whether the statement's key speaks for the manifest's vendor: it is the manifest's key,
/// or a key of the same rotation chain (or root) that may itself sign for the service now.
fn acts_for(
    statement: &FreshnessStatement,
    manifest: &Manifest,
    trust: &TrustedKeys,
    now_ms: u64,
) -> bool {
    let signer = &statement.vendor;
    if *signer == manifest.vendor_key {
        return true;
    }
    let store = trust.read();
    store.current(signer) == store.current(&manifest.vendor_key)
        && store.check_for(signer, &manifest.name, now_ms).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_minutes_and_seconds() {
        assert_eq!(Age(Duration::from_millis(59_999)).to_string(), "59s");
        assert_eq!(Age(Duration::from_secs(725)).to_string(), "12m 5s");
        let stale = FreshnessRefusal::Stale {
            service: "acme/echo".into(),
            age: Duration::from_secs(660),
            reason: FreshnessTimeError::TooOld {
                age_ms: 660_000,
                max_age_ms: 600_000,
            },
        };
        assert_eq!(stale.service(), "acme/echo");
        let text = stale.to_string();
        assert!(
            text.starts_with("acme/echo: stale freshness statement, 11m 0s old"),
            "{text}"
        );
    }
}
