//! Self-installing prerequisites: before a proxy that exports
//! `courier:proxy/prerequisites` is called, its predicate runs in the sandbox and answers
//! what is missing on this client. For each missing service the client finds an installer
//! proxy in the registry (one exporting `courier:proxy/installer`, registered with the
//! attribute `provides` naming the interface, at a version the requirement accepts),
//! checks it as any candidate (`vet`), resolves the installer's own prerequisites first,
//! asks the operator (or the policy), and runs its `install`; a missing package goes to the
//! command the policy lends as `install-package`. Then the predicate is asked again: what
//! it still calls missing is a failure (a predicate or an installer that lied).
//!
//! Resolution is depth-first with a depth cap and a bound on installs, refuses a cycle
//! naming the chain, and installs a requirement met earlier in the resolution only once.
//! The operator is asked top down, before an installer's own prerequisites are met. When
//! anything in a chain fails, what the chain added is undone in reverse order: each first
//! install's `remove` (a failed one's too: it may have left something), each package the
//! client saw absent before through `remove-package`; an interface courier had installed
//! before (an upgrade) and a package that was already there stay. Every install is
//! recorded in the ledger (`ledger`), and forgotten again when undone; an installer's
//! version enters the rollback memory only once it installed.

mod answers;
mod errors;

pub use errors::{PrerequisiteError, Requirement, Unwound};

use super::ledger::LedgerEntry;
use super::{CallError, Client, PhaseTimings, Ready, vet};
use crate::host::{confirm_outside_run, printable, run_command};
use crate::invoke::{CallSpec, Invocation};
use crate::policy::LentCommand;
use crate::provider::ProviderTarget;
use crate::sandbox::{Compiled, RunScope};
use answers::{requirements, string_result};
use courier_protocol::{AttributeConstraint, Candidate, Manifest, ServiceQuery};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// The interface a proxy exports to say what it needs.
pub const PREREQUISITES_INTERFACE: &str = "courier:proxy/prerequisites@0.1.0";
/// The interface an installer proxy exports.
pub const INSTALLER_INTERFACE: &str = "courier:proxy/installer@0.1.0";
/// The manifest attribute naming the interface an installer provides.
pub const PROVIDES_ATTRIBUTE: &str = "provides";
/// The host fact an installer's run is given: the interface its signed manifest says it
/// provides (attribute `provides`).
pub const PROVIDES_FACT: &str = "courier-provides";
/// The host fact an installer's run is given: its signed version, the version it installs.
pub const VERSION_FACT: &str = "courier-version";
/// The lent command that installs a package (its name appended).
pub const INSTALL_PACKAGE: &str = "install-package";
/// The lent command that removes a package (its name appended).
pub const REMOVE_PACKAGE: &str = "remove-package";
/// How deep a chain of prerequisites may go by default.
pub const DEFAULT_PREREQUISITE_DEPTH: usize = 4;
/// How many installers of one interface are asked of the registry (all versions: the
/// requirement is checked here).
pub const INSTALLER_CANDIDATES: u32 = 64;
/// The most prerequisites one resolution installs (a bound on the work predicates can
/// ask for: each level may name up to 64).
pub const MAX_STEPS: usize = 32;

/// One prerequisite installed before a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// What was missing.
    pub requirement: Requirement,
    /// The installer that put it in place (`acme/glyphs 1.4.0`), or the lent command.
    pub by: String,
    /// The installer's own line about it.
    pub detail: String,
    /// How deep in the chain (1: a prerequisite of the proxy called).
    pub depth: usize,
}

/// One undo step: how to take back what an install did.
enum Undo {
    Service {
        compiled: Arc<Compiled>,
        target: ProviderTarget,
        manifest: Box<Manifest>,
    },
    Package(String),
}

/// What one resolution has done so far.
struct Resolving {
    /// The chain from the proxy called to the requirement being resolved, for messages.
    chain: Vec<String>,
    /// The requirements on the chain (their keys), for cycles.
    keys: Vec<String>,
    /// Installs to undo if the chain fails, in the order done.
    undo: Vec<(Requirement, Undo)>,
    /// What was installed.
    installed: Vec<Installed>,
    /// The requirements met in this resolution (their keys): one named again, by another
    /// proxy of the chain or twice in one answer, is not installed again.
    met: HashSet<String>,
    /// Installers looked up and packages installed so far, against [`MAX_STEPS`].
    steps: usize,
    /// The depth cap.
    cap: usize,
}

impl Resolving {
    /// The chain with `next` at its end, for an error.
    fn chain_to(&self, next: &Requirement) -> Vec<String> {
        let mut chain = self.chain.clone();
        chain.push(next.to_string());
        chain
    }
}

