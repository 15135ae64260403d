//! The latest freshness statement of each (vendor key, service name): what the registry
//! serves with every candidate of that service. A statement replaces the ones it covers only
//! if it is newer (a later `issued_at`) for every service it names, so nobody, the registry
//! included, can put an older statement back in front of a newer one.

use courier_protocol::{FreshnessStatement, SignedFreshness, VendorKey};
use std::collections::HashMap;

/// Why a statement cannot replace what the book holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreshnessConflict {
    /// A service it names has a statement issued at the same time or later.
    #[error(
        "a freshness statement of {service} issued at {held_ms} is held; this one is of {offered_ms}"
    )]
    NotNewer {
        /// The service.
        service: String,
        /// When the held statement was issued.
        held_ms: u64,
        /// When the offered one was.
        offered_ms: u64,
    },
}

/// The latest statement per (vendor key, service name).
#[derive(Debug, Default)]
pub struct FreshnessBook {
    latest: HashMap<(VendorKey, String), Held>,
    /// The services each vendor has a statement about.
    by_vendor: HashMap<VendorKey, std::collections::BTreeSet<String>>,
}

#[derive(Debug, Clone)]
struct Held {
    issued_at_ms: u64,
    signed: SignedFreshness,
}

impl FreshnessBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `statement` (verified, `signed` its bytes) may replace what is held: `Ok(true)`
    /// if it is newer for every service it names, `Ok(false)` if it is the very statement
    /// held already for all of them (a retry), an error otherwise.
    pub fn admit(
        &self,
        statement: &FreshnessStatement,
        signed: &SignedFreshness,
    ) -> Result<bool, FreshnessConflict> {
        let mut same = true;
        for service in statement.services.keys() {
            match self.latest.get(&(statement.vendor, service.clone())) {
                Some(held) if held.signed == *signed => {}
                Some(held) if held.issued_at_ms >= statement.issued_at_ms => {
                    return Err(FreshnessConflict::NotNewer {
                        service: service.clone(),
                        held_ms: held.issued_at_ms,
                        offered_ms: statement.issued_at_ms,
                    });
                }
                _ => same = false,
            }
        }
        Ok(!same)
    }

    /// Holds `signed` as the latest statement of every service `statement` names (newer
    /// ones already held are kept: restoring stored statements in any order gives the same
    /// book).
    pub fn apply(&mut self, statement: &FreshnessStatement, signed: SignedFreshness) {
        for service in statement.services.keys() {
            self.by_vendor
                .entry(statement.vendor)
                .or_default()
                .insert(service.clone());
            let slot = self.latest.entry((statement.vendor, service.clone()));
            let held = Held {
                issued_at_ms: statement.issued_at_ms,
                signed: signed.clone(),
            };
            match slot {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if o.get().issued_at_ms < held.issued_at_ms {
                        o.insert(held);
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(held);
                }
            }
        }
    }

    /// The statements held about `vendor`'s services, each once, added to `out` until it
    /// holds `max`.
    pub fn of_vendor(&self, vendor: &VendorKey, out: &mut Vec<SignedFreshness>, max: usize) {
        let Some(services) = self.by_vendor.get(vendor) else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        for service in services {
            if out.len() >= max {
                return;
            }
            if let Some(held) = self.latest.get(&(*vendor, service.clone()))
                && seen.insert(held.signed.signature)
            {
                out.push(held.signed.clone());
            }
        }
    }

    /// The latest statement `vendor` made about `service`, if any.
    pub fn get(&self, vendor: &VendorKey, service: &str) -> Option<(u64, &SignedFreshness)> {
        self.latest
            .get(&(*vendor, service.to_string()))
            .map(|h| (h.issued_at_ms, &h.signed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::SigningKey;

    fn signed(at: u64, services: &[(&str, &str)]) -> (FreshnessStatement, SignedFreshness) {
        let k = SigningKey::from_bytes(&[1; 32]);
        let st = FreshnessStatement::new(
            VendorKey::of(&k),
            services.iter().map(|(n, v)| (n.to_string(), v.to_string())),
            at,
            60_000,
        );
        let s = SignedFreshness::sign(&st, &k);
        (st, s)
    }

    #[test]
    fn only_newer_statements_replace_and_a_retry_changes_nothing() {
        let mut book = FreshnessBook::new();
        let (a, sa) = signed(10, &[("acme/echo", "2.0.0"), ("acme/kv", "1.0.0")]);
        assert_eq!(book.admit(&a, &sa), Ok(true));
        book.apply(&a, sa.clone());
        assert_eq!(book.admit(&a, &sa), Ok(false));
        let (old, so) = signed(9, &[("acme/echo", "1.0.0")]);
        assert!(matches!(
            book.admit(&old, &so),
            Err(FreshnessConflict::NotNewer { held_ms: 10, .. })
        ));
        // Newer for echo only: kv keeps the older statement, which still names it.
        let (b, sb) = signed(11, &[("acme/echo", "2.1.0")]);
        assert_eq!(book.admit(&b, &sb), Ok(true));
        book.apply(&b, sb.clone());
        let vendor = a.vendor;
        assert_eq!(book.get(&vendor, "acme/echo"), Some((11, &sb)));
        assert_eq!(book.get(&vendor, "acme/kv"), Some((10, &sa)));
        // Applying the older one again (a restore in another order) keeps the newer.
        book.apply(&a, sa);
        assert_eq!(book.get(&vendor, "acme/echo"), Some((11, &sb)));
    }
}
