//! The whole flow of one call: query the registry (and, when due, its key statements),
//! take the first candidate that passes every check and compile it (or find it compiled),
//! remember its version, run it once in a fresh store, discard it, and report the outcome.
//!
//! Rooms: `vet` (the check order, in one function), `freshness` (the vendor's freshness
//! statement), `versions` (rollback memory and pins), `trusted_keys` (trust and
//! key-statement sync), `registry_link` (connection and lookup cache), `outcome`
//! (service-history reports), `config`, `errors`, `call_report` and `timings` (what goes in
//! and comes out).

mod call_report;
mod config;
mod errors;
mod freshness;
mod ledger;
mod outcome;
mod prerequisites;
mod registry_link;
mod timings;
mod trusted_keys;
mod undo;
mod updates;
mod verified;
mod versions;
mod vet;

pub use call_report::{CallReport, Chosen, TypedReport};
pub use config::{ClientConfig, DEFAULT_LOOKUP_TTL, ReportMode};
pub use errors::{CallError, RejectReason, Rejection, SetupError};
pub use freshness::FreshnessRefusal;
pub use ledger::{LEDGER_FILE, LedgerEntry};
pub use prerequisites::{
    DEFAULT_PREREQUISITE_DEPTH, INSTALL_PACKAGE, INSTALLER_INTERFACE, Installed,
    PREREQUISITES_INTERFACE, PROVIDES_ATTRIBUTE, PROVIDES_FACT, PrerequisiteError, REMOVE_PACKAGE,
    Requirement, Unwound, VERSION_FACT,
};
pub use timings::PhaseTimings;
pub use undo::Undone;
pub use updates::{UpdateApplied, UpdateCheck, UpdateError, UpdateOffer};
pub use versions::VersionMemory;

use crate::discard::Holdings;
use crate::invoke::{CallSpec, Invocation, InvokeError};
use crate::provider::ProviderTarget;
use crate::sandbox::{Compiled, RunFailure, RunTimings, Sandbox};
use crate::trust::TrustStore;
use courier_protocol::{Candidate, InterfaceName, Manifest, ServiceQuery, VendorKey};
use courier_transport::{ClientError, RegistryClient};
use outcome::OutcomeReporter;
use registry_link::RegistryLink;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;
use timings::timed;
use trusted_keys::TrustedKeys;
use verified::Verifications;
use versions::VersionGuard;
use vet::Vetted;
use wasmtime::component::{ComponentNamedList, Lift, Lower};

/// A courier client: a registry connection, a trust store, a policy and a sandbox.
pub struct Client {
    link: RegistryLink,
    holdings: Arc<Holdings>,
    sandbox: Sandbox,
    trust: TrustedKeys,
    reporter: OutcomeReporter,
    max_candidates: u32,
    verified: Verifications,
    versions: VersionGuard,
    ledger: ledger::Ledger,
    prerequisite_depth: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("key", &self.key())
            .field("registry", &self.registry().addr())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client on a connection to the registry, set up by `config`: the sandbox is built,
    /// and what earlier runs remembered in the state directory (accepted versions, learned
    /// key statements) is loaded. When the connection is lost, the client connects again
    /// to the same address and pin.
    pub fn new(registry: RegistryClient, mut config: ClientConfig) -> Result<Self, SetupError> {
        config.sandbox.proxy_origin = crate::policy::ProxyOrigin::of_registry(registry.addr());
        let state_dir = config.state_dir.as_deref();
        let versions = VersionGuard::open(state_dir, config.pins)?;
        let ledger = ledger::Ledger::open(state_dir)?;
        let trust = TrustedKeys::open(config.trust, state_dir, config.key_refresh)?;
        let verified = Verifications::new(config.sandbox.cache_compiled);
        let sandbox = match config.facts {
            Some(facts) => Sandbox::with_facts(config.policy, config.sandbox, facts)?,
            None => Sandbox::new(config.policy, config.sandbox)?,
        };
        let agent = format!("courier-client/{}", env!("CARGO_PKG_VERSION"));
        let holdings = Arc::new(Holdings::new(sandbox.kept()));
        let link = RegistryLink::new(
            registry,
            agent,
            config.lookup_ttl,
            config.key.clone(),
            config.registry_pins,
            holdings.clone(),
            config.other_nodes,
        );
        Ok(Self {
            link,
            holdings,
            sandbox,
            trust,
            reporter: OutcomeReporter::new(config.key, config.report, config.report_detail),
            max_candidates: config.max_candidates.max(1),
            verified,
            versions,
            ledger,
            prerequisite_depth: config.prerequisite_depth,
        })
    }

    /// The sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The registry connection (a cheap handle on the current connection).
    pub fn registry(&self) -> RegistryClient {
        self.link.current()
    }

