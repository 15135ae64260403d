//! What a webhook receives: a JSON object naming the registry, with a batch of alerts,
//! each tagged by its `kind`:
//!
//! ```json
//! {"registry": "…", "sent_at_ms": 1767000000000, "alerts": [
//!   {"kind": "lease_lost", "service": "acme/echo", "lease": "…", "reason": "expired",
//!    "interfaces": ["courier:echo/echo@0.1.0"], "seq": 42, "at_ms": 1767000000000}]}
//! ```

use serde::Serialize;
use std::collections::BTreeMap;

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Alert {
    /// A lease of a watched service ran out or was revoked.
    LeaseLost {
        /// The service name.
        service: String,
        /// The lease (hex).
        lease: String,
        /// `expired` or `revoked`.
        reason: String,
        /// The interfaces it exported.
        interfaces: Vec<String>,
        /// The event's sequence number.
        seq: u64,
        /// When it happened, ms since the Unix epoch.
        at_ms: u64,
    },
    /// A lease was revoked (by an operator, or with its vendor's key).
    Revocation {
        /// The service name.
        service: String,
        /// The lease (hex).
        lease: String,
        /// The interfaces it exported.
        interfaces: Vec<String>,
        /// The event's sequence number.
        seq: u64,
        /// When it happened.
        at_ms: u64,
    },
    /// A service got many failed outcomes in a short time.
    FailureSpike {
        /// The service name.
        service: String,
        /// Failed outcomes counted.
        failures: u32,
        /// Within this many seconds.
        window_s: u64,
        /// When the spike was seen.
        at_ms: u64,
    },
    /// Admission refused more than the configured rate in the last second.
    AdmissionRefusals {
        /// Refusals in the last second.
        per_second: u64,
        /// The configured rate.
        threshold: u64,
        /// Refusals in that second by cause (as `/metrics` labels them).
        causes: BTreeMap<&'static str, u64>,
        /// When it was seen.
        at_ms: u64,
    },
    /// A staged rollout halted on its own.
    RolloutHalted {
        /// The rollout's number.
        rollout: u64,
        /// The service name.
        service: String,
        /// The version it was rolling out.
        version: String,
        /// Why it halted.
        reason: String,
        /// Waves that had opened.
        waves_opened: usize,
        /// When it was seen.
        at_ms: u64,
    },
    /// Events the notifier could not read (the event ring had moved past them), so alerts
    /// for them may be missing.
    Missed {
        /// First sequence number missed.
        from_seq: u64,
        /// First sequence number read again.
        to_seq: u64,
        /// When it was noticed.
        at_ms: u64,
    },
}

/// One post.
#[derive(Debug, Serialize)]
pub(crate) struct Payload<'a> {
    /// The registry's id.
    pub registry: &'a str,
    /// When the post was made (retries keep the first time).
    pub sent_at_ms: u64,
    /// The alerts, oldest first.
    pub alerts: &'a [Alert],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_tagged_by_kind() {
        let a = Alert::FailureSpike {
            service: "acme/echo".into(),
            failures: 5,
            window_s: 60,
            at_ms: 7,
        };
        let json = serde_json::to_value(Payload {
            registry: "r1",
            sent_at_ms: 9,
            alerts: &[a],
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"registry": "r1", "sent_at_ms": 9, "alerts": [
                {"kind": "failure_spike", "service": "acme/echo", "failures": 5,
                 "window_s": 60, "at_ms": 7}]})
        );
    }
}
