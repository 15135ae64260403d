//! Staged rollouts: an operator opens a staged version of a service to clients wave by
//! wave, halts it when too many of them report failures, and has those that got it undo it.

use super::leases::LeaseId;
use super::query::Candidate;
use crate::signing::VendorKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most waves in a rollout.
pub const MAX_WAVES: usize = 16;
/// Longest undo call text.
pub const MAX_UNDO_CALL: usize = 1_024;
/// The manifest attribute in which a vendor signs how to undo a version: a function of its
/// proxy and the arguments, e.g. `remove("fix-1")`, or with the interface,
/// `courier:patch/delivery.remove("fix-1")`. Only a signed call is ever run to undo a
/// version: the registry and its operators cannot choose what a client runs.
pub const UNDO_ATTRIBUTE: &str = "undo";

/// The undo call `manifest` signs (its [`UNDO_ATTRIBUTE`]), with its interface
/// (`ns:pkg/iface@1.0.0.remove("fix-1")`): `None` when it signs none, or one that is not a
/// function call of an interface it exports.
pub fn signed_undo_call(manifest: &crate::Manifest) -> Option<String> {
    let undo = manifest.attributes.get(UNDO_ATTRIBUTE)?;
    let head = undo.split('(').next()?;
    let function = head.rsplit_once('.').map_or(head, |(_, f)| f);
    if undo.len() > MAX_UNDO_CALL
        || !undo.ends_with(')')
        || function.is_empty()
        || !function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return None;
    }
    let names = |i: &str, e: &str| i == e || e.split_once('@').is_some_and(|(n, _)| n == i);
    match head.rsplit_once('.') {
        Some((iface, _)) => manifest
            .exports
            .iter()
            .any(|e| names(iface, &e.interface))
            .then(|| undo.clone()),
        None => Some(format!("{}.{undo}", manifest.exports.first()?.interface)),
    }
}
/// Longest delay between waves: 30 days.
pub const MAX_WAVE_DELAY_MS: u64 = 30 * 24 * 3_600_000;
/// Most directives one answer holds.
pub const MAX_DIRECTIVES: usize = 64;

/// Which clients a wave takes: a share of all clients, or a group named by an attribute or
/// a fact of their shared system data. A client is in the first wave that takes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WaveSelector {
    /// The clients whose place (a hash of the rollout and the client key, uniform over
    /// 0..1,000,000) is below this many parts per million: `25%` takes a quarter of all
    /// clients, those of earlier share waves included.
    Share {
        /// Parts per million, at most 1,000,000.
        ppm: u32,
    },
    /// The clients whose attribute or shared fact `key` is `value` (a canary group).
    Group {
        /// The attribute or fact.
        key: String,
        /// Its value.
        value: String,
    },
}

/// Why a wave selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad wave {0:?}: expected a share such as 5% or 0.5%, or a group such as ring=canary")]
pub struct BadWave(pub String);

impl FromStr for WaveSelector {
    type Err = BadWave;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadWave(s.to_string());
        if let Some(pct) = s.strip_suffix('%') {
            let (whole, frac) = pct.split_once('.').unwrap_or((pct, ""));
            if whole.is_empty()
                || frac.len() > 4
                || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
            {
                return Err(bad());
            }
            let whole: u64 = whole.parse().map_err(|_| bad())?;
            let frac: u64 = format!("{frac:0<4}").parse().map_err(|_| bad())?;
            let ppm = whole
                .checked_mul(10_000)
                .and_then(|w| w.checked_add(frac))
                .filter(|p| *p > 0 && *p <= 1_000_000)
                .ok_or_else(bad)?;
            return Ok(WaveSelector::Share { ppm: ppm as u32 });
        }
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() && k.len() <= 64 && v.len() <= 256 => {
                Ok(WaveSelector::Group {
                    key: k.to_string(),
                    value: v.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for WaveSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSelector::Share { ppm } if ppm % 10_000 == 0 => write!(f, "{}%", ppm / 10_000),
            WaveSelector::Share { ppm } => {
                let s = format!("{}.{:04}", ppm / 10_000, ppm % 10_000);
                write!(f, "{}%", s.trim_end_matches('0'))
            }
            WaveSelector::Group { key, value } => write!(f, "{key}={value}"),
        }
    }
}

/// What an operator asks for when starting a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSpec {
    /// The service name.
    pub name: String,
    /// The staged proxy version to roll out (registered with `staged`, signed by the
    /// name's owner or a key granted it).
    pub version: String,
    /// The waves, in order (at most [`MAX_WAVES`]); the first opens when the rollout
    /// starts, and the last is `100%`.
    pub waves: Vec<WaveSelector>,
    /// How long each wave stays open before the next may open.
    pub delay_ms: u64,
    /// Most failures, in parts per million of the reports from the waves opened so far,
    /// before the rollout halts.
    pub max_failure_ppm: u32,
    /// Reports the open waves need before the next wave opens (clients that never report
    /// count as unknown, never as successes).
    pub min_reports: u32,
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutState {
    /// Waves open as their delays pass.
    Running,
    /// An operator paused it: the open waves stay open, no new one opens.
    Paused,
    /// Too many failures: the version is hidden from every client again.
    Halted {
        /// The failures that halted it.
        reason: String,
    },
    /// An operator aborted it: hidden again, as when halted.
    Aborted,
    /// Every wave opened and the last (`100%`) ran its delay: every client sees the
    /// version, anonymous ones included. It stays the vendor's staged registration (its
    /// vendor publishes it without `staged` to make it the registration of record).
    Complete,
}

impl RolloutState {
    /// Whether the rollout is over (halted, aborted or complete).
    pub fn is_over(&self) -> bool {
        !matches!(self, RolloutState::Running | RolloutState::Paused)
    }
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutState::Running => f.write_str("running"),
            RolloutState::Paused => f.write_str("paused"),
            RolloutState::Halted { reason } => write!(f, "halted: {reason}"),
            RolloutState::Aborted => f.write_str("aborted"),
            RolloutState::Complete => f.write_str("complete"),
        }
    }
}

