//! Rollouts on the state: staged registrations entering the catalog, lookups that see
//! what the asking client's wave lets it see, operators' rollout actions (planned inside
//! [`RegistryState::plan_admin`]), the steps the driver's timer takes, the marks clients'
//! reports leave, and the undos asked of clients.

use super::{Change, Planned, RegistryState, is_service_name};
use crate::core::lease_table::Millis;
use crate::core::matcher::{self, Match, PreparedQuery};
use crate::core::rollouts::{ClientView, Rollout, Step, check_spec};
use crate::errors::AdminError;
use crate::store::Batch;
use courier_protocol::{
    AdminAction, LeaseId, RolloutMark, RolloutRecord, RolloutState, RolloutStatus, VendorKey,
};

/// An undo a client owes: the rollout, its staged lease, the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedUndo {
    /// The rollout.
    pub rollout: u64,
    /// The service.
    pub name: String,
    /// The version.
    pub version: String,
    /// The version's registration.
    pub lease: LeaseId,
    /// Milliseconds left on the version's lease (0: it ended).
    pub remaining_ms: u64,
    /// The version's signed manifest, when its registration is gone (the store then has
    /// none): the one the rollout kept.
    pub kept: Option<courier_protocol::SignedManifest>,
}

impl RegistryState {
    /// The staged registration of `name` by `key` that a new staged one replaces: not
    /// one a completed rollout shows to everyone.
    pub(super) fn staged_to_replace(&self, name: &str, key: &VendorKey) -> Option<LeaseId> {
        self.catalog
            .staged_of(name)
            .filter(|r| *r.vendor == *key)
            .find(|r| {
                self.rollouts
                    .of_lease(&r.lease)
                    .is_none_or(|ro| ro.record.state != RolloutState::Complete)
            })
            .map(|r| r.lease)
    }

    /// Whether any staged registration has had a rollout (reports may leave marks).
    pub fn rollouts_exist(&self) -> bool {
        self.rollouts.any_gates()
    }

    /// Whether a staged registration of `name`@`version` by `key` is the version of a
    /// completed rollout: registered again (a restarted keeper), it is registered for
    /// good instead, replacing the key's live registration, so that the version every
    /// client now runs does not go hidden again.
    pub(super) fn completed_version(
        &self,
        now: Millis,
        name: &str,
        version: &str,
        key: &VendorKey,
    ) -> bool {
        let completed = self.rollouts.iter().any(|r| {
            r.record.state == RolloutState::Complete
                && r.record.spec.name == name
                && r.record.spec.version == version
                && r.record.vendor == *key
        });
        // Never over a newer version the key made live since.
        let newer_live = self
            .live_lease_named(now, key, name)
            .and_then(|l| self.catalog.get(&l))
            .is_some_and(|live| semver::Version::parse(version).is_ok_and(|v| *live.version > v));
        completed && !newer_live
    }

    /// The registrations matching `query` at `now` for `client` (`None`: anonymous), ranked:
    /// staged ones only where a rollout's open wave takes the client.
    pub fn find_as(
        &self,
        now: Millis,
        query: &PreparedQuery,
        client: Option<&VendorKey>,
    ) -> Vec<Match> {
        if !self.rollouts.any_gates() {
            return matcher::find(&self.catalog, now, query);
        }
        let view = client.map(|key| ClientView::of(key, &self.clients));
        matcher::find_gated(&self.catalog, now, query, |lease| {
            self.rollouts.sees(lease, view)
        })
    }