/// What a resolution installed, and how to undo it.
#[derive(Default)]
pub(super) struct Resolved {
    /// What was installed, in order.
    pub(super) installed: Vec<Installed>,
    undo: Vec<(Requirement, Undo)>,
}

impl Client {
    /// Undoes everything `resolved` installed, in reverse order.
    pub(super) async fn undo_resolved(&self, resolved: Resolved) -> Vec<Unwound> {
        self.unwind(resolved.undo).await
    }
}

type Step<'a> = Pin<Box<dyn Future<Output = Result<(), PrerequisiteError>> + Send + 'a>>;

impl Client {
    /// Installs what the chosen proxy's predicate says is missing, if it has one; what was
    /// installed is returned. A chain that fails is undone before the error returns.
    pub(super) async fn prepare(&self, ready: &Ready) -> Result<Vec<Installed>, CallError> {
        if !exports_prerequisites(&ready.compiled) {
            return Ok(Vec::new());
        }
        let who = format!("{} {}", ready.manifest.name, ready.manifest.version);
        let unresolved = |error: PrerequisiteError| CallError::Prerequisites {
            error: Box::new(error),
            unwound: Vec::new(),
        };
        // Nothing missing: nothing to wait for. Otherwise one process of this client
        // installs at a time, and the predicate is asked again once this one may (another
        // may have installed it meanwhile).
        let missing = self.missing(&ready.compiled, ready.target(), &who).await;
        if missing.map_err(unresolved)?.is_empty() {
            return Ok(Vec::new());
        }
        let _installing = self
            .ledger
            .installing()
            .await
            .map_err(|e| unresolved(PrerequisiteError::Ledger(e)))?;
        Ok(self.resolve_held(ready).await?.installed)
    }

    /// As [`prepare`](Self::prepare), for a caller that holds the ledger's installing lock
    /// already (an update, from just after its question to its record), keeping how to
    /// undo what it installed: the caller's next step may still fail.
    pub(super) async fn resolve_held(&self, ready: &Ready) -> Result<Resolved, CallError> {
        if !exports_prerequisites(&ready.compiled) {
            return Ok(Resolved::default());
        }
        let who = format!("{} {}", ready.manifest.name, ready.manifest.version);
        let mut r = Resolving {
            chain: vec![who.clone()],
            keys: Vec::new(),
            undo: Vec::new(),
            installed: Vec::new(),
            met: HashSet::new(),
            steps: 0,
            cap: self.prerequisite_depth,
        };
        match self
            .satisfy(&ready.compiled, ready.target(), &who, &mut r)
            .await
        {
            Ok(()) => Ok(Resolved {
                installed: r.installed,
                undo: r.undo,
            }),
            Err(error) => {
                let unwound = self.unwind(std::mem::take(&mut r.undo)).await;
                Err(CallError::Prerequisites {
                    error: Box::new(error),
                    unwound,
                })
            }
        }
    }

