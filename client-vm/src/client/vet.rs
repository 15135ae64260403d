//! The check order: everything a candidate must pass before a byte of it is compiled, and
//! the component it is then compiled to. Cheapest first, so that a forged, untrusted or
//! stale manifest is refused before anything is downloaded:
//!
//! 1. the manifest's signature (`SignedManifest::verify`);
//! 2. its vendor key is trusted and not revoked (rotations followed), or a trusted root's
//!    unexpired, unrevoked delegation chain reaches it and covers the service name;
//! 3. it is within its validity window;
//! 4. its vendor's freshness statement, served with it, verifies, is fresh by the policy's
//!    window and does not name a newer version (unless pinned); the version it names
//!    raises the rollback memory (see `freshness`);
//! 5. its version is not below the highest accepted from the vendor, or is exactly the
//!    pinned one;
//! 6. it claims the interface and function called;
//! 7. the imports it declares are granted by the policy;
//! 8. the size it declares is within the policy's cap;
//! 9. the component is fetched by hash, reading no more than that declared size (or taken
//!    compiled from the cache, which holds only components that passed 9–11 before, or
//!    loaded from the client's compiled-code directory, whose files it wrote after 9–11 and
//!    authenticates before deserializing; their real imports are checked again);
//! 10. its bytes have the declared hash and size;
//! 11. its real imports are granted (read from the component before compiling) and its real
//!     exports include the function called.
//!
//! A candidate failing a check gets a [`RejectReason`] and the next one is tried.

use super::freshness::{self, FreshnessRefusal};
use super::timings::{PhaseTimer, timed};
use super::verified::VerifiedManifest;
use super::{Client, PhaseTimings, RejectReason};
use crate::invoke::{CallSpec, lookup};
use crate::policy::Policy;
use crate::sandbox::{CompileError, Compiled, Provenance};
use courier_protocol::{Candidate, Manifest};
use courier_transport::RegistryClient;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A candidate that passed every check, and its compiled component.
pub(super) struct Vetted {
    /// The verified manifest.
    pub(super) manifest: Arc<VerifiedManifest>,
    /// The component, compiled by this client (or from its cache).
    pub(super) compiled: Arc<Compiled>,
}

impl Client {
    /// Runs every check on `candidate` for the call `spec`, in order, and returns it
    /// compiled; `registry` is the connection that offered it (and serves its component).
    /// Time spent is added to `timings` by phase.
    pub(super) async fn vet(
        &self,
        registry: &RegistryClient,
        candidate: &Candidate,
        spec: &CallSpec,
        timings: &mut PhaseTimings,
    ) -> Result<Vetted, RejectReason> {
        let policy = self.sandbox.policy();

        // 1-8: what the signed manifest says, checked before anything is downloaded.
        let verifying = PhaseTimer::start(&mut timings.verify);
        let (manifest, _) = self.vouched(candidate)?; // 1-4.
        let now = now_ms();
        self.versions.check(&manifest, &self.trust.read())?; // 5. version, rollback
        check_claims(&manifest, spec)?; // 6. claims
        manifest.declared_imports_granted(policy)?; // 7. declared capabilities
        check_declared_size(&manifest, policy)?; // 8. declared size
        drop(verifying);

        // 9-11: the component, compiled before, or fetched, checked against the manifest
        // and compiled (its real imports are checked against the policy first).
        let hash = manifest.component_hash;
        let cached = {
            let _compiling = PhaseTimer::start(&mut timings.compile);
            self.sandbox.cached(&hash)
        };
        let cached = match cached {
            Some(compiled) => {
                timings.cache_hit = true;
                Some(compiled)
            }
            None => {
                let loading = self.sandbox.load_compiled(hash, now);
                let loaded = timed(&mut timings.compile, loading).await;
                timings.from_disk = loaded.is_some();
                loaded
            }
        };
        let compiled = match cached {
            Some(compiled) => compiled,
            None => {
                let size = manifest.component_size;
                let deadline = policy.limits.fetch_timeout;
                let fetch = async {
                    self.link.identify(registry).await; // metered as this client's
                    registry
                        .fetch_for(Some(candidate.lease), hash, size, deadline)
                        .await
                };
                let bytes = timed(&mut timings.fetch, fetch) // 9. fetch, at most `size`
                    .await
                    .map_err(RejectReason::Fetch)?;
                let checking = check_hash_and_size(bytes, &manifest); // 10. hash and size
                let bytes = timed(&mut timings.verify, checking).await?;
                let provenance = Provenance {
                    vendor: manifest.vendor_key,
                    service: manifest.name.clone(),
                    not_after_ms: manifest.not_after_ms,
                };
                let compiling = self.sandbox.compile_hashed(bytes, hash, Some(provenance)); // 11.
                let (compiled, hit) = timed(&mut timings.compile, compiling)
                    .await
                    .map_err(compile_refusal)?;
                timings.cache_hit = hit;
                compiled
            }
        };
        // 11. the component itself exports what the manifest claims and the call needs.
        lookup(compiled.component(), &compiled.interfaces().exports, spec)
            .map_err(RejectReason::MissingExport)?;
        Ok(Vetted { manifest, compiled })
    }

