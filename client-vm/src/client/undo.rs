//! Undos a registry asks of this client: after a rollout halts or is aborted, a client
//! that ran the rolled-out version is asked (at its next contact) to run the version's
//! own undo call, e.g. the patch proxy's `remove("fix-1")`. The version's registration
//! comes with the directive and is checked like any candidate (signature, trust, times,
//! freshness, rollback memory, capabilities) before it runs in the sandbox; the registry
//! cannot make the client run anything its vendor did not sign. Each undo is reported
//! back. Whether or not there is a call, the client's rollback memory of the service
//! falls back to the version its vendor's fresh statement (served and verified with the
//! directive) names as current, so the client goes back to the version before: never
//! lower than what the freshness check enforces anyway, so a registry that fakes a halt
//! gains nothing.

use super::{CallError, CallReport, Client, PhaseTimings, Rejection};
use crate::invoke::CallSpec;
use courier_protocol::{Directive, UndoReport};
use std::time::Instant;

/// One undo the registry asked for, and what became of it.
#[derive(Debug)]
pub struct Undone {
    /// The directive.
    pub directive: Directive,
    /// The undo call's report (`None`: the directive had no call to run), or why the
    /// directive was refused or its call failed.
    pub result: Result<Option<CallReport>, CallError>,
    /// The version the client went back to: the one its vendor's statement names as
    /// current, if one came with the directive.
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
        let result = match &directive.call {
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
        // Withdrawn: back to the version the vendor's statement names as current (a
        // staged version is never it), whatever the undo call did; after it, which
        // accepted the withdrawn version once more.
        if let Some(current) = &current
            && let Err(e) = self.versions.lower_to_current(
                &manifest.vendor_key,
                &manifest.name,
                current,
                &self.trust.read(),
            )
        {
            return (None, Err(CallError::State(e)));
        }
        (current, result)
    }
}
