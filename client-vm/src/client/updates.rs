//! Update checks over the ledger: for each interface this client installed, the registry's
//! installers of it from the same service (and the same vendor, across its rotations) at
//! a higher version. Only what this client may see is offered: the registry gates staged
//! versions by the client's rollout waves, and every offer passes checks 1-4 of `vet`
//! (signature, trust, validity, freshness) and the rollback memory. Applying an update runs
//! the same confirmed path as a first install: the new installer is checked and compiled,
//! the operator confirms, its own prerequisites are met, and it installs over the old
//! version (an installer keeps the old version until its install succeeded). A failed
//! update undoes what was installed for it and leaves the old version in the ledger.

use super::ledger::LedgerEntry;
use super::prerequisites::{
    INSTALLER_CANDIDATES, INSTALLER_INTERFACE, installer_query, installers_of, provides,
};
use super::{CallError, Client, Installed, PhaseTimings, Rejection, Unwound, vet};
use crate::host::printable;
use crate::invoke::CallSpec;
use courier_protocol::{Candidate, VendorKey};
use std::time::Instant;

/// A newer installer for something in the ledger.
#[derive(Debug, Clone)]
pub struct UpdateOffer {
    /// The interface (`acme:fonts/glyphs`).
    pub provides: String,
    /// The installer's service name.
    pub installer: String,
    /// The version installed now.
    pub installed: semver::Version,
    /// The requirement it was installed for: offers stay within it.
    pub requirement: String,
    /// The version offered.
    pub offered: semver::Version,
    /// The key that signed the offer.
    pub vendor: VendorKey,
    /// The registration offering it.
    candidate: Candidate,
}

/// Why an update did not happen; the old version stays installed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The offered installer failed a check, or could not be fetched or compiled.
    #[error("{0}")]
    Checks(CallError),
    /// Its own prerequisites could not be met (what was installed for them is undone).
    #[error("{0}")]
    Prerequisites(CallError),
    /// The operator (or the policy) said no.
    #[error("declined")]
    Declined,
    /// The installer ran and failed.
    #[error("the installer failed: {0}")]
    Install(String),
    /// The lock that lets one process of this client install at a time could not be
    /// taken; nothing was installed.
    #[error("cannot take the installing lock: {0}")]
    Lock(crate::state::StateError),
    /// Installed, but the ledger (or the rollback memory) could not be written: the new
    /// version is in place, the ledger may still name the old one.
    #[error("installed, but not recorded: {0}")]
    Ledger(crate::state::StateError),
}

/// What became of one update.
#[derive(Debug)]
pub struct UpdateApplied {
    /// The offer.
    pub offer: UpdateOffer,
    /// The installer's line, or why the update did not happen (the old version stays).
    pub result: Result<String, UpdateError>,
    /// Prerequisites installed for it (kept when it succeeded).
    pub prerequisites: Vec<Installed>,
    /// What was undone after it failed.
    pub unwound: Vec<Unwound>,
}

/// What an update check found.
#[derive(Debug, Default)]
pub struct UpdateCheck {
    /// The offers, in the ledger's order.
    pub offers: Vec<UpdateOffer>,
    /// Newer installers that failed a check (signature, trust, freshness, rollback).
    pub skipped: Vec<Rejection>,
}

impl Client {
    /// What this client installed, in the order installed.
    pub fn installed(&self) -> Vec<LedgerEntry> {
        self.ledger.entries()
    }

    /// Asks the registry for newer installers of everything in the ledger.
    pub async fn check_updates(&self) -> Result<UpdateCheck, CallError> {
        self.link.identify(&self.link.current()).await;
        if self.trust.sync_if_due(|| self.registry()).await > 0 {
            self.discard_untrusted();
        }
        let mut check = UpdateCheck::default();
        for entry in self.ledger.entries() {
            let LedgerEntry::Service {
                provides: interface,
                installer,
                version,
                vendor,
                requirement,
                ..
            } = entry
            else {
                continue;
            };
            // Within what the dependent asked for: a new major version is not an update
            // for a `^1` prerequisite.
            let Ok(accepts) = requirement.parse::<semver::VersionReq>() else {
                continue;
            };
            let (_, candidates) = self
                .link
                .find_remote(installer_query(&interface, INSTALLER_CANDIDATES))
                .await
                .map_err(CallError::Lookup)?;
            let same_vendor = |k: &VendorKey| {
                let trust = self.trust.read();
                trust.current(k) == trust.current(&vendor)
            };
            let newer = installers_of(candidates, &interface, |m, v| {
                m.name == installer && *v > version && accepts.matches(v)
            });
            for (offered, candidate) in newer {
                let name = format!("{installer} {offered}");
                let checked = self.vouched(&candidate).and_then(|(manifest, _)| {
                    self.versions.check(&manifest, &self.trust.read())?;
                    Ok(manifest)
                });
                match checked {
                    Ok(m) if same_vendor(&m.vendor_key) && provides(&m, &interface) => {
                        check.offers.push(UpdateOffer {
                            provides: interface.clone(),
                            installer: installer.clone(),
                            installed: version.clone(),
                            requirement: requirement.clone(),
                            offered,
                            vendor: m.vendor_key,
                            candidate,
                        });
                        break;
                    }
                    Ok(_) => {}
                    Err(reason) => check.skipped.push(Rejection {
                        lease: candidate.lease,
                        name,
                        reason,
                    }),
                }
            }
        }
        Ok(check)
    }

