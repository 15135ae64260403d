//! Operators' actions on the state: each is planned with its audit entry in the same batch,
//! so an action and its log commit together or not at all.

use super::{Change, Planned, RegistryState, is_service_name};
use crate::core::controls::remember_until;
use crate::core::lease_table::Millis;
use crate::errors::AdminError;
use crate::store::{Batch, Removal};
use courier_protocol::limits::MAX_REASON_LEN;
use courier_protocol::{AdminAction, AuditEntry, LeaseId, VendorKey};

impl RegistryState {
    /// Plans an operator's action. `operator` is the key the connection authenticated as
    /// (`None`: the data directory's owner, offline). A lease revocation or a ban retires
    /// the registrations it stops (event `revoked`) and remembers why, so that their
    /// vendors learn it on their next renewal.
    pub fn plan_admin(
        &self,
        now: Millis,
        operator: Option<VendorKey>,
        action: AdminAction,
    ) -> Result<Planned<Admin>, AdminError> {
        let mut retire = Vec::new();
        let mut declined = Vec::new();
        let mut batch = Batch::default();
        let until = remember_until(now, self.wall_base_ms, self.config.policy.max_ttl_ms);
        match &action {
            AdminAction::RevokeLease { lease, reason } => {
                check_reason(reason)?;
                if self.table.remaining(lease, now).is_none() || self.catalog.get(lease).is_none() {
                    return Err(AdminError::UnknownLease(*lease));
                }
                retire.push((*lease, reason.clone()));
            }
            AdminAction::Ban { name, key, reason } => {
                check_name(name)?;
                check_reason(reason)?;
                batch.bans.push((name.clone(), *key, reason.clone()));
                let why = format!("{key} is banned from {name}: {reason}");
                retire.extend(
                    self.catalog
                        .iter()
                        .filter(|r| *r.name == **name && *r.vendor == *key)
                        .map(|r| (r.lease, why.clone())),
                );
            }
            AdminAction::Allow { name, key } => {
                check_name(name)?;
                batch.unbans.push((name.clone(), *key));
            }
            AdminAction::Grant { name, key } => {
                check_name(name)?;
                if self.catalog.owner(name).is_some() {
                    batch.grants.push((name.clone(), *key));
                } else {
                    batch.names.push((name.clone(), *key));
                }
            }
            AdminAction::Drain { name, reason } => {
                check_name(name)?;
                check_reason(reason)?;
                batch.drains.push((name.clone(), reason.clone()));
            }
            AdminAction::Undrain { name } => {
                check_name(name)?;
                batch.undrains.push(name.clone());
            }
            AdminAction::AllowChild { key, name } => {
                check_child_name(name)?;
                batch.children.push((*key, name.clone(), self.wall_ms(now)));
            }
            AdminAction::DenyChild { key } => {
                if self.children.get(key).is_none() {
                    return Err(AdminError::UnknownChild(*key));
                }
                batch.unchildren.push(*key);
            }
            AdminAction::AddMirrorRule(rule) => {
                batch
                    .mirror_rules
                    .push(self.mirror_book.check_new(rule.clone())?);
            }
            AdminAction::RemoveMirrorRule { id } => {
                self.mirror_book.check_known(*id)?;
                batch.unmirror_rules.push(*id);
                // What the remaining rules no longer let in goes now.
                declined.extend(self.mirrored_refused_by(&self.mirror_book.without(*id)));
            }
            AdminAction::Approve {
                vendor,
                name,
                version,
            }
            | AdminAction::Decline {
                vendor,
                name,
                version,
            } => {
                let key = (*vendor, name.clone(), version.clone());
                let Some(asked) = self
                    .mirror_book
                    .approvals()
                    .into_iter()
                    .find(|a| (a.vendor, a.name.clone(), a.version.clone()) == key)
                else {
                    return Err(AdminError::UnknownApproval {
                        vendor: *vendor,
                        name: name.clone(),
                        version: version.clone(),
                    });
                };
                let approve = matches!(action, AdminAction::Approve { .. });
                batch.approvals.push(courier_protocol::Approval {
                    state: if approve {
                        courier_protocol::ApprovalState::Approved
                    } else {
                        courier_protocol::ApprovalState::Declined
                    },
                    at_ms: self.wall_ms(now),
                    ..asked
                });
                if !approve {
                    // What was mirrored of it goes now.
                    for lease in self.mirrored.keys() {
                        if let Some(r) = self.catalog.get(lease)
                            && *r.vendor == *vendor
                            && *r.name == **name
                            && r.version.to_string() == *version
                        {
                            declined.push(*lease);
                        }
                    }
                }
            }
            AdminAction::StartRollout(_)
            | AdminAction::PauseRollout { .. }
            | AdminAction::ResumeRollout { .. }
            | AdminAction::AbortRollout { .. } => {
                batch
                    .rollouts
                    .extend(self.plan_rollout_action(now, &action)?);
            }
            AdminAction::RevokeKey(signed) => {
                let statement = signed.verify()?.into_inner();
                if let Some(operator) = operator
                    && operator != statement.operator
                {
                    return Err(AdminError::NotTheSigner {
                        signer: statement.operator,
                        operator,
                    });
                }
                check_reason(&statement.reason)?;
                batch
                    .operator_statements
                    .push((statement.subject, signed.clone()));
                if !self.keys.is_revoked(&statement.subject) {
                    batch.revocations.push((statement.subject, None));
                }
                let why = format!("vendor key {} revoked by an operator", statement.subject);
                retire.extend(
                    self.catalog
                        .iter()
                        .filter(|r| *r.vendor == statement.subject)
                        .map(|r| (r.lease, why.clone())),
                );
            }
        }
        let reserve = self.batch_reserving((retire.len() + declined.len()) as u64);
        batch.seq_reserved = reserve.seq_reserved;
        batch
            .delete
            .extend(declined.iter().map(|l| (*l, Removal::Revoked)));
        for (lease, reason) in &retire {
            batch.delete.push((*lease, Removal::Revoked));
            batch
                .lease_revocations
                .push((*lease, reason.clone(), until));
        }
        // The audit log keeps the rule as numbered.
        let action = match (action, batch.mirror_rules.first()) {
            (AdminAction::AddMirrorRule(_), Some(rule)) => AdminAction::AddMirrorRule(rule.clone()),
            (action, _) => action,
        };
        let entry = AuditEntry {
            seq: self.audit_seq + 1,
            at_ms: self.wall_ms(now),
            operator,
            action,
        };
        batch.audit.push(entry.clone());
        Ok(Planned {
            batch,
            change: Admin {
                declined,
                entry,
                retire,
                until,
            },
        })
    }

