//! Undos a registry asks of this client: after a rollout halts or is aborted, a client
//! that ran the withdrawn version is told at its next contact. The version's registration
//! comes with the directive and is checked like any candidate (signature, trust, times,
//! freshness) and must be the version the directive names. If its vendor signed an undo
//! call in the manifest (attribute `undo`, e.g. the patch proxy's `remove("fix-1")`), that
//! call, and only that one, runs in the sandbox after the remaining checks (rollback
//! memory, capabilities); the registry cannot choose what runs. Each undo is reported back.
//!
//! Then the client goes back to the version before: when the withdrawn version is the
//! highest it accepted and its policy requires freshness statements, its rollback memory
//! falls to the version the vendor's fresh statement names as current (a staged version
//! never is). Below that, nothing is accepted anyway; a registry that replays an older
//! statement still fresh gains only what that statement would let it serve for its few
//! minutes.

use super::{CallError, CallReport, Client, PhaseTimings, Rejection};
use crate::invoke::CallSpec;
use courier_protocol::{Directive, UndoReport, signed_undo_call};
use std::time::Instant;

/// One undo the registry asked for, and what became of it.
#[derive(Debug)]
pub struct Undone {
    /// The directive.
    pub directive: Directive,
    /// The undo call's report (`None`: the directive had no call to run), or why the
    /// directive was refused or its call failed.
    pub result: Result<Option<CallReport>, CallError>,
    /// The version the client went back to (its rollback memory lowered to it): the one
    /// its vendor's statement names as current; `None` when it stayed as it was.
    pub back_to: Option<semver::Version>,
    /// Whether the registry took the report of it.
    pub reported: Result<(), courier_transport::ClientError>,
}

impl Undone {
    /// Whether the directive was checked and its call, if any, answered without error.
    pub fn ok(&self) -> bool {
        match &self.result {
            Ok(Some(r)) => r.answer.is_ok(),
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

impl Client {
    /// Runs every undo the registry asks of this client now, each verified as any
    /// candidate, and reports each back. An empty list: nothing to undo.
    pub async fn run_undos(&self) -> Result<Vec<Undone>, CallError> {
        let registry = self.link.current();
        self.link.identify(&registry).await;
        let directives = registry.directives().await.map_err(CallError::Lookup)?;
        if !directives.is_empty() {
            // A rotation or a revocation since: the statements the directives come with
            // may be the new key's.
            if self.trust.sync_if_due(|| self.registry()).await > 0 {
                self.discard_untrusted();
            }
        }
        let mut done = Vec::with_capacity(directives.len());
        for directive in directives {
            let (back_to, result) = self.undo(&registry, &directive).await;
            let mut undone = Undone {
                directive,
                result,
                back_to,
                reported: Ok(()),
            };
            let detail = match &undone.result {
                Ok(Some(r)) => r.answer.text().to_string(),
                Ok(None) => "nothing to run".to_string(),
                Err(e) => e.to_string(),
            };
            undone.reported = registry
                .report_undo(UndoReport {
                    rollout: undone.directive.rollout,
                    ok: undone.ok(),
                    detail: detail.chars().take(512).collect(),
                })
                .await;
            done.push(undone);
        }
        Ok(done)
    }

    /// Checks the directive's candidate (signature, trust, validity, freshness), goes
    /// back to the version its vendor's statement names as current, then runs the undo
    /// call, if any, checked like any call.
    async fn undo(
        &self,
        registry: &courier_transport::RegistryClient,
        directive: &Directive,
    ) -> (
        Option<semver::Version>,
        Result<Option<CallReport>, CallError>,
    ) {
        let candidate = &directive.candidate;
        let (manifest, current) = match self.vouched(candidate) {
            Ok(v) => v,
            Err(reason) => {
                let rejected = vec![Rejection {
                    lease: candidate.lease,
                    name: directive.name.clone(),
                    reason,
                }];
                return (None, Err(CallError::NoUsableCandidate { rejected }));
            }
        };
        // The directive must be about the version its candidate is; the call is the one
        // the vendor signed in that version's manifest, never the registry's text.
        if manifest.name != directive.name || manifest.version != directive.version {
            return (
                None,
                Err(CallError::Directive(format!(
                    "a directive about {}@{} came with {}@{}",
                    directive.name, directive.version, manifest.name, manifest.version
                ))),
            );
        }
        let signed = manifest.attributes.get(courier_protocol::UNDO_ATTRIBUTE);
        let result = match signed_undo_call(&manifest) {
            // An undo attribute that is not a call of one of its exports: nothing runs, and
            // the registry hears it failed (not that it was undone).
            None if signed.is_some() => Err(CallError::Directive(format!(
                "{}@{} signs an undo that is not a call of an interface it exports: {:?}",
                manifest.name,
                manifest.version,
                signed.map(String::as_str).unwrap_or_default()
            ))),
            None => Ok(None),
            Some(call) => {
                async {
                    let spec: CallSpec = call.parse()?;
                    let ready = self
                        .first_usable(
                            registry,
                            vec![candidate.clone()],
                            &spec,
                            Instant::now(),
                            PhaseTimings::default(),
                        )
                        .await?;
                    self.run_ready(ready, &spec).await.map(Some)
                }
                .await
            }
        };
        // Withdrawn: back to the version the vendor's statement names as current, whatever
        // the undo call did (after it, which accepted the withdrawn version once more).
        // Only from the withdrawn version itself, as the highest this client accepted, and
        // only where the policy requires statements: then nothing below the stated version
        // is accepted anyway, and a registry replaying an older statement still fresh can
        // lower the mark only to what that statement could have served for its few minutes.
        let trust = self.trust.read();
        let lowered = match (&current, manifest.semver()) {
            (Some(current), Some(withdrawn))
                if self.sandbox.policy().freshness.required
                    && *current < withdrawn
                    && self
                        .versions
                        .accepted(&manifest.vendor_key, &manifest.name, &trust)
                        .as_ref()
                        == Some(&withdrawn) =>
            {
                match self.versions.lower_to_current(
                    &manifest.vendor_key,
                    &manifest.name,
                    current,
                    &trust,
                ) {
                    Ok(()) => Some(current.clone()),
                    Err(e) => return (None, Err(CallError::State(e))),
                }
            }
            _ => None,
        };
        drop(trust);
        (lowered, result)
    }
}
