//! Reporting the outcome of a run to the registry's service history: never, in a background
//! task after the call returns (the default; best effort, adds no latency), or before the
//! call returns (best effort too: a failed report is logged, not an error).

use super::ReportMode;
use super::registry_link::RegistryLink;
use crate::host::clip;
use courier_protocol::{Manifest, Outcome};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Longest detail text sent with an outcome.
const MAX_DETAIL: usize = 200;

/// Sends outcomes as the client `client` identifies itself, per the report mode.
pub(super) struct OutcomeReporter {
    client: String,
    mode: ReportMode,
}

impl OutcomeReporter {
    /// Reports as `client`, per `mode`.
    pub(super) fn new(client: String, mode: ReportMode) -> Self {
        Self { client, mode }
    }

    /// The client's identifier in the service history.
    pub(super) fn client(&self) -> &str {
        &self.client
    }

    /// Reports that `function` of `manifest`'s proxy ran (`ok` or not, with `detail`),
    /// in a run that began at `started`, on `link`'s current connection. Returns the time
    /// spent before returning (zero unless inline).
    pub(super) async fn report(
        &self,
        link: &RegistryLink,
        manifest: &Manifest,
        function: &str,
        ok: bool,
        detail: impl fmt::Display,
        started: Instant,
    ) -> Duration {
        if self.mode == ReportMode::Off {
            return Duration::ZERO;
        }
        let outcome = Outcome {
            client: self.client.clone(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            component: manifest.component_hash,
            function: function.to_string(),
            ok,
            detail: clip(&detail.to_string(), MAX_DETAIL),
            duration_us: started.elapsed().as_micros() as u64,
            facts: BTreeMap::new(),
        };
        let registry = link.current();
        let send = async move {
            if let Err(e) = registry.report(outcome).await {
                tracing::warn!("outcome not reported: {e}");
            }
        };
        match self.mode {
            ReportMode::Inline => {
                let t = Instant::now();
                send.await;
                t.elapsed()
            }
            _ => {
                tokio::spawn(send);
                Duration::ZERO
            }
        }
    }
}