    /// The record an operator's rollout action makes (`None` for other actions).
    pub(super) fn plan_rollout_action(
        &self,
        now: Millis,
        action: &AdminAction,
    ) -> Result<Option<RolloutRecord>, AdminError> {
        let at = self.wall_ms(now);
        let running = |name: &str, wanted: &'static str, ok: fn(&RolloutState) -> bool| {
            if !is_service_name(name) {
                return Err(AdminError::Name(name.to_string()));
            }
            self.rollouts
                .active(name)
                .filter(|r| ok(&r.record.state))
                .map(|r| r.record.clone())
                .ok_or_else(|| AdminError::NoRollout {
                    name: name.to_string(),
                    wanted,
                })
        };
        Ok(Some(match action {
            AdminAction::StartRollout(spec) => {
                if !is_service_name(&spec.name) {
                    return Err(AdminError::Name(spec.name.clone()));
                }
                check_spec(spec).map_err(AdminError::RolloutSpec)?;
                if let Some(r) = self.rollouts.active(&spec.name) {
                    return Err(AdminError::RolloutUnderWay {
                        name: spec.name.clone(),
                        id: r.record.id,
                        state: r.record.state.to_string(),
                    });
                }
                let staged = self
                    .catalog
                    .staged_of(&spec.name)
                    .filter(|r| r.version.to_string() == spec.version)
                    .filter(|r| self.table.remaining(&r.lease, now).is_some())
                    // Signed by the name's owner or a key granted it.
                    .find(|r| self.catalog.admit(&spec.name, &r.vendor).is_ok())
                    .ok_or_else(|| AdminError::NotStaged {
                        name: spec.name.clone(),
                        version: spec.version.clone(),
                    })?;
                RolloutRecord {
                    id: self.rollouts.next_id(),
                    spec: spec.clone(),
                    lease: staged.lease,
                    vendor: *staged.vendor,
                    state: RolloutState::Running,
                    started_at_ms: at,
                    opened_at_ms: vec![at],
                    resumed_at_ms: None,
                    manifest: None,
                }
            }
            AdminAction::PauseRollout { name } => RolloutRecord {
                state: RolloutState::Paused,
                ..running(name, "running", |s| *s == RolloutState::Running)?
            },
            AdminAction::ResumeRollout { name } => RolloutRecord {
                state: RolloutState::Running,
                resumed_at_ms: Some(at),
                ..running(name, "paused", |s| *s == RolloutState::Paused)?
            },
            AdminAction::AbortRollout { name } => RolloutRecord {
                state: RolloutState::Aborted,
                ..running(name, "running or paused", |s| !s.is_over())?
            },
            _ => return Ok(None),
        }))
    }

    /// Puts a committed or stored rollout record in place (an operator's action, or a
    /// restart).
    pub(super) fn put_rollout(&mut self, record: RolloutRecord) {
        self.rollouts.put(record);
    }

    /// What the running rollouts must do at `now`. A rollout whose staged registration
    /// has gone (its lease ended, or it was revoked) halts.
    pub fn rollout_steps_due(&self, now: Millis) -> Vec<Step> {
        let mut steps = self.rollouts.due(self.wall_ms(now), &self.clients);
        for r in self.rollouts.iter().filter(|r| !r.record.state.is_over()) {
            let gone = self.table.remaining(&r.record.lease, now).is_none()
                || !self.catalog.is_staged(&r.record.lease);
            if gone {
                steps.retain(|s| step_id(s) != r.record.id);
                steps.push(Step::Halt {
                    id: r.record.id,
                    reason: "its staged registration is gone (lease ended or revoked)".into(),
                });
            }
        }
        steps
    }

    /// Plans one step of a rollout (`None` if it no longer applies).
    pub fn plan_rollout_step(&self, now: Millis, step: &Step) -> Option<Planned<RolloutStep>> {
        let r = self.rollouts.get(step_id(step))?;
        // A paused rollout still halts; it opens nothing.
        let halting = matches!(step, Step::Halt { .. });
        match r.record.state {
            RolloutState::Running => {}
            RolloutState::Paused if halting => {}
            _ => return None,
        }
        let at = self.wall_ms(now);
        let mut record = r.record.clone();
        match step {
            Step::Open { wave, .. } if *wave == record.opened_at_ms.len() => {
                record.opened_at_ms.push(at);
            }
            Step::Open { .. } => return None,
            Step::Halt { reason, .. } => {
                record.state = RolloutState::Halted {
                    reason: reason.clone(),
                };
            }
            Step::Complete { .. } => record.state = RolloutState::Complete,
        }
        let mut batch = Batch::default();
        batch.rollouts.push(record.clone());
        Some(Planned {
            batch,
            change: RolloutStep { record },
        })
    }

    /// Plans the mark a client's report of `name`@`version` leaves on the rollout that
    /// let it see that version (`None`: no such rollout, or the mark is already so).
    pub fn plan_rollout_mark(
        &self,
        client: &VendorKey,
        name: &str,
        version: &str,
        ok: bool,
    ) -> Option<Planned<RolloutMarked>> {
        // The latest rollout of that version; a report that comes after a halt still
        // counts (the client ran it before, and owes its undo).
        let r = self
            .rollouts
            .iter()
            .find(|r| r.record.spec.name == name && r.record.spec.version == version)?;
        if r.record.state == RolloutState::Complete
            || !r.in_opened_wave(ClientView::of(client, &self.clients))
            // After a halt or an abort, a mark stays as the client left it: a late report
            // leaves the first mark, and the undo call's own report changes none.
            || (r.record.state.is_over() && r.marks.contains_key(client))
            || matches!(
                r.marks.get(client),
                Some(RolloutMark::Undone { .. } | RolloutMark::UndoFailed { .. })
            )
        {
            return None;
        }
        let mark = if ok {
            RolloutMark::Succeeded
        } else {
            RolloutMark::Failed
        };
        self.planned_mark(r, *client, mark)
    }

    /// Plans the mark of a client's undo report (`None`: it owed no undo of that rollout).
    pub fn plan_undo_mark(
        &self,
        client: &VendorKey,
        rollout: u64,
        ok: bool,
    ) -> Option<Planned<RolloutMarked>> {
        let r = self
            .rollouts
            .get(rollout)
            .filter(|_| self.rollouts.owes_undo(rollout, client))?;
        let failed = r.marks.get(client).is_some_and(|m| m.failed());
        let mark = if ok {
            RolloutMark::Undone { failed }
        } else {
            RolloutMark::UndoFailed { failed }
        };
        self.planned_mark(r, *client, mark)
    }

    fn planned_mark(
        &self,
        r: &Rollout,
        client: VendorKey,
        mark: RolloutMark,
    ) -> Option<Planned<RolloutMarked>> {
        if r.marks.get(&client) == Some(&mark) {
            return None;
        }
        let mut batch = Batch::default();
        batch.rollout_marks.push((r.record.id, client, mark));
        Some(Planned {
            batch,
            change: RolloutMarked {
                id: r.record.id,
                client,
                mark,
            },
        })
    }

    /// The undos `client` owes at `now` (at most `max`): from the version's registration
    /// while it lives, else from the manifest its rollout kept.
    pub fn undos_owed(&self, now: Millis, client: &VendorKey, max: usize) -> Vec<OwedUndo> {
        self.rollouts
            .iter()
            .filter(|r| self.rollouts.owes_undo(r.record.id, client))
            .filter_map(|r| {
                let lease = r.record.lease;
                let live = self
                    .table
                    .remaining(&lease, now)
                    .filter(|_| self.catalog.get(&lease).is_some());
                let (name, version) = (r.record.spec.name.clone(), r.record.spec.version.clone());
                // Gone: the kept manifest is what the client checks and runs.
                let (remaining_ms, kept) = match live {
                    Some(left) => (left, None),
                    None => (0, Some(r.record.manifest.clone()?)),
                };
                Some(OwedUndo {
                    rollout: r.record.id,
                    name,
                    version,
                    lease,
                    remaining_ms,
                    kept,
                })
            })
            .take(max)
            .collect()
    }

    /// Whether the registration under `lease` is staged.
    pub fn is_staged(&self, lease: &LeaseId) -> bool {
        self.catalog.is_staged(lease)
    }

    /// Every rollout, newest first, for operators.
    pub fn rollouts(&self) -> Vec<RolloutStatus> {
        self.rollouts
            .iter()
            .map(|r| r.status(&self.clients))
            .collect()
    }

    /// Rollout `id`, for operators.
    pub fn rollout(&self, id: u64) -> Option<RolloutStatus> {
        self.rollouts.get(id).map(|r| r.status(&self.clients))
    }

    /// Whether some rollout is running or paused.
    pub fn rollouts_under_way(&self) -> bool {
        self.rollouts.any_under_way()
    }

    /// Restores a stored mark.
    pub(super) fn restore_mark(&mut self, id: u64, client: VendorKey, mark: RolloutMark) {
        self.rollouts.mark(id, client, mark);
    }
}

fn step_id(step: &Step) -> u64 {
    match step {
        Step::Open { id, .. } | Step::Halt { id, .. } | Step::Complete { id } => *id,
    }
}

/// A rollout's step: a wave opened, a halt, or its completion (the staged registration
/// is then seen by every client; it stays the vendor's staged lease, and the version
/// before it stays registered below it, until the vendor publishes the new version as
/// its registration of record).
#[derive(Debug)]
pub struct RolloutStep {
    record: RolloutRecord,
}

impl Change for RolloutStep {
    type Applied = RolloutRecord;

    fn apply(self, st: &mut RegistryState, _now: Millis, _batch: Batch) -> RolloutRecord {
        st.rollouts.put(self.record.clone());
        self.record
    }
}

/// A client's mark on a rollout.
#[derive(Debug)]
pub struct RolloutMarked {
    id: u64,
    client: VendorKey,
    mark: RolloutMark,
}

impl Change for RolloutMarked {
    type Applied = ();

    fn apply(self, st: &mut RegistryState, _now: Millis, _batch: Batch) {
        st.rollouts.mark(self.id, self.client, self.mark);
    }
}
