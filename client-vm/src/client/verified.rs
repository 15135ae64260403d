//! Signature checks remembered by what they covered, so that a warm call verifies neither
//! its manifest nor its vendor's freshness statement again. What a check says stays true as
//! long as the signed bytes and the signature are the same; times and trust are checked on
//! every call anyway. Off for a client that keeps nothing between calls (strict discard).
//!
//! An entry is found by its signature and kept with the bytes it covered, which must be
//! equal byte for byte: cheaper on every warm call than hashing the bytes again (SHA-256
//! of a manifest was most of the warm call's checks), and no weaker. Values are shared, not
//! copied out.

use crate::policy::{MissingCapabilities, Policy};
use courier_protocol::{FreshnessStatement, Manifest};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

/// Most verified values remembered of one kind (the cache is emptied when full).
const VERIFIED_CACHE: usize = 256;

/// The signature checks a client remembers.
pub(super) struct Verifications {
    /// Manifests, by signature and signed bytes.
    pub(super) manifests: VerifiedCache<VerifiedManifest>,
    /// Vendors' freshness statements, by signature and signed bytes.
    pub(super) freshness: VerifiedCache<FreshnessStatement>,
}

impl Verifications {
    /// Caches that remember, if `remember`.
    pub(super) fn new(remember: bool) -> Self {
        Self {
            manifests: VerifiedCache::new(remember),
            freshness: VerifiedCache::new(remember),
        }
    }
}

/// A manifest whose signature verified, with what the client's policy says of the imports
/// it declares, worked out on the first call that asks.
#[derive(Debug)]
pub(super) struct VerifiedManifest {
    manifest: Manifest,
    /// The answer, and the address of the policy that gave it.
    declared_imports: OnceLock<(usize, Result<(), MissingCapabilities>)>,
}

impl VerifiedManifest {
    /// A manifest whose signature verified.
    pub(super) fn new(manifest: Manifest) -> Self {
        Self {
            manifest,
            declared_imports: OnceLock::new(),
        }
    }

    /// Whether `policy` grants every import the manifest declares (check 7): the same
    /// answer as `policy.check_imports` on them. The answer is kept for the policy that
    /// first asked (a client's, fixed for its life, in one place); any other policy is
    /// asked afresh.
    pub(super) fn declared_imports_granted(
        &self,
        policy: &Policy,
    ) -> Result<(), MissingCapabilities> {
        let asker = std::ptr::from_ref(policy) as usize;
        let (kept_for, answer) = self
            .declared_imports
            .get_or_init(|| (asker, policy.check_imports(&self.manifest.imports)));
        if *kept_for == asker {
            answer.clone()
        } else {
            policy.check_imports(&self.manifest.imports)
        }
    }
}

impl Deref for VerifiedManifest {
    type Target = Manifest;

    fn deref(&self) -> &Manifest {
        &self.manifest
    }
}

/// A remembered check: the bytes it covered and the value they verified to.
type Entry<T> = (Box<[u8]>, Arc<T>);

/// Values whose signature was checked, by signature.
pub(super) struct VerifiedCache<T> {
    remember: bool,
    cache: Mutex<HashMap<[u8; 64], Entry<T>>>,
}

impl<T> VerifiedCache<T> {
    /// A cache, if `remember`; otherwise every value is verified every time.
    pub(super) fn new(remember: bool) -> Self {
        Self {
            remember,
            cache: Mutex::default(),
        }
    }

    /// The value `verify` makes of `bytes` signed with `signature`, or the one it made
    /// before for identical bytes and signature. A failed check is never remembered.
    pub(super) fn verify<E>(
        &self,
        bytes: &[u8],
        signature: &[u8; 64],
        verify: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if !self.remember {
            return verify().map(Arc::new);
        }
        if let Some((covered, value)) = self.lock().get(signature)
            && **covered == *bytes
        {
            return Ok(value.clone());
        }
        let value = Arc::new(verify()?);
        let mut cache = self.lock();
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(*signature, (bytes.into(), value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 64], Entry<T>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::OperatorAnswer;
    use std::cell::Cell;

    #[test]
    fn the_declared_imports_answer_is_kept_only_for_the_policy_that_gave_it() {
        let mut manifest = courier_test_support::signed_manifest_for(b"c", 1)
            .peek()
            .unwrap();
        manifest.imports = vec!["courier:proxy/operator@0.1.0".into()];
        let verified = VerifiedManifest::new(manifest);
        let strict = Policy::default();
        let permissive = Policy::permissive(OperatorAnswer::ApproveAll);
        assert!(verified.declared_imports_granted(&strict).is_err());
        assert!(verified.declared_imports_granted(&strict).is_err());
        assert_eq!(verified.declared_imports_granted(&permissive), Ok(()));
        assert!(verified.declared_imports_granted(&strict).is_err());
    }

    #[test]
    fn a_check_is_made_once_per_signed_bytes_and_failures_are_not_kept() {
        let cache = VerifiedCache::new(true);
        let checks = Cell::new(0);
        let check = |ok: bool| {
            checks.set(checks.get() + 1);
            if ok { Ok(7) } else { Err("bad") }
        };
        let v = |r: Result<Arc<i32>, &'static str>| r.map(|v| *v);
        assert_eq!(v(cache.verify(b"a", &[1; 64], || check(true))), Ok(7));
        assert_eq!(v(cache.verify(b"a", &[1; 64], || check(true))), Ok(7));
        assert_eq!(checks.get(), 1);
        // Other bytes under the same signature, a prefix of them, or the same bytes with
        // another signature, are checked.
        assert_eq!(v(cache.verify(b"b", &[1; 64], || check(false))), Err("bad"));
        assert_eq!(v(cache.verify(b"", &[1; 64], || check(false))), Err("bad"));
        assert_eq!(v(cache.verify(b"a", &[2; 64], || check(false))), Err("bad"));
        assert_eq!(v(cache.verify(b"a", &[2; 64], || check(false))), Err("bad"));
        assert_eq!(checks.get(), 5);
        // What was kept is still there.
        assert_eq!(v(cache.verify(b"a", &[1; 64], || check(false))), Ok(7));
        assert_eq!(checks.get(), 5);
        // A cache that remembers nothing checks every time.
        let off = VerifiedCache::new(false);
        assert_eq!(v(off.verify(b"a", &[1; 64], || check(true))), Ok(7));
        assert_eq!(v(off.verify(b"a", &[1; 64], || check(true))), Ok(7));
        assert_eq!(checks.get(), 7);
    }
}
