//! A child registry's side of the hierarchy: the rules that say which of its parent's
//! registrations it mirrors, the approvals that rules may ask for, its link's state, and
//! the reports it sends up.

use crate::signing::VendorKey;
use serde::{Deserialize, Serialize};

/// A child administrator's rule: the parent's registrations it matches are mirrored, at
/// once or once an operator approved each new version. A registration no rule matches is
/// not mirrored; the first matching rule (lowest id) decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRule {
    /// Its number (given by the child when the rule is added).
    pub id: u32,
    /// Service names it matches: a name, a prefix ending in `*`, or `*` for all.
    pub name: String,
    /// Only registrations signed by this vendor key.
    pub vendor: Option<VendorKey>,
    /// Only registrations that export this interface (`ns:pkg/iface`, any version).
    pub interface: Option<String>,
    /// Only proxy versions that meet this requirement (semver, e.g. `>=2, <3`).
    pub version: Option<String>,
    /// Each new (vendor, name, version) waits for an operator's approval.
    pub approval: bool,
}

impl MirrorRule {
    /// Whether the rule matches a registration of `name` by `vendor`, at proxy `version`,
    /// exporting `interfaces` (versioned names such as `ns:pkg/iface@1.0.0`).
    pub fn matches(
        &self,
        name: &str,
        vendor: &VendorKey,
        version: &str,
        interfaces: &[String],
    ) -> bool {
        let name_ok = match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.name == name,
        };
        let vendor_ok = self.vendor.is_none_or(|v| v == *vendor);
        let interface_ok = self.interface.as_deref().is_none_or(|want| {
            interfaces
                .iter()
                .any(|i| i.split_once('@').map_or(i.as_str(), |(n, _)| n) == want)
        });
        let version_ok = self.version.as_deref().is_none_or(|req| {
            match (
                semver::VersionReq::parse(req),
                semver::Version::parse(version),
            ) {
                (Ok(r), Ok(v)) => r.matches(&v),
                _ => false,
            }
        });
        name_ok && vendor_ok && interface_ok && version_ok
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalState {
    /// Waiting for an operator.
    Pending,
    /// Approved: mirrored while the parent has it.
    Approved,
    /// Declined: never mirrored.
    Declined,
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Declined => "declined",
        })
    }
}

/// One (vendor, service, version) of the parent's that a rule asked approval for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The vendor key.
    pub vendor: VendorKey,
    /// The service name.
    pub name: String,
    /// The proxy version.
    pub version: String,
    /// Where it stands.
    pub state: ApprovalState,
    /// The rule that asked for it.
    pub rule: u32,
    /// When the child first saw it (or an operator decided), ms since the Unix epoch.
    pub at_ms: u64,
}

/// Where a child's copy of its parent stands (also the sync part of its reports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorStatus {
    /// The parent's address (`None`: this registry has no parent).
    pub parent: Option<String>,
    /// Whether the link to the parent is up (welcomed and following its feed).
    pub connected: bool,
    /// The next event number of the parent's feed to apply (the durable anchor).
    pub anchor: Option<u64>,
    /// The parent's feed position as last seen.
    pub parent_seq: Option<u64>,
    /// Registrations mirrored from the parent.
    pub mirrored: u64,
    /// Of them, past their lease's last known end (served in the grace, cut off).
    pub past_end: u64,
    /// Approvals waiting for an operator.
    pub pending: u64,
    /// Manifests from the parent whose signature failed (dropped).
    pub bad_signatures: u64,
    /// Whole copies of the parent's catalog made (the first contact, then each gap).
    pub copies: u64,
    /// Components fetched from the parent (each once).
    pub fetched: u64,
    /// Bytes received from the parent over the link since this registry started
    /// (catalog copies, the feed, components, as UDP payload).
    pub received_bytes: u64,
}

/// One service's activity at a child, since its last report the parent acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceActivity {
    /// The service name.
    pub service: String,
    /// Proxies handed out to the child's clients.
    pub handed_out: u64,
    /// Calls its clients reported.
    pub calls: u64,
    /// Of them, failed.
    pub failed: u64,
}

/// What a child tells its parent ([`crate::Request::ChildReport`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildReport {
    /// The child's sync state.
    pub status: MirrorStatus,
    /// Activity per service since the last acknowledged report (the parent adds it to its
    /// usage figures, under the child's key).
    pub activity: Vec<ServiceActivity>,
}