    /// The operators' signed revocations of `keys`.
    pub fn operator_statements(
        &self,
        keys: &[VendorKey],
    ) -> Vec<courier_protocol::SignedOperatorStatement> {
        self.keys.operator_statements_for(keys)
    }

    /// The last audit entry number used.
    pub fn audit_seq(&self) -> u64 {
        self.audit_seq
    }

    /// The child registries operators allowed.
    pub fn children(&self) -> Vec<courier_protocol::ChildInfo> {
        self.children.list()
    }

    /// A child registry's hello at `now`, `above` being this registry's own key and its
    /// ancestors': welcome, or why not.
    pub fn child_hello(
        &mut self,
        now: Millis,
        key: VendorKey,
        above: &[VendorKey],
    ) -> Result<courier_protocol::ChildWelcome, crate::core::children::ChildRefused> {
        let at = self.wall_ms(now);
        self.children.hello(key, at, above)
    }

    /// An allowed child's report at `now`: kept as its last, and its clients' activity added
    /// to the usage figures under the child's key (and, if this registry is a child too, to
    /// what it reports up in turn).
    pub fn child_report(
        &mut self,
        now: Millis,
        key: VendorKey,
        report: courier_protocol::ChildReport,
    ) -> Result<(), crate::core::children::ChildRefused> {
        use crate::core::children::{ChildRefused, MAX_REPORTED_SERVICES};
        if report.activity.len() > MAX_REPORTED_SERVICES {
            return Err(ChildRefused::BadReport("too many services"));
        }
        let at = self.wall_ms(now);
        // Activity under what is not a service name (a fetch no candidate named) counts in
        // no service's figures; the rest of the report stands.
        let mut report = report;
        report.activity.retain(|a| is_service_name(&a.service));
        self.children.report(key, at, report.clone())?;
        for a in &report.activity {
            let counts = crate::core::usage::UsageCounts {
                handed_out: a.handed_out,
                bytes: 0,
                calls: a.calls,
                failed: a.failed.min(a.calls),
            };
            self.usage.reported(at, key, &a.service, &counts);
        }
        Ok(())
    }

    /// A child registry: its clients' activity not reported to the parent yet (taken; put
    /// it back with [`RegistryState::unreported_back`] if the parent did not take it).
    pub fn take_unreported(&mut self) -> Vec<courier_protocol::ServiceActivity> {
        self.usage
            .take_unreported(crate::core::children::MAX_REPORTED_SERVICES)
            .into_iter()
            .map(|(service, c)| courier_protocol::ServiceActivity {
                service: service.to_string(),
                handed_out: c.handed_out,
                calls: c.calls,
                failed: c.failed,
            })
            .collect()
    }

    /// An operator asks the allowed child `key` for a report now.
    pub fn ask_child_report(
        &mut self,
        key: VendorKey,
    ) -> Result<(), crate::core::children::ChildRefused> {
        self.children.ask_report(key)
    }

    /// This registry has a parent: its children's activity is reported up too.
    pub fn forward_reports(&mut self) {
        self.usage.forward();
    }

