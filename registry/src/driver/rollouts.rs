//! Staged rollouts through the driver: the steps the timer takes (each committed before it
//! is applied, so a restart neither opens a wave again nor early: the times each opened
//! are stored), the marks clients' reports leave, the undos asked of clients and their
//! reports, and the halts the webhooks hear of (once each: a halt is announced after its
//! commit, and a restarted registry finds it halted already).

use super::Registry;
use crate::core::lease_table::Millis;
use crate::errors::{ReadError, ReportError};
use crate::store::StoreError;
use courier_protocol::{
    Candidate, Directive, MAX_DIRECTIVES, RolloutRecord, RolloutState, RolloutStatus, UndoReport,
    VendorKey, signed_undo_call,
};
use std::time::Duration;
use tokio::sync::broadcast;

/// How often the rollout timer looks at the running rollouts (a report wakes it sooner).
pub const ROLLOUT_TICK: Duration = Duration::from_secs(1);

/// Longest detail of an undo report.
const MAX_UNDO_DETAIL: usize = 1_024;

impl Registry {
    /// Takes the steps the running rollouts are due at `now`: opens waves, halts those
    /// with too many failures, completes those whose last wave ran its delay (every client
    /// sees the version from then on). Returns the records changed. Blocking.
    pub fn rollout_tick(&self, now: Millis) -> Result<Vec<RolloutRecord>, StoreError> {
        if !self.state().rollouts_under_way() {
            return Ok(Vec::new());
        }
        let writer = self.writer();
        let steps = self.state().rollout_steps_due(now);
        let mut changed = Vec::new();
        for step in steps {
            let Some(planned) = self.state().plan_rollout_step(now, &step) else {
                continue;
            };
            let record = self.commit(&writer, now, planned)?;
            let r = &record;
            match &r.state {
                RolloutState::Halted { reason } => {
                    tracing::warn!(rollout = r.id, name = %r.spec.name, version = %r.spec.version, %reason, "rollout halted");
                    let _ = self.rollout_halts.send(record.clone());
                }
                RolloutState::Complete => {
                    tracing::info!(rollout = r.id, name = %r.spec.name, version = %r.spec.version, "rollout complete: every client sees the version");
                }
                _ => {
                    tracing::info!(rollout = r.id, name = %r.spec.name, version = %r.spec.version, wave = r.opened_at_ms.len(), "rollout wave opened");
                }
            }
            changed.push(record);
        }
        drop(writer);
        Ok(changed)
    }

    /// Halted rollouts from now on, each once (the webhooks' watcher follows them).
    pub fn rollout_halts(&self) -> broadcast::Receiver<RolloutRecord> {
        self.rollout_halts.subscribe()
    }

    /// Waits until a report may have changed what a rollout must do, or `timeout`.
    pub async fn rollout_reported(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.rollout_reported.notified()).await;
    }

    /// The live staged registrations, sorted by name then lease. Blocking (reads their
    /// manifests).
    pub fn staged(&self, now: Millis) -> Result<Vec<courier_protocol::LeaseInfo>, ReadError> {
        let rows = self.state().staged_rows(now);
        let manifests = self.store.manifests(&rows.leases())?;
        Ok(rows.into_page(manifests).leases)
    }

    /// Every rollout, newest first.
    pub fn rollouts(&self) -> Vec<RolloutStatus> {
        self.state().rollouts()
    }

    /// Rollout `id`.
    pub fn rollout(&self, id: u64) -> Option<RolloutStatus> {
        self.state().rollout(id)
    }

    /// Notes `client`'s report of running `name`@`version` on the rollout that let it see
    /// that version, durably (a report of another version, or by a client outside the
    /// open waves, leaves nothing). Blocking.
    pub(super) fn note_rollout_report(
        &self,
        now: Millis,
        client: &VendorKey,
        name: &str,
        version: &str,
        ok: bool,
    ) -> Result<(), StoreError> {
        // Most reports leave no mark: find out under the state lock alone, and take the
        // writer lock (behind registrations' commits) only for those that do.
        {
            let st = self.state();
            if !st.rollouts_exist() || st.plan_rollout_mark(client, name, version, ok).is_none() {
                return Ok(());
            }
        }
        let writer = self.writer();
        let Some(planned) = self.state().plan_rollout_mark(client, name, version, ok) else {
            return Ok(());
        };
        self.commit(&writer, now, planned)?;
        drop(writer);
        self.rollout_reported.notify_one();
        Ok(())
    }

    /// What the registry asks of `client` now: the undos it owes, each with the version's
    /// registration. Blocking (reads the manifests).
    pub fn directives(&self, now: Millis, client: &VendorKey) -> Result<Vec<Directive>, ReadError> {
        let (owed, freshness) = {
            let st = self.state();
            let owed = st.undos_owed(now, client, MAX_DIRECTIVES);
            // By vendor and name: a version whose registration is gone has no lease to ask
            // by.
            let freshness: Vec<_> = owed
                .iter()
                .map(|o| {
                    st.freshness_of(&o.lease).or_else(|| {
                        let m = o.kept.as_ref()?.peek().ok()?;
                        st.freshness_of_service(&m.vendor_key, &m.name)
                    })
                })
                .collect();
            (owed, freshness)
        };
        if owed.is_empty() {
            return Ok(Vec::new());
        }
        let leases: Vec<_> = owed.iter().map(|o| o.lease).collect();
        let manifests = self.store.manifests(&leases)?;
        Ok(owed
            .into_iter()
            .zip(manifests)
            .zip(freshness)
            .filter_map(|((o, manifest), freshness)| {
                let manifest = manifest.or(o.kept)?;
                // The call the client will run: the one its signed manifest names.
                let m = manifest.peek().ok()?;
                Some(Directive {
                    rollout: o.rollout,
                    name: o.name,
                    version: o.version,
                    call: signed_undo_call(&m),
                    candidate: Candidate {
                        lease: o.lease,
                        interface: m.exports.first()?.interface.clone(),
                        manifest,
                        remaining_ms: o.remaining_ms,
                        freshness,
                    },
                })
            })
            .collect())
    }

    /// Keeps `client`'s report of an undo it was asked for, durably. A report of an undo
    /// it did not owe is refused. Blocking.
    pub fn undo_report(
        &self,
        now: Millis,
        client: &VendorKey,
        report: UndoReport,
    ) -> Result<(), ReportError> {
        if !self.is_client(client) {
            return Err(ReportError::UnknownClient(*client));
        }
        if report.detail.len() > MAX_UNDO_DETAIL {
            return Err(ReportError::Invalid("undo detail longer than 1 KiB"));
        }
        let writer = self.writer();
        let Some(planned) = self
            .state()
            .plan_undo_mark(client, report.rollout, report.ok)
        else {
            return Err(ReportError::Invalid(
                "no undo of that rollout is asked of this client",
            ));
        };
        self.commit(&writer, now, planned)?;
        drop(writer);
        tracing::info!(rollout = report.rollout, %client, ok = report.ok, detail = %report.detail, "undo reported");
        Ok(())
    }
}
