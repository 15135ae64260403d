//! Undos a registry asks of this client: after a rollout halts or is aborted, a client
//! that ran the rolled-out version is asked (at its next contact) to run the version's
//! own undo call, e.g. the patch proxy's `remove("fix-1")`. The version's registration
//! comes with the directive and is checked like any candidate (signature, trust, times,
//! freshness, rollback memory, capabilities) before it runs in the sandbox; the registry
//! cannot make the client run anything its vendor did not sign. Each undo is reported
//! back. Once undone, the client's rollback memory of the service falls back to the
//! version its vendor's fresh statement (served and verified with the directive) names as
//! current, so the client goes back to the version before: never lower than what the
//! freshness check enforces anyway, so a registry that fakes a halt gains nothing.

use super::{CallError, CallReport, Client, PhaseTimings};
use crate::invoke::CallSpec;
use courier_protocol::{Directive, UndoReport};
use std::time::Instant;

/// One undo the registry asked for, and what became of it.
#[derive(Debug)]
pub struct Undone {
    /// The directive.
    pub directive: Directive,
    /// The call's report, or why it did not run or failed.
    pub result: Result<CallReport, CallError>,
    /// Whether the registry took the report of it.
    pub reported: Result<(), courier_transport::ClientError>,
}

impl Undone {
    /// Whether the undo call ran and answered without error.
    pub fn ok(&self) -> bool {
        self.result.as_ref().is_ok_and(|r| r.answer.is_ok())
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
            let result = self.undo(&registry, &directive).await;
            let ok = result.as_ref().is_ok_and(|r| r.answer.is_ok());
            let detail = match &result {
                Ok(r) => r.answer.text().to_string(),
                Err(e) => e.to_string(),
            };
            let reported = registry
                .report_undo(UndoReport {
                    rollout: directive.rollout,
                    ok,
                    detail: detail.chars().take(512).collect(),
                })
                .await;
            done.push(Undone {
                directive,
                result,
                reported,
            });
        }
        Ok(done)
    }

    async fn undo(
        &self,
        registry: &courier_transport::RegistryClient,
        directive: &Directive,
    ) -> Result<CallReport, CallError> {
        let spec: CallSpec = directive.call.parse()?;
        let ready = self
            .first_usable(
                registry,
                vec![directive.candidate.clone()],
                &spec,
                Instant::now(),
                PhaseTimings::default(),
            )
            .await?;
        let vendor = ready.manifest.vendor_key;
        let report = self.run_ready(ready, &spec).await?;
        // Undone: back to the version the vendor's statement, verified with the candidate,
        // names as current (a staged version is never it).
        if report.answer.is_ok()
            && let Some(statement) = &directive.candidate.freshness
            && let Ok(statement) = statement.peek()
            && let Some(current) = statement.version_of(&directive.name)
        {
            self.versions
                .lower_to_current(&vendor, &directive.name, &current, &self.trust.read())
                .map_err(CallError::State)?;
        }
        Ok(report)
    }
}