    /// Applies `offers` one by one, each through the confirmed install path.
    pub async fn apply_updates(&self, offers: Vec<UpdateOffer>) -> Vec<UpdateApplied> {
        let mut done = Vec::with_capacity(offers.len());
        for offer in offers {
            done.push(self.apply_update(offer).await);
        }
        done
    }

    /// The version of `provides` the ledger records now.
    fn installed_version(&self, provides: &str) -> Option<semver::Version> {
        self.ledger.entries().into_iter().find_map(|e| match e {
            LedgerEntry::Service {
                provides: p,
                version,
                ..
            } if p == provides => Some(version),
            _ => None,
        })
    }

    async fn apply_update(&self, offer: UpdateOffer) -> UpdateApplied {
        let mut applied = UpdateApplied {
            offer,
            result: Ok(String::new()),
            prerequisites: Vec::new(),
            unwound: Vec::new(),
        };
        let offer = &applied.offer;
        let spec = match INSTALLER_INTERFACE.parse() {
            Ok(name) => CallSpec::new(name, "install", "()"),
            Err(e) => {
                applied.result = Err(UpdateError::Checks(CallError::BadCall(
                    crate::invoke::InvokeError::Interface(format!("{e}")),
                )));
                return applied;
            }
        };
        let registry = self.link.current();
        let ready = match self
            .first_passing(
                &registry,
                vec![offer.candidate.clone()],
                &spec,
                Instant::now(),
                PhaseTimings::default(),
                false,
            )
            .await
        {
            Ok(ready) => ready,
            Err(e) => {
                applied.result = Err(UpdateError::Checks(e));
                return applied;
            }
        };
        let question = printable(&format!(
            "update {} from {} to {} with {} (signed by {})?",
            offer.provides, offer.installed, offer.offered, offer.installer, offer.vendor
        ));
        if !self.confirm(&question).await {
            applied.result = Err(UpdateError::Declined);
            return applied;
        }
        // One process of this client installs at a time; another may have updated this
        // interface since the offer was made.
        let _installing = match self.ledger.installing().await {
            Ok(lock) => lock,
            Err(e) => {
                applied.result = Err(UpdateError::Lock(e));
                return applied;
            }
        };
        if let Some(now) = self.installed_version(&offer.provides)
            && now >= offer.offered
        {
            applied.result = Ok(format!(
                "{} is at {now} already (updated meanwhile)",
                offer.provides
            ));
            return applied;
        }
        let resolved = match self.resolve_held(&ready).await {
            Ok(resolved) => resolved,
            Err(e) => {
                applied.result = Err(UpdateError::Prerequisites(e));
                return applied;
            }
        };
        applied.prerequisites = resolved.installed.clone();
        let result = self
            .run_installer(&ready.compiled, ready.target(), &ready.manifest, "install")
            .await
            .map_err(UpdateError::Install);
        match result {
            Ok(line) => {
                let required_by = self
                    .ledger
                    .entries()
                    .into_iter()
                    .find_map(|e| match e {
                        LedgerEntry::Service {
                            provides,
                            required_by,
                            ..
                        } if provides == offer.provides => Some(required_by),
                        _ => None,
                    })
                    .unwrap_or_default();
                let recorded = self
                    .ledger
                    .record(LedgerEntry::Service {
                        provides: offer.provides.clone(),
                        installer: offer.installer.clone(),
                        version: offer.offered.clone(),
                        vendor: offer.vendor,
                        requirement: offer.requirement.clone(),
                        required_by,
                        installed_at_ms: vet::now_ms(),
                    })
                    .and_then(|()| self.remember_version(&ready.manifest));
                applied.result = recorded.map(|()| line).map_err(UpdateError::Ledger);
            }
            Err(e) => {
                applied.unwound = self.undo_resolved(resolved).await;
                applied.prerequisites.clear();
                applied.result = Err(e);
            }
        }
        applied
    }
}
