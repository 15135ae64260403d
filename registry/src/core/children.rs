//! The child registries an operator allowed to follow this one (`courier registry children
//! allow`), and when each last said hello. A hello is checked against where this registry
//! sits in the hierarchy (its own key and its ancestors': a key among them may not be a
//! child, that would be a loop), which the caller knows. Pure and in memory; allowing and
//! denying are committed before they are applied here.

use courier_protocol::{ChildInfo, ChildReport, ChildWelcome, VendorKey};
use std::collections::{BTreeMap, HashMap};

/// An allowed child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// The name the operator gave it.
    pub name: String,
    /// When it was allowed, ms since the Unix epoch.
    pub allowed_at_ms: u64,
}

/// Why a child's hello is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChildRefused {
    /// The operator has not allowed the key (or denied it since).
    #[error(
        "{0} is not an allowed child of this registry (its operator allows one with \
         `courier registry children allow {0} --name NAME`)"
    )]
    NotAllowed(VendorKey),
    /// The key is this registry's own, or one of its ancestors'.
    #[error("{0} is this registry or one of its ancestors: a loop in the hierarchy")]
    Loop(VendorKey),
    /// A report that cannot be taken.
    #[error("bad report: {0}")]
    BadReport(&'static str),
}

/// Most services one report may list.
pub const MAX_REPORTED_SERVICES: usize = 4096;

/// The children and this registry's place.
#[derive(Debug, Default)]
pub struct ChildBook {
    allowed: BTreeMap<VendorKey, Child>,
    seen: HashMap<VendorKey, u64>,
    /// The last report of each child, and when it came.
    reports: HashMap<VendorKey, (u64, ChildReport)>,
    /// Children an operator asked for a report, until it comes.
    wanted: std::collections::HashSet<VendorKey>,
}

impl ChildBook {
    /// Allows `key` (again: renames it).
    pub fn allow(&mut self, key: VendorKey, name: String, allowed_at_ms: u64) {
        self.allowed.insert(
            key,
            Child {
                name,
                allowed_at_ms,
            },
        );
    }

    /// Denies `key`; whether it was allowed.
    pub fn deny(&mut self, key: &VendorKey) -> bool {
        self.seen.remove(key);
        self.reports.remove(key);
        self.wanted.remove(key);
        self.allowed.remove(key).is_some()
    }

    /// The allowed child of `key`, if any.
    pub fn get(&self, key: &VendorKey) -> Option<&Child> {
        self.allowed.get(key)
    }

    /// A child's hello at wall-clock `at_ms`, `above` being this registry's own key and
    /// then its ancestors' up to the root: welcome (with `above`), or refused.
    pub fn hello(
        &mut self,
        key: VendorKey,
        at_ms: u64,
        above: &[VendorKey],
    ) -> Result<ChildWelcome, ChildRefused> {
        if above.contains(&key) {
            return Err(ChildRefused::Loop(key));
        }
        let child = self
            .allowed
            .get(&key)
            .ok_or(ChildRefused::NotAllowed(key))?;
        let welcome = ChildWelcome {
            name: child.name.clone(),
            ancestors: above.to_vec(),
            report_wanted: self.wanted.contains(&key),
        };
        self.seen.insert(key, at_ms);
        Ok(welcome)
    }

    /// An allowed child's report at wall-clock `at_ms`: kept as its last.
    pub fn report(
        &mut self,
        key: VendorKey,
        at_ms: u64,
        report: ChildReport,
    ) -> Result<(), ChildRefused> {
        if !self.allowed.contains_key(&key) {
            return Err(ChildRefused::NotAllowed(key));
        }
        self.seen.insert(key, at_ms);
        self.reports.insert(key, (at_ms, report));
        self.wanted.remove(&key);
        Ok(())
    }

    /// An operator asks the allowed child `key` for a report now.
    pub fn ask_report(&mut self, key: VendorKey) -> Result<(), ChildRefused> {
        if !self.allowed.contains_key(&key) {
            return Err(ChildRefused::NotAllowed(key));
        }
        self.wanted.insert(key);
        Ok(())
    }

    /// Every allowed child, as operators see them.
    pub fn list(&self) -> Vec<ChildInfo> {
        self.allowed
            .iter()
            .map(|(key, c)| ChildInfo {
                key: *key,
                name: c.name.clone(),
                allowed_at_ms: c.allowed_at_ms,
                last_seen_ms: self.seen.get(key).copied(),
                report: self.reports.get(key).cloned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use courier_protocol::SigningKey;

    fn key(n: u8) -> VendorKey {
        VendorKey::of(&SigningKey::from_bytes(&[n; 32]))
    }

    #[test]
    fn only_allowed_children_are_welcome_and_never_an_ancestor() {
        let mut book = ChildBook::default();
        let above = [key(1), key(2), key(3)];
        assert_eq!(
            book.hello(key(4), 10, &above),
            Err(ChildRefused::NotAllowed(key(4)))
        );
        book.allow(key(4), "site-a".into(), 5);
        let welcome = book.hello(key(4), 11, &above).unwrap();
        assert_eq!(welcome.name, "site-a");
        assert_eq!(welcome.ancestors, vec![key(1), key(2), key(3)]);
        assert_eq!(book.list()[0].last_seen_ms, Some(11));
        // Allowed or not, this registry and its ancestors are never children.
        for k in [key(1), key(3)] {
            book.allow(k, "loop".into(), 6);
            assert_eq!(book.hello(k, 12, &above), Err(ChildRefused::Loop(k)));
        }
        assert!(book.deny(&key(4)));
        assert_eq!(
            book.hello(key(4), 13, &above),
            Err(ChildRefused::NotAllowed(key(4)))
        );
        assert!(!book.deny(&key(4)));
    }
}