    /// Queries whose candidates are kept by the lookup cache now.
    pub fn cached_lookups(&self) -> usize {
        self.link.cached_lookups()
    }

    /// The client's key, if it has one.
    pub fn key(&self) -> Option<VendorKey> {
        self.reporter.client()
    }

    /// Trusts `key` from now on.
    pub fn trust(&self, key: VendorKey) -> Result<bool, crate::trust::TrustError> {
        self.trust.add(key)
    }

    /// Stops trusting `key`; what the sandbox kept for its proxies is discarded.
    pub fn untrust(&self, key: &VendorKey) -> bool {
        let removed = self.trust.remove(key);
        self.discard_untrusted();
        removed
    }

    /// Leases whose compiled component or provider connection the client may be keeping
    /// (those it ran a proxy of and has not yet seen end).
    pub fn held_leases(&self) -> usize {
        self.holdings.len()
    }

    /// Discards what the sandbox kept for proxies whose vendor key is no longer trusted:
    /// in memory, for the leases this client ran; in its compiled-code directory, for every
    /// file whose vendor may no longer sign for its service (whichever process wrote it).
    fn discard_untrusted(&self) {
        let trust = self.trust.read();
        self.holdings.keep_trusted(|k| trust.check(k).is_ok());
        let now = vet::now_ms();
        let gone = self
            .sandbox
            .evict_stored(|k, service| trust.check_for(k, service, now).is_ok());
        if gone > 0 {
            tracing::info!(
                files = gone,
                "compiled code discarded: its vendor is no longer trusted"
            );
        }
    }

    /// A copy of the trust store.
    pub fn trust_store(&self) -> TrustStore {
        self.trust.read().clone()
    }

    /// Pins service `name` to exactly `version`: it is accepted even below the highest
    /// version accepted before (a deliberate downgrade), and other versions are refused.
    pub fn pin_version(&self, name: impl Into<String>, version: semver::Version) {
        self.versions.pin(name.into(), version);
    }

    /// Removes the pin of `name`; false if there was none.
    pub fn unpin_version(&self, name: &str) -> bool {
        self.versions.unpin(name)
    }

    /// The highest version of `name` accepted from `vendor`, or from any key of the same
    /// rotation chain (one vendor across its rotations: a rotation learned after a version
    /// was accepted does not reset the mark).
    pub fn accepted_version(&self, vendor: &VendorKey, name: &str) -> Option<semver::Version> {
        self.versions.accepted(vendor, name, &self.trust.read())
    }

    /// Asks the registry for the key statements about the keys this client trusts (and the
    /// keys they rotated to), verifies each, and learns the valid ones; persists them in the
    /// state directory when there is one. Returns how many were new. Statements that do not
    /// verify are ignored: a registry cannot make the client trust or distrust a key.
    /// What the sandbox kept for a key now revoked is discarded.
    pub async fn sync_keys(&self) -> Result<usize, ClientError> {
        let learned = self.trust.sync(&self.registry()).await?;
        if learned > 0 {
            self.discard_untrusted();
        }
        Ok(learned)
    }

    /// Calls `courier:echo/echo.say("hi")`-style text: the interface (and version, if
    /// given) is looked up in the registry, arguments are WAVE.
    pub async fn call_str(&self, call: &str) -> Result<CallReport, CallError> {
        let spec: CallSpec = call.parse()?;
        self.call_spec(&spec, Vec::new()).await
    }

    /// Calls `function` with WAVE `args` on a proxy matching `query`.
    pub async fn call(
        &self,
        query: ServiceQuery,
        function: &str,
        args: &str,
    ) -> Result<CallReport, CallError> {
        let interface = parse_interface(&query)?;
        let spec = CallSpec::new(interface, function, args);
        self.run_dynamic(query, &spec).await
    }

    /// Calls a parsed call, with extra attribute constraints on the query.
    pub async fn call_spec(
        &self,
        spec: &CallSpec,
        attributes: Vec<courier_protocol::AttributeConstraint>,
    ) -> Result<CallReport, CallError> {
        let query = self.query_for(spec, attributes);
        self.run_dynamic(query, spec).await
    }

    /// The registry query for a call: its interface, a caret requirement on the version if
    /// one is given, and the function.
    pub fn query_for(
        &self,
        spec: &CallSpec,
        attributes: Vec<courier_protocol::AttributeConstraint>,
    ) -> ServiceQuery {
        ServiceQuery {
            interface: spec.interface.unversioned(),
            version_req: spec.interface.version.as_ref().map(|v| format!("^{v}")),
            functions: vec![spec.function.clone()],
            attributes,
            limit: self.max_candidates,
        }
    }

