//! Child registries, at their parent: the operator allows their keys (an admin action,
//! committed and audited like the others), and an allowed child's hello is welcomed with
//! this registry's place in the hierarchy, its own key first, so that no registry takes
//! one of its ancestors as a child. A refused key is logged once.

use super::Registry;
use crate::core::children::ChildRefused;
use crate::core::lease_table::Millis;
use courier_protocol::{ChildInfo, ChildWelcome, VendorKey};
use std::collections::HashSet;

/// Refused child keys remembered, so that each is logged once (a bound, not a rule).
const REFUSED_REMEMBERED: usize = 10_000;

/// This registry's place in a hierarchy of registries.
#[derive(Debug, Default)]
pub(super) struct Hierarchy {
    /// Its own key first, then its parent's, up to the root.
    above: Vec<VendorKey>,
    /// Child keys refused so far.
    refused: HashSet<VendorKey>,
}

impl Registry {
    /// Sets this registry's own key (the one it authenticates with to a parent, and the
    /// one its children find first among their ancestors) and its ancestors' keys, its
    /// parent's first.
    pub fn place_in_hierarchy(&self, own: VendorKey, ancestors: Vec<VendorKey>) {
        let mut h = self.hierarchy();
        h.above = std::iter::once(own).chain(ancestors).collect();
    }

    /// This registry's own key, then its ancestors' (empty until placed).
    pub fn above(&self) -> Vec<VendorKey> {
        self.hierarchy().above.clone()
    }

    /// A child registry's hello at `now`, authenticated as `key`: welcome, or why not
    /// (logged once per key).
    pub fn child_hello(&self, now: Millis, key: VendorKey) -> Result<ChildWelcome, ChildRefused> {
        let above = self.above();
        let answer = self.state().child_hello(now, key, &above);
        if let Err(why) = &answer {
            let mut h = self.hierarchy();
            if h.refused.len() >= REFUSED_REMEMBERED {
                h.refused.clear();
            }
            if h.refused.insert(key) {
                tracing::warn!(%key, "a child registry is refused: {why}");
            }
        }
        answer
    }

    /// An operator asks the allowed child `key` for a report now (it hears it at its next
    /// hello).
    pub fn ask_child_report(&self, key: VendorKey) -> Result<(), ChildRefused> {
        self.state().ask_child_report(key)
    }

    /// The child registries operators allowed, by key.
    pub fn children(&self) -> Vec<ChildInfo> {
        self.state().children()
    }

    fn hierarchy(&self) -> std::sync::MutexGuard<'_, Hierarchy> {
        self.hierarchy.lock().unwrap_or_else(|p| p.into_inner())
    }
}