/// One wave of a rollout, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveStatus {
    /// Its selector.
    pub selector: WaveSelector,
    /// When it opened (ms since the Unix epoch), if it has.
    pub opened_at_ms: Option<u64>,
    /// Registered clients it takes now.
    pub clients: u32,
    /// Of them, those whose last report of the version was a success.
    pub succeeded: u32,
    /// Those whose last report of the version was a failure.
    pub failed: u32,
    /// Of those that reported, those that undid the version after a halt or an abort.
    pub undone: u32,
    /// Those whose undo failed.
    pub undo_failed: u32,
}

/// A rollout, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Its number.
    pub id: u64,
    /// What was asked.
    pub spec: RolloutSpec,
    /// The staged registration's lease.
    pub lease: LeaseId,
    /// Its vendor key.
    pub vendor: VendorKey,
    /// Where it stands.
    pub state: RolloutState,
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// When the next wave may open, if one is due.
    pub next_at_ms: Option<u64>,
    /// Each wave.
    pub waves: Vec<WaveStatus>,
}

/// Something the registry asks a client to do at its next contact: a version it ran was
/// withdrawn (its rollout halted or was aborted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directive {
    /// The rollout it comes from.
    pub rollout: u64,
    /// The service.
    pub name: String,
    /// The version the client got.
    pub version: String,
    /// The undo call the version's signed manifest names ([`signed_undo_call`]), for
    /// operators and logs: the client takes the call from the manifest it verifies, never
    /// from here. `None`: nothing to run; the client only goes back to the version before.
    pub call: Option<String>,
    /// The version's registration (the client verifies it as any candidate).
    pub candidate: Candidate,
}

/// A client's report of an undo it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoReport {
    /// The rollout.
    pub rollout: u64,
    /// Whether the undo call succeeded.
    pub ok: bool,
    /// One line about it.
    pub detail: String,
}

/// A rollout as the registry stores it (its clients' marks are stored apart, one row each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// Its number.
    pub id: u64,
    /// What was asked.
    pub spec: RolloutSpec,
    /// The staged registration's lease.
    pub lease: LeaseId,
    /// Its vendor key.
    pub vendor: VendorKey,
    /// Where it stands.
    pub state: RolloutState,
    /// When it started (ms since the Unix epoch).
    pub started_at_ms: u64,
    /// When each wave opened so far, in order (ms since the Unix epoch).
    pub opened_at_ms: Vec<u64>,
    /// When it was last resumed, if ever: the open wave's delay counts from then.
    pub resumed_at_ms: Option<u64>,
    /// The staged version's signed manifest, kept (committed with the start) so that the
    /// clients that ran it are told of its withdrawal even after its lease ended.
    pub manifest: Option<crate::SignedManifest>,
}

/// What one client did with a rollout's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RolloutMark {
    /// Its last report of the version was a success.
    Succeeded,
    /// Its last report of the version was a failure.
    Failed,
    /// It undid the version, as asked; `failed`: its last report of the version was a
    /// failure.
    Undone {
        /// Whether its last report of the version was a failure.
        failed: bool,
    },
    /// Its undo failed; `failed` as for [`RolloutMark::Undone`].
    UndoFailed {
        /// Whether its last report of the version was a failure.
        failed: bool,
    },
}

impl RolloutMark {
    /// Whether the client's last report of the version was a failure.
    pub fn failed(self) -> bool {
        match self {
            RolloutMark::Succeeded => false,
            RolloutMark::Failed => true,
            RolloutMark::Undone { failed } | RolloutMark::UndoFailed { failed } => failed,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wave_selectors_parse_and_print_back() {
        for (text, want) in [
            ("5%", WaveSelector::Share { ppm: 50_000 }),
            ("100%", WaveSelector::Share { ppm: 1_000_000 }),
            ("0.5%", WaveSelector::Share { ppm: 5_000 }),
            ("0.0001%", WaveSelector::Share { ppm: 1 }),
            (
                "ring=canary",
                WaveSelector::Group {
                    key: "ring".into(),
                    value: "canary".into(),
                },
            ),
        ] {
            let got: WaveSelector = text.parse().unwrap();
            assert_eq!(got, want);
            assert_eq!(got.to_string(), text);
        }
        for bad in [
            "", "0%", "101%", "5", "=x", "x=", "-1%", "1.00001%", "%", ".5%",
        ] {
            assert!(bad.parse::<WaveSelector>().is_err(), "{bad}");
        }
    }
}
