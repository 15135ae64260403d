//! Reporting the outcome of a run to the registry's service history, as the client's key:
//! never, in a background task after the call returns (the default; best effort, adds no
//! latency), or before the call returns (best effort too: a failed report is logged, not an
//! error). A client without a key reports nothing; the proxy's answer goes with a report
//! only when the client opted in.

use super::ReportMode;
use super::registry_link::RegistryLink;
use crate::host::clip;
use courier_protocol::{Manifest, Outcome, SigningKey, VendorKey};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Longest detail text sent with an outcome.
const MAX_DETAIL: usize = 200;

/// Sends outcomes as the client's key, per the report mode.
pub(super) struct OutcomeReporter {
    key: Option<SigningKey>,
    mode: ReportMode,
    detail: bool,
}

impl OutcomeReporter {
    /// Reports as `key` (nothing without one), per `mode`, with the proxy's answer if
    /// `detail`.
    pub(super) fn new(key: Option<SigningKey>, mode: ReportMode, detail: bool) -> Self {
        Self { key, mode, detail }
    }

    /// The client's key.
    pub(super) fn client(&self) -> Option<VendorKey> {
        self.key.as_ref().map(VendorKey::of)
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
        let Some(key) = self.key.clone().filter(|_| self.mode != ReportMode::Off) else {
            return Duration::ZERO;
        };
        let detail = if self.detail {
            clip(&detail.to_string(), MAX_DETAIL)
        } else {
            String::new()
        };
        let outcome = Outcome {
            client: VendorKey::of(&key).to_string(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            component: manifest.component_hash,
            function: function.to_string(),
            ok,
            detail,
            duration_us: started.elapsed().as_micros() as u64,
            facts: BTreeMap::new(),
        };
        let registry = link.current();
        let send = async move {
            let sent = async {
                registry.ensure_authenticated(&key).await?;
                registry.report(outcome).await
            };
            if let Err(e) = sent.await {
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