    /// Calls `function` of the interface in `query` with typed parameters and results, e.g.
    /// `call_typed::<(String,), (Result<String, String>,)>(query, "say", ("hi".into(),))`.
    pub async fn call_typed<P, R>(
        &self,
        query: ServiceQuery,
        function: &str,
        params: P,
    ) -> Result<TypedReport<R>, CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync + 'static,
        R: ComponentNamedList + Lift + crate::AnswerSize + Send + Sync + 'static,
    {
        let interface = parse_interface(&query)?;
        let spec = CallSpec::new(interface, function, "()");
        let ready = self.ready(query, &spec).await?;
        let interface = &ready.chosen.interface;
        let function = format!("{interface}.{}", spec.function);
        let result = self
            .sandbox
            .run_typed::<P, R>(
                &ready.compiled,
                ready.target(),
                interface,
                &spec.function,
                params,
            )
            .await;
        match result {
            Ok(out) => {
                let (chosen, rejected, timings) = self
                    .conclude(ready, &function, &out.timings, true, "typed call")
                    .await;
                Ok(TypedReport {
                    value: out.value,
                    chosen,
                    rejected,
                    logs: out.logs,
                    timings,
                })
            }
            Err(failure) => Err(self.run_failed(ready, &function, failure).await),
        }
    }

    /// Runs a dynamic call (WAVE arguments) on the first usable candidate for `query`.
    async fn run_dynamic(
        &self,
        query: ServiceQuery,
        spec: &CallSpec,
    ) -> Result<CallReport, CallError> {
        let ready = self.ready(query, spec).await?;
        self.run_ready(ready, spec).await
    }

    /// Runs a dynamic call on a candidate that passed every check.
    async fn run_ready(&self, mut ready: Ready, spec: &CallSpec) -> Result<CallReport, CallError> {
        let installed = std::mem::take(&mut ready.installed);
        let compiled = &ready.compiled;
        let invocation =
            Invocation::prepare(compiled.component(), &compiled.interfaces().exports, spec)?;
        let result = self
            .sandbox
            .run(compiled, ready.target(), &invocation)
            .await;
        let function = invocation.qualified();
        match result {
            Ok(out) => {
                let ok = out.answer.is_ok();
                let (chosen, rejected, timings) = self
                    .conclude(ready, &function, &out.timings, ok, out.answer.text())
                    .await;
                Ok(CallReport {
                    function,
                    chosen,
                    rejected,
                    answer: out.answer,
                    values: out.values,
                    logs: out.logs,
                    timings,
                    installed,
                })
            }
            Err(failure) => Err(self.run_failed(ready, &function, failure).await),
        }
    }

    /// The end of a call whose proxy ran: the compiled component let go, the run's phases
    /// recorded, the outcome reported (per the report mode), the total taken. Returns the
    /// candidate that ran, those skipped, and the timings.
    async fn conclude(
        &self,
        ready: Ready,
        function: &str,
        run: &RunTimings,
        ok: bool,
        detail: impl fmt::Display,
    ) -> (Chosen, Vec<Rejection>, PhaseTimings) {
        let Ready {
            chosen,
            compiled,
            manifest,
            rejected,
            mut timings,
            started,
            installed: _,
        } = ready;
        drop(compiled);
        timings.add_run(run);
        timings.report = self
            .reporter
            .report(&self.link, &manifest, function, ok, detail, started)
            .await;
        timings.total = started.elapsed();
        (chosen, rejected, timings)
    }

    /// A call whose proxy ran and failed: concluded, and turned into the error.
    async fn run_failed(&self, ready: Ready, function: &str, failure: RunFailure) -> CallError {
        let (chosen, _, timings) = self
            .conclude(ready, function, &failure.timings, false, &failure.error)
            .await;
        CallError::Run {
            chosen: Box::new(chosen),
            failure: Box::new(failure),
            timings,
        }
    }

    /// Why nothing matched `query`: when proxies matching all but its functions are
    /// registered and none claims the function called, the functions they do claim (one
    /// more query, on this error path only); otherwise the query itself.
    async fn no_candidates(&self, query: ServiceQuery, spec: &CallSpec) -> CallError {
        let asked = query.to_string();
        if query.functions.is_empty() {
            return CallError::NoCandidates(asked);
        }
        let interface = query.interface.clone();
        let without_functions = ServiceQuery {
            functions: vec![],
            ..query
        };
        let Ok((_, others)) = self.link.find_remote(without_functions).await else {
            return CallError::NoCandidates(asked);
        };
        let exported: BTreeSet<String> = others
            .iter()
            .filter_map(|c| c.manifest.peek().ok())
            .flat_map(|m| m.exports)
            .filter(|e| {
                e.interface
                    .parse::<InterfaceName>()
                    .is_ok_and(|n| n.unversioned() == interface)
            })
            .flat_map(|e| e.functions)
            .collect();
        if exported.is_empty() || exported.contains(&spec.function) {
            return CallError::NoCandidates(asked);
        }
        CallError::NoSuchFunction {
            interface,
            function: spec.function.clone(),
            exported: exported.into_iter().collect(),
        }
    }