    /// Meets every prerequisite `who`'s predicate names, depth first, then asks it again.
    /// A proxy without a predicate has none.
    fn satisfy<'a>(
        &'a self,
        compiled: &'a Compiled,
        target: ProviderTarget,
        who: &'a str,
        r: &'a mut Resolving,
    ) -> Step<'a> {
        Box::pin(async move {
            if !exports_prerequisites(compiled) {
                return Ok(());
            }
            let missing = self.missing(compiled, target.clone(), who).await?;
            if missing.is_empty() {
                return Ok(());
            }
            for requirement in missing {
                let key = requirement.key();
                if r.met.contains(&key) {
                    continue;
                }
                if r.keys.contains(&key) {
                    return Err(PrerequisiteError::Cycle {
                        chain: r.chain_to(&requirement),
                    });
                }
                if r.keys.len() >= r.cap {
                    return Err(PrerequisiteError::TooDeep {
                        chain: r.chain_to(&requirement),
                        cap: r.cap,
                    });
                }
                r.steps += 1;
                if r.steps > MAX_STEPS {
                    return Err(PrerequisiteError::TooMany {
                        chain: r.chain_to(&requirement),
                        max: MAX_STEPS,
                    });
                }
                r.chain.push(requirement.to_string());
                r.keys.push(key.clone());
                match &requirement {
                    Requirement::Service { interface, version } => {
                        self.install_service(&requirement, interface, version, who, r)
                            .await?
                    }
                    Requirement::Package(name) => {
                        self.install_package(&requirement, name, who, r).await?
                    }
                }
                r.chain.pop();
                r.keys.pop();
                r.met.insert(key);
            }
            let still = self.missing(compiled, target, who).await?;
            if still.is_empty() {
                Ok(())
            } else {
                Err(PrerequisiteError::StillMissing {
                    proxy: who.to_owned(),
                    missing: still,
                })
            }
        })
    }

    /// Finds and checks the installer of one missing service, asks the operator, meets
    /// the installer's own prerequisites, and runs it. Questions come top down (a "no"
    /// comes before anything below it is installed), installs bottom up.
    async fn install_service(
        &self,
        requirement: &Requirement,
        interface: &str,
        version: &str,
        who: &str,
        r: &mut Resolving,
    ) -> Result<(), PrerequisiteError> {
        let chain = r.chain.clone();
        let ready = self
            .find_installer(interface, version)
            .await
            .map_err(|reason| PrerequisiteError::NoInstaller {
                chain: chain.clone(),
                reason,
            })?;
        let by = format!("{} {}", ready.manifest.name, ready.manifest.version);
        let question = printable(&format!(
            "install {interface} {} with {by} (signed by {}), needed by {who}?",
            ready.manifest.version, ready.manifest.vendor_key
        ));
        if !self.confirm(&question).await {
            return Err(PrerequisiteError::Declined { chain });
        }
        // The installer's own prerequisites first.
        self.satisfy(&ready.compiled, ready.target(), &by, r)
            .await?;
        let failed = |reason: String| PrerequisiteError::InstallFailed {
            chain: chain.clone(),
            by: by.clone(),
            reason,
        };
        let installed_version = ready
            .manifest
            .semver()
            .ok_or_else(|| failed("its version is not semver".into()))?;
        // Something of this interface that courier installed before stays if this fails
        // (an installer's failed install leaves the version before): only a first install
        // is undone with the chain. Recorded for undoing before it runs, so that a failed
        // first install's `remove` runs too.
        if !self.ledger.has(&requirement.key()) {
            r.undo.push((
                requirement.clone(),
                Undo::Service {
                    compiled: Arc::clone(&ready.compiled),
                    target: ready.target(),
                    manifest: Box::new(Manifest::clone(&ready.manifest)),
                },
            ));
        }
        let detail = self
            .run_installer(&ready.compiled, ready.target(), &ready.manifest, "install")
            .await
            .map_err(failed)?;
        // The ledger first: it is what the undo and `courier updates` go by.
        self.ledger
            .record(LedgerEntry::Service {
                provides: interface.to_owned(),
                installer: ready.manifest.name.clone(),
                version: installed_version,
                vendor: ready.manifest.vendor_key,
                requirement: version.to_owned(),
                required_by: who.to_owned(),
                installed_at_ms: vet::now_ms(),
            })
            .map_err(PrerequisiteError::Ledger)?;
        self.remember_version(&ready.manifest)
            .map_err(PrerequisiteError::Ledger)?;
        tracing::info!(%interface, installer = %by, "prerequisite installed: {detail}");
        r.installed.push(Installed {
            requirement: requirement.clone(),
            by,
            detail,
            depth: r.keys.len(),
        });
        Ok(())
    }

    /// Installs one missing package with the command the policy lends. A package this
    /// system has already is not installed again (the predicate could not see it: the
    /// second check will say so); one the client saw absent before is removed when the
    /// chain is undone.
    async fn install_package(
        &self,
        requirement: &Requirement,
        name: &str,
        who: &str,
        r: &mut Resolving,
    ) -> Result<(), PrerequisiteError> {
        let chain = r.chain.clone();
        let before = self.sandbox.package_installed(name).await;
        if before == Some(true) {
            return Ok(());
        }
        let policy = self.sandbox.policy();
        let Some(command) = policy.command(INSTALL_PACKAGE) else {
            return Err(PrerequisiteError::NoPackageCommand { chain });
        };
        let failed = |reason: String| PrerequisiteError::InstallFailed {
            chain: chain.clone(),
            by: INSTALL_PACKAGE.into(),
            reason,
        };
        command
            .check_args(std::slice::from_ref(&name.to_owned()))
            .map_err(|e| failed(e.to_string()))?;
        let line = printable(&format!("{} {name}", command.argv.join(" ")));
        if !self
            .confirm(&format!(
                "install package {name} ({line}), needed by {who}?"
            ))
            .await
        {
            return Err(PrerequisiteError::Declined { chain });
        }
        // Seen absent: this chain adds it, and takes it back if it fails. Not seen at all
        // (no package database courier reads), it may have been there all along, so a
        // failed chain leaves it rather than remove what it cannot tell it added.
        if before == Some(false) {
            r.undo
                .push((requirement.clone(), Undo::Package(name.to_owned())));
        }
        let detail = self
            .run_package_command(command, name)
            .await
            .map(|()| format!("{line}: exit 0"))
            .map_err(|e| failed(format!("{line}: {e}")))?;
        self.ledger
            .record(LedgerEntry::Package {
                name: name.to_owned(),
                required_by: who.to_owned(),
                installed_at_ms: vet::now_ms(),
            })
            .map_err(PrerequisiteError::Ledger)?;
        r.installed.push(Installed {
            requirement: requirement.clone(),
            by: INSTALL_PACKAGE.into(),
            detail,
            depth: r.keys.len(),
        });
        Ok(())
    }

    /// Undoes `steps` in reverse order, forgetting each in the ledger.
    async fn unwind(&self, steps: Vec<(Requirement, Undo)>) -> Vec<Unwound> {
        let mut unwound = Vec::with_capacity(steps.len());
        for (requirement, undo) in steps.into_iter().rev() {
            let mut result = match undo {
                Undo::Service {
                    compiled,
                    target,
                    manifest,
                } => {
                    self.run_installer(&compiled, target, &manifest, "remove")
                        .await
                }
                Undo::Package(name) => self.remove_package(&name).await,
            };
            if let Ok(line) = &result
                && let Err(e) = self.ledger.forget(&requirement.key())
            {
                result = Err(format!(
                    "undone ({line}), but the ledger could not be updated and still records it: {e}"
                ));
            }
            unwound.push(Unwound {
                requirement,
                result,
            });
        }
        unwound
    }

    /// Removes a package with the command the policy lends for it, asking first when
    /// the policy says that command's every run is confirmed.
    async fn remove_package(&self, name: &str) -> Result<String, String> {
        let policy = self.sandbox.policy();
        let command = policy
            .command(REMOVE_PACKAGE)
            .ok_or_else(|| format!("the policy lends no {REMOVE_PACKAGE} command"))?;
        if command.confirm {
            let line = printable(&format!("{} {name}", command.argv.join(" ")));
            let question = format!("remove package {name} ({line}), undoing a failed install?");
            if !self.confirm(&question).await {
                return Err(format!("not removed: {line} was declined"));
            }
        }
        self.run_package_command(command, name).await?;
        Ok(format!("removed package {name}"))
    }

    /// Runs the lent package command `command` for the package `name`, then reads the
    /// installed packages again (whatever it did); why it failed, if it did.
    async fn run_package_command(&self, command: &LentCommand, name: &str) -> Result<(), String> {
        let args = vec![name.to_owned()];
        command.check_args(&args).map_err(|e| e.to_string())?;
        let cap = self.sandbox.policy().limits.command_output_bytes;
        let result = run_command(command, &args, command.timeout, cap).await;
        self.sandbox.reread_packages().await;
        match result {
            Ok(out) if out.status == 0 => Ok(()),
            Ok(out) => Err(format!("exit {}: {}", out.status, out.stderr.trim())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// What `who`'s predicate says is missing now.
    async fn missing(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        who: &str,
    ) -> Result<Vec<Requirement>, PrerequisiteError> {
        let predicate = |reason: String| PrerequisiteError::Predicate {
            proxy: who.to_owned(),
            reason,
        };
        // A predicate looks and does not touch: the directory read-only, no commands.
        let scope = self.sandbox.read_only_scope();
        let values = self
            .run_once(compiled, target, PREREQUISITES_INTERFACE, "missing", scope)
            .await
            .map_err(predicate)?;
        requirements(&values).map_err(predicate)
    }

    /// Runs an installer's `install` or `remove` and reports the outcome (so that a rollout
    /// of an installer hears of it); its answer line, or why it failed.
    pub(super) async fn run_installer(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        manifest: &Manifest,
        function: &str,
    ) -> Result<String, String> {
        let started = Instant::now();
        // What its signed manifest says it installs, for the installer to hold its provider
        // to (and to remove by, whatever the provider says then).
        let provides = manifest
            .attributes
            .get(PROVIDES_ATTRIBUTE)
            .cloned()
            .unwrap_or_default();
        let scope = self.sandbox.scope_with_facts(&[
            (PROVIDES_FACT, provides),
            (VERSION_FACT, manifest.version.clone()),
        ]);
        let result = match self
            .run_once(compiled, target, INSTALLER_INTERFACE, function, scope)
            .await
        {
            Ok(values) => string_result(&values),
            Err(e) => Err(e),
        };
        let detail = match &result {
            Ok(line) | Err(line) => line.clone(),
        };
        let qualified = format!("{INSTALLER_INTERFACE}.{function}");
        self.reporter
            .report(
                &self.link,
                manifest,
                &qualified,
                result.is_ok(),
                detail,
                started,
            )
            .await;
        result
    }

    /// Runs `interface.function()` once; the values, or why it did not answer.
    async fn run_once(
        &self,
        compiled: &Compiled,
        target: ProviderTarget,
        interface: &str,
        function: &str,
        scope: RunScope,
    ) -> Result<Vec<wasmtime::component::Val>, String> {
        let name = interface
            .parse()
            .map_err(|e: courier_protocol::InterfaceNameError| e.to_string())?;
        let spec = CallSpec::new(name, function, "()");
        let invocation =
            Invocation::prepare(compiled.component(), &compiled.interfaces().exports, &spec)
                .map_err(|e| e.to_string())?;
        self.sandbox
            .run_scoped(compiled, target, &invocation, scope)
            .await
            .map(|out| out.values)
            .map_err(|failure| failure.error.to_string())
    }

    /// The installer of `interface` at a version `version` accepts: the registry's
    /// candidates that claim to provide it, highest version first, the first that passes
    /// every check (`vet`) for `install`; its verified manifest must say it provides the
    /// interface at such a version.
    async fn find_installer(&self, interface: &str, version: &str) -> Result<Ready, String> {
        let req: semver::VersionReq = version
            .parse()
            .map_err(|e| format!("the requirement {version:?} is not semver: {e}"))?;
        let (registry, candidates) = self
            .link
            .find(installer_query(interface, INSTALLER_CANDIDATES))
            .await
            .map_err(|e| format!("lookup: {e}"))?;
        let offered = installers_of(candidates, interface, |_, v| req.matches(v));
        if offered.is_empty() {
            return Err(format!(
                "no installer in the registry provides {interface} {version}"
            ));
        }
        let spec = CallSpec::new(
            INSTALLER_INTERFACE
                .parse()
                .map_err(|e: courier_protocol::InterfaceNameError| e.to_string())?,
            "install",
            "()",
        );
        let candidates = offered.into_iter().map(|(_, c)| c).collect();
        let ready = self
            .first_passing(
                &registry,
                candidates,
                &spec,
                Instant::now(),
                PhaseTimings::default(),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
        let verified = &ready.manifest;
        if !provides(verified, interface) || !verified.semver().is_some_and(|v| req.matches(&v)) {
            return Err(format!(
                "{} {} does not sign that it provides {interface} {version}",
                verified.name, verified.version
            ));
        }
        Ok(ready)
    }

    /// Asks the operator (or the policy).
    pub(super) async fn confirm(&self, question: &str) -> bool {
        let policy = self.sandbox.policy();
        confirm_outside_run(policy.operator, &self.sandbox.config().console, question).await
    }
}

/// The registry query for installers of `interface`.
pub(super) fn installer_query(interface: &str, limit: u32) -> ServiceQuery {
    ServiceQuery {
        interface: "courier:proxy/installer".into(),
        version_req: Some("^0.1.0".into()),
        functions: vec!["install".into(), "remove".into()],
        attributes: vec![AttributeConstraint::Equals(
            PROVIDES_ATTRIBUTE.into(),
            interface.into(),
        )],
        limit,
    }
}

/// The candidates whose (not yet verified) manifest says it provides `interface` at a
/// semver version that `keep` accepts, highest version first.
pub(super) fn installers_of(
    candidates: Vec<Candidate>,
    interface: &str,
    keep: impl Fn(&Manifest, &semver::Version) -> bool,
) -> Vec<(semver::Version, Candidate)> {
    let mut offered: Vec<(semver::Version, Candidate)> = candidates
        .into_iter()
        .filter_map(|c| {
            let m = c.manifest.peek().ok()?;
            let v = m.semver()?;
            (provides(&m, interface) && keep(&m, &v)).then_some((v, c))
        })
        .collect();
    offered.sort_by(|a, b| b.0.cmp(&a.0));
    offered
}

/// Whether `manifest` says it provides `interface`.
pub(super) fn provides(manifest: &Manifest, interface: &str) -> bool {
    manifest
        .attributes
        .get(PROVIDES_ATTRIBUTE)
        .is_some_and(|p| p == interface)
}

/// Whether the component exports the predicate.
fn exports_prerequisites(compiled: &Compiled) -> bool {
    compiled
        .interfaces()
        .exports
        .iter()
        .any(|e| e.interface == PREREQUISITES_INTERFACE)
}
