//! What operators set on a running registry: leases they revoked (remembered so that their
//! vendors learn why on their next renewal), vendor keys banned from service names, and
//! services being drained. Pure and in memory; each change is committed before it is
//! applied here.

use crate::core::lease_table::{LeaseMap, Millis};
use courier_protocol::{LeaseId, VendorKey};
use std::collections::BTreeMap;

/// The operators' settings.
#[derive(Debug, Default)]
pub struct Controls {
    /// Revoked leases and why, until a renewal could no longer come (wall-clock ms).
    revoked_leases: LeaseMap<(String, u64)>,
    /// Per service name, the keys banned from it and why.
    bans: BTreeMap<String, BTreeMap<VendorKey, String>>,
    /// Services being drained, and why.
    drains: BTreeMap<String, String>,
}

impl Controls {
    /// Why `lease` was revoked, if an operator revoked it.
    pub fn revoked(&self, lease: &LeaseId) -> Option<&str> {
        self.revoked_leases.get(lease).map(|(r, _)| r.as_str())
    }

    /// Remembers a revoked lease until wall-clock `until_ms`.
    pub fn revoke_lease(&mut self, lease: LeaseId, reason: String, until_ms: u64) {
        self.revoked_leases.insert(lease, (reason, until_ms));
    }

    /// Forgets revoked leases whose time is up at wall-clock `now_ms`; returns them.
    pub fn forget_revoked(&mut self, now_ms: u64) -> Vec<LeaseId> {
        let gone: Vec<LeaseId> = self
            .revoked_leases
            .iter()
            .filter(|(_, (_, until))| *until <= now_ms)
            .map(|(l, _)| *l)
            .collect();
        for l in &gone {
            self.revoked_leases.remove(l);
        }
        gone
    }

    /// Why `key` is banned from `name`, if it is.
    pub fn banned(&self, name: &str, key: &VendorKey) -> Option<&str> {
        self.bans.get(name)?.get(key).map(String::as_str)
    }

    /// Bans `key` from `name`.
    pub fn ban(&mut self, name: &str, key: VendorKey, reason: String) {
        self.bans
            .entry(name.to_string())
            .or_default()
            .insert(key, reason);
    }

    /// Lifts a ban; whether there was one.
    pub fn allow(&mut self, name: &str, key: &VendorKey) -> bool {
        let Some(keys) = self.bans.get_mut(name) else {
            return false;
        };
        let was = keys.remove(key).is_some();
        if keys.is_empty() {
            self.bans.remove(name);
        }
        was
    }

    /// Why `name` is being drained, if it is.
    pub fn draining(&self, name: &str) -> Option<&str> {
        self.drains.get(name).map(String::as_str)
    }

    /// Starts draining `name`.
    pub fn drain(&mut self, name: &str, reason: String) {
        self.drains.insert(name.to_string(), reason);
    }

    /// Ends draining `name`; whether it was.
    pub fn undrain(&mut self, name: &str) -> bool {
        self.drains.remove(name).is_some()
    }

    /// Every ban, as (name, key, reason).
    pub fn bans(&self) -> impl Iterator<Item = (&str, &VendorKey, &str)> {
        self.bans
            .iter()
            .flat_map(|(n, ks)| ks.iter().map(move |(k, r)| (n.as_str(), k, r.as_str())))
    }

    /// Every drained service, as (name, reason).
    pub fn drains(&self) -> impl Iterator<Item = (&str, &str)> {
        self.drains.iter().map(|(n, r)| (n.as_str(), r.as_str()))
    }
}

/// How long a revoked lease is remembered after the revocation: a vendor's keeper renews
/// within its lease's duration, so past `max_ttl` no renewal of it can come.
pub fn remember_until(now: Millis, wall_base_ms: u64, max_ttl_ms: u64) -> u64 {
    wall_base_ms
        .saturating_add(now.0)
        .saturating_add(max_ttl_ms)
}
