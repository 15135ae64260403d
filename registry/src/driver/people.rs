//! What clients and operators do through the driver: clients register, share system data,
//! report outcomes and read their own history; operators act and read the audit log and
//! the clients. Authorization (who may call what) is the server's; these methods do what
//! they are asked for the key they are given.

use super::Registry;
use crate::core::lease_table::Millis;
use crate::errors::{AdminError, ClientRequestError, ReadError, ReportError};
use courier_protocol::limits::{MAX_CLIENT_LEN, MAX_REPORT_BYTES};
use courier_protocol::{
    AdminAction, AuditEntry, ClientInfo, ClientPage, ClientProfile, HistoryEntry, Outcome,
    SignedOperatorStatement, SystemData, VendorKey,
};
use std::sync::atomic::Ordering;

impl Registry {
    /// Whether `key` is one of the registry's operator keys.
    pub fn is_operator(&self, key: &VendorKey) -> bool {
        self.config.operators.contains(key)
    }

    /// Does an operator's action, with its audit entry, durably; `operator` is the
    /// connection's key (`None`: the data directory's owner, offline). Blocking.
    pub fn admin(
        &self,
        now: Millis,
        operator: Option<VendorKey>,
        action: AdminAction,
    ) -> Result<AuditEntry, AdminError> {
        let mirror = matches!(
            action,
            AdminAction::AddMirrorRule(_)
                | AdminAction::RemoveMirrorRule { .. }
                | AdminAction::Approve { .. }
                | AdminAction::Decline { .. }
        );
        if mirror && self.cluster().is_some() {
            return Err(AdminError::NotAChild);
        }
        let rollout = matches!(
            action,
            AdminAction::StartRollout(_)
                | AdminAction::PauseRollout { .. }
                | AdminAction::ResumeRollout { .. }
                | AdminAction::AbortRollout { .. }
        );
        if rollout && self.cluster().is_some() {
            return Err(AdminError::RolloutsInCluster);
        }
        let writer = self.writer();
        let mut planned = self.state().plan_admin(now, operator, action)?;
        // A rollout keeps its staged version's signed manifest, committed with its start.
        if let Some(lease) = planned.starting_rollout() {
            let manifest = match self.store.manifests(&[lease]) {
                Ok(mut m) => m.pop().flatten(),
                Err(e) => {
                    self.state().abandon(planned);
                    return Err(e.into());
                }
            };
            if let Some(m) = manifest {
                planned = planned.keeping_manifest(m);
            }
        }
        let entry = self.commit(&writer, now, planned)?;
        drop(writer);
        tracing::info!(seq = entry.seq, operator = ?entry.operator, action = %entry.action, "operator action");
        if matches!(
            entry.action,
            AdminAction::AddMirrorRule(_)
                | AdminAction::RemoveMirrorRule { .. }
                | AdminAction::Approve { .. }
        ) {
            self.mirror_rules_changed();
        }
        Ok(entry)
    }

    /// Audit entries from `from_seq` on, oldest first, at most `limit`. Blocking.
    pub fn audit(&self, from_seq: u64, limit: usize) -> Result<Vec<AuditEntry>, ReadError> {
        Ok(self.store.audit(from_seq, limit)?)
    }

    /// The operators' signed revocations of `keys`.
    pub fn operator_statements(&self, keys: &[VendorKey]) -> Vec<SignedOperatorStatement> {
        let keys = &keys[..keys.len().min(courier_protocol::limits::MAX_STATEMENT_KEYS)];
        self.state().operator_statements(keys)
    }

    /// Registers `key` as a client with `profile`, durably. Blocking.
    pub fn register_client(
        &self,
        now: Millis,
        key: VendorKey,
        profile: ClientProfile,
    ) -> Result<(), ClientRequestError> {
        let writer = self.writer();
        let planned = self.state().plan_register_client(now, key, profile)?;
        self.commit(&writer, now, planned)?;
        tracing::info!(client = %key, "client registered");
        Ok(())
    }

    /// Stores the system data client `key` shares, durably. Blocking.
    pub fn share_data(
        &self,
        now: Millis,
        key: VendorKey,
        data: SystemData,
    ) -> Result<(), ClientRequestError> {
        let writer = self.writer();
        let planned = self.state().plan_share_data(now, key, data)?;
        self.commit(&writer, now, planned)?;
        Ok(())
    }

    /// Notes that `key` made contact, if it is a client (written behind). Memory only.
    pub fn contact(&self, now: Millis, key: &VendorKey) {
        self.state().contact(now, key);
    }

    /// Whether `key` is a registered client.
    pub fn is_client(&self, key: &VendorKey) -> bool {
        self.state().is_client(key)
    }

    /// What the registry knows of client `key`.
    pub fn client(&self, key: &VendorKey) -> Option<ClientInfo> {
        self.state().client(key)
    }

    /// A page of the clients after `after`, sorted by key.
    pub fn clients(&self, after: Option<&VendorKey>, limit: usize) -> ClientPage {
        self.state().clients_page(after, limit)
    }

    /// Records a run's outcome in the history of client `key`, durably; the outcome's
    /// client is `key`, whatever it said. Blocking.
    pub fn report(
        &self,
        now: Millis,
        key: &VendorKey,
        mut outcome: Outcome,
    ) -> Result<(), ReportError> {
        if !self.is_client(key) {
            return Err(ReportError::UnknownClient(*key));
        }
        outcome.client = key.to_string();
        if outcome.client.len() > MAX_CLIENT_LEN {
            return Err(ReportError::Invalid("client id must be 1..=128 bytes"));
        }
        let entry = HistoryEntry {
            at_ms: self.wall_ms(now),
            outcome,
        };
        if courier_protocol::codec::encode(&entry).len() > MAX_REPORT_BYTES {
            return Err(ReportError::Invalid("report larger than 16 KiB"));
        }
        let seq = self.history_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.store.append_history(
            &entry.outcome.client,
            seq,
            &entry,
            self.config.history_limit,
        )?;
        let (name, version, ok) = (
            entry.outcome.name.clone(),
            entry.outcome.version.clone(),
            entry.outcome.ok,
        );
        {
            let mut st = self.state();
            st.note_call(now, *key, &entry.outcome.name, entry.outcome.ok);
            st.note_outcome(key, entry);
        }
        // The report is kept (history and usage above); a mark the store refuses now is
        // logged, not answered as a failure the client would retry (and so count twice).
        if let Err(e) = self.note_rollout_report(now, key, &name, &version, ok) {
            tracing::error!(client = %key, %name, %version, "rollout mark not kept: {e}");
        }
        Ok(())
    }
}