    /// Query, then the first candidate that passes every check, compiled.
    async fn ready(&self, query: ServiceQuery, spec: &CallSpec) -> Result<Ready, CallError> {
        let started = Instant::now();
        let mut timings = PhaseTimings::default();
        let lookup = async {
            tokio::join!(
                self.link.find(query.clone()),
                self.trust.sync_if_due(|| self.registry())
            )
        };
        let (found, learned) = timed(&mut timings.lookup, lookup).await;
        if learned > 0 {
            self.discard_untrusted();
        }
        let (registry, candidates) = found.map_err(CallError::Lookup)?;
        if candidates.is_empty() {
            return Err(self.no_candidates(query, spec).await);
        }
        let mut ready = self
            .first_usable(&registry, candidates, spec, started, timings)
            .await?;
        ready.installed = self.prepare(&ready).await?;
        Ok(ready)
    }

    /// The first of `candidates` that passes every check, compiled; its version is
    /// remembered (rollback memory) before it runs.
    async fn first_usable(
        &self,
        registry: &RegistryClient,
        candidates: Vec<Candidate>,
        spec: &CallSpec,
        started: Instant,
        timings: PhaseTimings,
    ) -> Result<Ready, CallError> {
        self.first_passing(registry, candidates, spec, started, timings, true)
            .await
    }

    /// As [`first_usable`](Self::first_usable); the version is remembered only if
    /// `remember` (an installer's is remembered once it installed, not when it was
    /// merely checked, declined or failed).
    async fn first_passing(
        &self,
        registry: &RegistryClient,
        candidates: Vec<Candidate>,
        spec: &CallSpec,
        started: Instant,
        mut timings: PhaseTimings,
        remember: bool,
    ) -> Result<Ready, CallError> {
        let mut rejected = Vec::new();
        for candidate in candidates {
            let lease = candidate.lease;
            let name = candidate
                .manifest
                .peek()
                .map(|m| m.name)
                .unwrap_or_else(|_| "<undecodable manifest>".into());
            match self.vet(registry, &candidate, spec, &mut timings).await {
                Ok(Vetted { manifest, compiled }) => {
                    self.holdings.hold(lease, &manifest, &candidate.interface);
                    if remember {
                        self.remember_version(&manifest).map_err(CallError::State)?;
                    }
                    let chosen = Chosen {
                        lease,
                        name: manifest.name.clone(),
                        version: manifest.version.clone(),
                        vendor: manifest.vendor_key,
                        interface: candidate.interface.clone(),
                        component: manifest.component_hash,
                        endpoints: manifest.endpoints.clone(),
                        provider_pin: manifest.provider_pin,
                    };
                    for r in &rejected {
                        tracing::info!("skipped {r}");
                    }
                    return Ok(Ready {
                        chosen,
                        compiled,
                        manifest,
                        rejected,
                        timings,
                        started,
                        installed: Vec::new(),
                    });
                }
                Err(reason) => {
                    tracing::debug!(%lease, %name, "candidate skipped: {reason}");
                    rejected.push(Rejection {
                        lease,
                        name,
                        reason,
                    });
                }
            }
        }
        Err(CallError::NoUsableCandidate { rejected })
    }
}

impl Client {
    /// Remembers `manifest`'s version as accepted (rollback memory), from the key acting
    /// for its vendor now.
    fn remember_version(&self, manifest: &Manifest) -> Result<(), crate::state::StateError> {
        let current = self.trust.current(&manifest.vendor_key);
        self.versions.remember(manifest, &current)
    }
}

/// A call with everything checked and compiled: ready to run.
struct Ready {
    /// The candidate that passed.
    chosen: Chosen,
    /// Its component.
    compiled: Arc<Compiled>,
    /// Its verified manifest.
    manifest: Arc<verified::VerifiedManifest>,
    /// The candidates skipped before it.
    rejected: Vec<Rejection>,
    /// The call's phases so far.
    timings: PhaseTimings,
    /// When the call began.
    started: Instant,
    /// The prerequisites installed for it.
    installed: Vec<prerequisites::Installed>,
}

impl Ready {
    /// What the proxy may reach: the endpoints and pin of its signed manifest.
    fn target(&self) -> ProviderTarget {
        ProviderTarget {
            endpoints: self.manifest.endpoints.clone(),
            pin: self.manifest.provider_pin,
        }
    }
}

/// The interface a query names, parsed for the call.
fn parse_interface(query: &ServiceQuery) -> Result<InterfaceName, InvokeError> {
    query
        .interface
        .parse()
        .map_err(|e: courier_protocol::InterfaceNameError| InvokeError::Interface(e.to_string()))
}