    /// Checks 1-4: the signature, the vendor's trust, the validity window and the
    /// vendor's freshness statement. Returns the verified manifest and the version the
    /// statement names as current, if one came (the policy may let none through).
    pub(super) fn vouched(
        &self,
        candidate: &Candidate,
    ) -> Result<(Arc<VerifiedManifest>, Option<semver::Version>), RejectReason> {
        let policy = self.sandbox.policy();
        let signed = &candidate.manifest;
        let manifest = self
            .verified
            .manifests
            .verify(&signed.bytes, &signed.signature, || {
                signed
                    .verify()
                    .map(|m| VerifiedManifest::new(m.into_inner()))
            })?; // 1. signature
        let now = now_ms();
        self.trust
            .check_for(&manifest.vendor_key, &manifest.name, now)?; // 2. trusted vendor
        manifest.check_times(now)?; // 3. validity window
        let pinned = self.versions.is_pinned(&manifest.name);
        let stated = freshness::check(
            candidate,
            &manifest,
            &self.trust,
            &self.verified.freshness,
            &policy.freshness,
            pinned,
            now,
        ); // 4.
        if let Ok(Some(current)) | Err(FreshnessRefusal::Outdated { current, .. }) = &stated {
            self.learn_version(&manifest, current);
        }
        Ok((manifest, stated?))
    }

    /// Raises the rollback memory to the version `manifest`'s vendor states is current, so
    /// an older one is refused from now on even where no statement comes with it. A mark
    /// that cannot be written stays in memory, with a warning: nothing runs on it.
    fn learn_version(&self, manifest: &Manifest, current: &semver::Version) {
        let vendor = self.trust.current(&manifest.vendor_key);
        if let Err(e) = self.versions.learn(&vendor, &manifest.name, current) {
            tracing::warn!(service = %manifest.name, "cannot keep the version its vendor states: {e}");
        }
    }
}

/// Check 6: the manifest claims the interface and the function called.
fn check_claims(manifest: &Manifest, spec: &CallSpec) -> Result<(), RejectReason> {
    let claimed = manifest
        .exports
        .iter()
        .find(|e| spec.matches_export(&e.interface))
        .ok_or_else(|| RejectReason::NotClaimed(spec.interface.to_string()))?;
    if !claimed.functions.contains(&spec.function) {
        return Err(RejectReason::NotClaimed(format!(
            "{}.{}",
            claimed.interface, spec.function
        )));
    }
    Ok(())
}

/// Check 8: the declared component size is within the policy's cap.
fn check_declared_size(manifest: &Manifest, policy: &Policy) -> Result<(), RejectReason> {
    let limit = policy.limits.component_bytes;
    if manifest.component_size > limit {
        return Err(RejectReason::TooLarge {
            size: manifest.component_size,
            limit,
        });
    }
    Ok(())
}

/// Check 10: the fetched bytes have the manifest's hash and size
/// (`Manifest::check_component`), computed off the async threads like compiling.
async fn check_hash_and_size(
    bytes: Vec<u8>,
    manifest: &Manifest,
) -> Result<Arc<[u8]>, RejectReason> {
    let bytes: Arc<[u8]> = Arc::from(bytes);
    let (checking, expected) = (bytes.clone(), manifest.clone());
    tokio::task::spawn_blocking(move || expected.check_component(&checking))
        .await
        .map_err(|e| RejectReason::Compile(CompileError::Task(e.to_string())))??;
    Ok(bytes)
}

/// Why compiling refused a candidate: its real imports are not granted, or it could not be
/// read or compiled.
fn compile_refusal(error: CompileError) -> RejectReason {
    match error {
        CompileError::NotGranted(missing) => RejectReason::Capabilities(missing),
        other => RejectReason::Compile(other),
    }
}

/// Now, in milliseconds since the Unix epoch (for the validity window).
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