    /// Puts back activity a parent did not acknowledge.
    pub fn unreported_back(&mut self, activity: Vec<courier_protocol::ServiceActivity>) {
        self.usage.restore_unreported(
            activity
                .into_iter()
                .map(|a| {
                    let c = crate::core::usage::UsageCounts {
                        handed_out: a.handed_out,
                        bytes: 0,
                        calls: a.calls,
                        failed: a.failed,
                    };
                    (std::sync::Arc::from(a.service.as_str()), c)
                })
                .collect(),
        );
    }

    /// Every ban, as (name, key, reason), and every drained service, as (name, reason).
    #[allow(clippy::type_complexity)]
    pub fn controls(&self) -> (Vec<(String, VendorKey, String)>, Vec<(String, String)>) {
        let bans = self
            .controls
            .bans()
            .map(|(n, k, r)| (n.to_string(), *k, r.to_string()))
            .collect();
        let drains = self
            .controls
            .drains()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect();
        (bans, drains)
    }
}

fn check_name(name: &str) -> Result<(), AdminError> {
    if is_service_name(name) {
        Ok(())
    } else {
        Err(AdminError::Name(name.to_string()))
    }
}

/// A child's name: what an operator reads in `courier registry children`.
fn check_child_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        Err(AdminError::ChildName(name.to_string()))
    } else {
        Ok(())
    }
}

fn check_reason(reason: &str) -> Result<(), AdminError> {
    if reason.len() > MAX_REASON_LEN {
        Err(AdminError::Reason(reason.len()))
    } else {
        Ok(())
    }
}

impl Planned<Admin> {
    /// The staged lease of the rollout this action starts, if it starts one.
    pub fn starting_rollout(&self) -> Option<LeaseId> {
        matches!(self.change.entry.action, AdminAction::StartRollout(_))
            .then(|| self.batch.rollouts.first().map(|r| r.lease))
            .flatten()
    }

    /// Keeps `manifest`, the staged version's, in the record of the rollout it starts (in
    /// the same commit), so that its clients can be told after its lease ended.
    pub fn keeping_manifest(mut self, manifest: courier_protocol::SignedManifest) -> Self {
        if let Some(r) = self.batch.rollouts.first_mut() {
            r.manifest = Some(manifest);
        }
        self
    }
}

/// An operator's action, with its audit entry.
#[derive(Debug)]
pub struct Admin {
    entry: AuditEntry,
    /// Leases it stops, and why their vendors are told.
    retire: Vec<(LeaseId, String)>,
    /// Until when (wall-clock ms) the stopped leases are remembered.
    until: u64,
    /// Mirrored leases of a version an operator declined.
    declined: Vec<LeaseId>,
}

impl Change for Admin {
    type Applied = AuditEntry;

    fn apply(self, st: &mut RegistryState, now: Millis, batch: Batch) -> AuditEntry {
        match &self.entry.action {
            AdminAction::Ban { name, key, reason } => st.controls.ban(name, *key, reason.clone()),
            AdminAction::Allow { name, key } => {
                st.controls.allow(name, key);
            }
            AdminAction::Grant { name, key } => st.catalog.grant(name, key),
            AdminAction::Drain { name, reason } => st.controls.drain(name, reason.clone()),
            AdminAction::Undrain { name } => {
                st.controls.undrain(name);
            }
            AdminAction::RevokeKey(signed) => {
                if let Ok(statement) = signed.peek() {
                    st.keys.apply_operator(statement.subject, signed.clone());
                }
            }
            AdminAction::AllowChild { key, name } => {
                st.children.allow(*key, name.clone(), self.entry.at_ms);
            }
            AdminAction::DenyChild { key } => {
                st.children.deny(key);
            }
            AdminAction::AddMirrorRule(_) | AdminAction::RemoveMirrorRule { .. } => {
                for rule in batch.mirror_rules {
                    st.mirror_book.add(rule);
                }
                for id in batch.unmirror_rules {
                    st.mirror_book.remove(id);
                }
            }
            AdminAction::Approve { .. } | AdminAction::Decline { .. } => {
                for approval in batch.approvals {
                    st.mirror_book.put_approval(approval);
                }
            }
            AdminAction::StartRollout(_)
            | AdminAction::PauseRollout { .. }
            | AdminAction::ResumeRollout { .. }
            | AdminAction::AbortRollout { .. } => {
                for record in batch.rollouts {
                    st.put_rollout(record);
                }
            }
            AdminAction::RevokeLease { .. } => {}
        }
        for lease in self.declined {
            st.retire(now, lease, Removal::Revoked);
        }
        for (lease, reason) in self.retire {
            st.retire(now, lease, Removal::Revoked);
            st.controls.revoke_lease(lease, reason, self.until);
        }
        st.audit_seq = self.entry.seq;
        self.entry
    }
}
