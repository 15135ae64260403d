//! Signature checks remembered by what they covered, so that a warm call verifies neither
//! its manifest nor its vendor's freshness statement again. What a check says stays true as
//! long as the signed bytes and the signature are the same; times and trust are checked on
//! every call anyway. Off for a client that keeps nothing between calls (strict discard).

use courier_protocol::{ContentHash, FreshnessStatement, Manifest};
use std::collections::HashMap;
use std::sync::Mutex;

/// Most verified values remembered of one kind (the cache is emptied when full).
const VERIFIED_CACHE: usize = 256;

/// What identifies a signed value: the hash of its bytes and its signature.
type SignedBytes = (ContentHash, [u8; 64]);

/// The signature checks a client remembers.
pub(super) struct Verifications {
    /// Manifests, by their signed bytes.
    pub(super) manifests: VerifiedCache<Manifest>,
    /// Vendors' freshness statements, by their signed bytes.
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

/// Values whose signature was checked, by the bytes it covered.
pub(super) struct VerifiedCache<T> {
    remember: bool,
    cache: Mutex<HashMap<SignedBytes, T>>,
}

impl<T: Clone> VerifiedCache<T> {
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
    ) -> Result<T, E> {
        if !self.remember {
            return verify();
        }
        let key = (ContentHash::of(bytes), *signature);
        if let Some(value) = self.lock().get(&key) {
            return Ok(value.clone());
        }
        let value = verify()?;
        let mut cache = self.lock();
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(key, value.clone());
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SignedBytes, T>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_check_is_made_once_per_signed_bytes_and_failures_are_not_kept() {
        let cache = VerifiedCache::new(true);
        let checks = Cell::new(0);
        let check = |ok: bool| {
            checks.set(checks.get() + 1);
            if ok { Ok(7) } else { Err("bad") }
        };
        assert_eq!(cache.verify(b"a", &[1; 64], || check(true)), Ok(7));
        assert_eq!(cache.verify(b"a", &[1; 64], || check(true)), Ok(7));
        assert_eq!(checks.get(), 1);
        // Other bytes, or the same bytes with another signature, are checked.
        assert_eq!(cache.verify(b"b", &[1; 64], || check(false)), Err("bad"));
        assert_eq!(cache.verify(b"a", &[2; 64], || check(false)), Err("bad"));
        assert_eq!(cache.verify(b"a", &[2; 64], || check(false)), Err("bad"));
        assert_eq!(checks.get(), 4);
        // A cache that remembers nothing checks every time.
        let off = VerifiedCache::new(false);
        assert_eq!(off.verify(b"a", &[1; 64], || check(true)), Ok(7));
        assert_eq!(off.verify(b"a", &[1; 64], || check(true)), Ok(7));
        assert_eq!(checks.get(), 6);
    }
}
