//! What a successful call returns: the answer, the candidate that ran, the ones skipped,
//! the run's logs and the call's phase timings.

use super::{PhaseTimings, Rejection};
use crate::invoke::Answer;
use crate::sandbox::RunLogs;
use courier_protocol::{ContentHash, LeaseId, SpkiPin, VendorKey};
use wasmtime::component::Val;

/// The candidate that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Its lease.
    pub lease: LeaseId,
    /// Service name.
    pub name: String,
    /// Proxy version.
    pub version: String,
    /// The vendor key that signed it.
    pub vendor: VendorKey,
    /// The matched interface (with version).
    pub interface: String,
    /// The component that ran.
    pub component: ContentHash,
    /// The provider endpoints it could reach.
    pub endpoints: Vec<String>,
    /// The provider's pin.
    pub provider_pin: SpkiPin,
}

/// The result of a successful call.
#[derive(Debug)]
pub struct CallReport {
    /// `interface@version.function` that ran.
    pub function: String,
    /// The candidate that ran.
    pub chosen: Chosen,
    /// Candidates skipped before it, with reasons.
    pub rejected: Vec<Rejection>,
    /// The answer in WAVE (the proxy's own error told apart).
    pub answer: Answer,
    /// The returned values.
    pub values: Vec<Val>,
    /// stdout/stderr, operator transcript, provider calls.
    pub logs: RunLogs,
    /// Phase timings.
    pub timings: PhaseTimings,
    /// The prerequisites installed before it ran, in the order installed (deepest first).
    pub installed: Vec<super::Installed>,
}

/// The result of a successful typed call.
#[derive(Debug)]
pub struct TypedReport<R> {
    /// The typed results.
    pub value: R,
    /// The candidate that ran.
    pub chosen: Chosen,
    /// Candidates skipped before it.
    pub rejected: Vec<Rejection>,
    /// Logs of the run.
    pub logs: RunLogs,
    /// Phase timings.
    pub timings: PhaseTimings,
}
