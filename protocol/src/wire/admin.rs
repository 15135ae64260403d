//! Operators' actions on a running registry, and the audit log each of them leaves.

use super::{LeaseId, MirrorRule, RolloutSpec};
use crate::operator::SignedOperatorStatement;
use crate::signing::VendorKey;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An operator's action. Each needs a connection authenticated with an operator key and
/// leaves an [`AuditEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAction {
    /// Revokes one lease: its proxy stops matching at once, and its vendor is told why on
    /// its next renewal.
    RevokeLease {
        /// The lease.
        lease: LeaseId,
        /// Why, for the vendor and the audit log.
        reason: String,
    },
    /// Bans a vendor key from a service name: its registration of the name goes, and it
    /// may not register it again until allowed.
    Ban {
        /// The service name.
        name: String,
        /// The vendor key.
        key: VendorKey,
        /// Why.
        reason: String,
    },
    /// Lifts a ban.
    Allow {
        /// The service name.
        name: String,
        /// The vendor key.
        key: VendorKey,
    },
    /// Lets a key register (and so replace, renew, cancel its own registrations of) a name;
    /// an unowned name becomes the key's.
    Grant {
        /// The service name.
        name: String,
        /// The vendor key.
        key: VendorKey,
    },
    /// Drains a service: no new registrations or renewals of the name, so its leases run
    /// out.
    Drain {
        /// The service name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Ends a drain.
    Undrain {
        /// The service name.
        name: String,
    },
    /// Revokes a vendor key with a statement the operator signs, which clients that trust
    /// the operator key follow too.
    RevokeKey(SignedOperatorStatement),
    /// Allows a child registry's key (again: renames it).
    AllowChild {
        /// The child's key.
        key: VendorKey,
        /// Its name, for the operator.
        name: String,
    },
    /// Takes a child registry's permission away: its next hello is refused.
    DenyChild {
        /// The child's key.
        key: VendorKey,
    },
    /// A child registry: adds a rule saying what it mirrors from its parent (the id given
    /// is ignored; the next free one is used).
    AddMirrorRule(MirrorRule),
    /// A child registry: removes a rule (what it mirrored stays until its lease ends or
    /// the next copy of the parent's catalog).
    RemoveMirrorRule {
        /// The rule's id.
        id: u32,
    },
    /// A child registry: approves a (vendor, service, version) of the parent's.
    Approve {
        /// The vendor key.
        vendor: VendorKey,
        /// The service name.
        name: String,
        /// The proxy version.
        version: String,
    },
    /// A child registry: declines one (it is not mirrored, or no longer).
    Decline {
        /// The vendor key.
        vendor: VendorKey,
        /// The service name.
        name: String,
        /// The proxy version.
        version: String,
    },
    /// Starts a rollout of a staged version; its first wave opens at once.
    StartRollout(RolloutSpec),
    /// Pauses a service's running rollout: no wave opens until it is resumed.
    PauseRollout {
        /// The service name.
        name: String,
    },
    /// Resumes a paused rollout (its delay counts from the resumption).
    ResumeRollout {
        /// The service name.
        name: String,
    },
    /// Aborts a service's rollout: the version is hidden again, and undone where the
    /// rollout says how.
    AbortRollout {
        /// The service name.
        name: String,
    },
}

impl fmt::Display for AdminAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAction::RevokeLease { lease, reason } => {
                write!(f, "revoke lease {lease} ({reason})")
            }
            AdminAction::Ban { name, key, reason } => write!(f, "ban {key} from {name} ({reason})"),
            AdminAction::Allow { name, key } => write!(f, "allow {key} for {name}"),
            AdminAction::Grant { name, key } => write!(f, "grant {name} to {key}"),
            AdminAction::Drain { name, reason } => write!(f, "drain {name} ({reason})"),
            AdminAction::Undrain { name } => write!(f, "undrain {name}"),
            AdminAction::AllowChild { key, name } => write!(f, "allow child {name} ({key})"),
            AdminAction::DenyChild { key } => write!(f, "deny child {key}"),
            AdminAction::AddMirrorRule(r) => write!(
                f,
                "add mirror rule {} for {}{}",
                r.id,
                r.name,
                if r.approval {
                    ", held for approval"
                } else {
                    ""
                }
            ),
            AdminAction::RemoveMirrorRule { id } => write!(f, "remove mirror rule {id}"),
            AdminAction::Approve {
                vendor,
                name,
                version,
            } => write!(f, "approve {name}@{version} ({vendor})"),
            AdminAction::Decline {
                vendor,
                name,
                version,
            } => write!(f, "decline {name}@{version} ({vendor})"),
            AdminAction::StartRollout(spec) => {
                let waves: Vec<String> = spec.waves.iter().map(|w| w.to_string()).collect();
                write!(
                    f,
                    "start rollout of {}@{} in waves {}",
                    spec.name,
                    spec.version,
                    waves.join(",")
                )
            }
            AdminAction::PauseRollout { name } => write!(f, "pause rollout of {name}"),
            AdminAction::ResumeRollout { name } => write!(f, "resume rollout of {name}"),
            AdminAction::AbortRollout { name } => write!(f, "abort rollout of {name}"),
            AdminAction::RevokeKey(s) => match s.peek() {
                Ok(st) => write!(f, "revoke key {}", st.subject),
                Err(_) => f.write_str("revoke key <unreadable statement>"),
            },
        }
    }
}

/// One operator action, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number: strictly increasing over the registry's life.
    pub seq: u64,
    /// When it was done, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The operator key that did it; `None` for the owner of the data directory, acting
    /// while the registry was stopped.
    pub operator: Option<VendorKey>,
    /// What was done.
    pub action: AdminAction,
}
