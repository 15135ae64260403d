//! How fresh a vendor's freshness statement must be for a client to accept a candidate
//! (`[freshness]` in `policy.toml`). The window is the client's to choose: the statement's
//! own expiry bounds it from above, `max_age` may make it shorter.

use courier_protocol::FRESHNESS_SKEW_MS;
use std::time::Duration;

/// The oldest statement a client accepts by default: ten minutes (a lease keeper publishes
/// one every five, each valid ten).
pub const DEFAULT_FRESHNESS_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// What candidates' freshness statements must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessPolicy {
    /// Refuse a candidate that comes without a statement (default). When false, such a
    /// candidate is let through; a statement that does come is checked all the same.
    pub required: bool,
    /// The oldest statement accepted, by this machine's clock (default
    /// [`DEFAULT_FRESHNESS_MAX_AGE`]); an expired one is refused whatever this says.
    pub max_age: Duration,
    /// How far the vendor's clock may be from this machine's (default a minute).
    pub skew: Duration,
}

impl Default for FreshnessPolicy {
    /// Required, at most ten minutes old, a minute of skew.
    fn default() -> Self {
        Self {
            required: true,
            max_age: DEFAULT_FRESHNESS_MAX_AGE,
            skew: Duration::from_millis(FRESHNESS_SKEW_MS),
        }
    }
}

impl FreshnessPolicy {
    /// The default policy, but letting through candidates that come without a statement
    /// (for registries whose vendors publish none).
    pub fn optional() -> Self {
        Self {
            required: false,
            ..Self::default()
        }
    }

    /// `max_age` in milliseconds (saturating).
    pub(crate) fn max_age_ms(&self) -> u64 {
        u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX)
    }

    /// `skew` in milliseconds (saturating).
    pub(crate) fn skew_ms(&self) -> u64 {
        u64::try_from(self.skew.as_millis()).unwrap_or(u64::MAX)
    }
}
