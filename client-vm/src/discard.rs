//! Discard that follows revocation and leases: what a client keeps between calls on behalf
//! of a lease (its compiled component in the sandbox's cache, its kept provider
//! connection) goes as soon as the client learns that the lease is over or its vendor key
//! is no longer trusted.
//!
//! The client learns it two ways. The lookup cache's event feed of a watched interface
//! reports a lease as expired, cancelled or revoked (a gap in that feed counts as every
//! lease of the interface being over, since the missed events are unknown); and a key
//! statement (a revocation, the vendor's own or an operator's) learned by the trust
//! synchronisation, or a key the application untrusts, ends what that key's leases hold.
//!
//! A compiled component or a provider is shared by every lease naming the same content
//! hash or TLS pin: it goes when the last lease held for it is over. Whatever is kept is
//! also never used without checking its manifest again (signature, trust, validity,
//! version) on every call: this module only makes the discard prompt, not correct.

use crate::sandbox::Kept;
use courier_protocol::{ContentHash, InterfaceName, LeaseId, Manifest, SpkiPin, VendorKey};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Most leases remembered; one more discards what the oldest-seen one holds.
pub(crate) const MAX_HELD: usize = 4096;

/// Which leases the sandbox keeps something for, and what.
pub(crate) struct Holdings {
    held: Mutex<Held>,
    kept: Kept,
}

#[derive(Default)]
struct Held {
    leases: HashMap<LeaseId, Holding>,
    /// Counter giving each holding its age (for the cap).
    seen: u64,
}

/// What one lease's proxy left behind.
#[derive(Clone)]
struct Holding {
    component: ContentHash,
    provider: SpkiPin,
    vendor: VendorKey,
    /// Its unversioned interface (for a gap in that interface's events).
    interface: String,
    seen: u64,
}

fn lock(m: &Mutex<Held>) -> MutexGuard<'_, Held> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Holdings {
    /// Holdings that discard from `kept`.
    pub(crate) fn new(kept: Kept) -> Self {
        Self {
            held: Mutex::default(),
            kept,
        }
    }

    /// Remembers that the proxy of `lease` (with `manifest`, offered for `interface`) ran,
    /// so its compiled component and provider connection may be kept for it.
    pub(crate) fn hold(&self, lease: LeaseId, manifest: &Manifest, interface: &str) {
        let interface = interface
            .parse::<InterfaceName>()
            .map_or_else(|_| interface.to_string(), |n| n.unversioned());
        let mut held = lock(&self.held);
        held.seen += 1;
        let holding = Holding {
            component: manifest.component_hash,
            provider: manifest.provider_pin,
            vendor: manifest.vendor_key,
            interface,
            seen: held.seen,
        };
        held.leases.insert(lease, holding);
        let mut gone = Vec::new();
        while held.leases.len() > MAX_HELD {
            let oldest = held
                .leases
                .iter()
                .min_by_key(|(_, h)| h.seen)
                .map(|(l, _)| *l);
            match oldest.and_then(|l| held.leases.remove(&l)) {
                Some(h) => gone.push(h),
                None => break,
            }
        }
        self.release(held, gone);
    }

    /// The lease `lease` is over (expired, cancelled, revoked).
    pub(crate) fn lease_ended(&self, lease: &LeaseId) {
        let mut held = lock(&self.held);
        let gone: Vec<Holding> = held.leases.remove(lease).into_iter().collect();
        self.release(held, gone);
    }

    /// The events of `interface` were missed: every lease of it is treated as over.
    pub(crate) fn interface_lost(&self, interface: &str) {
        self.end_where(|h| h.interface == interface);
    }

    /// Ends every holding whose vendor key `trusted` no longer accepts.
    pub(crate) fn keep_trusted(&self, trusted: impl Fn(&VendorKey) -> bool) {
        self.end_where(|h| !trusted(&h.vendor));
    }

    /// Leases remembered.
    pub(crate) fn len(&self) -> usize {
        lock(&self.held).leases.len()
    }

    fn end_where(&self, over: impl Fn(&Holding) -> bool) {
        let mut held = lock(&self.held);
        let ended: Vec<LeaseId> = held
            .leases
            .iter()
            .filter(|(_, h)| over(h))
            .map(|(l, _)| *l)
            .collect();
        let gone = ended.iter().filter_map(|l| held.leases.remove(l)).collect();
        self.release(held, gone);
    }

    /// Discards what `gone` held and no lease still held shares.
    fn release(&self, held: MutexGuard<'_, Held>, gone: Vec<Holding>) {
        if gone.is_empty() {
            return;
        }
        let (mut components, mut providers) = (Vec::new(), Vec::new());
        for h in gone {
            if !held.leases.values().any(|o| o.component == h.component) {
                components.push(h.component);
            }
            if !held.leases.values().any(|o| o.provider == h.provider) {
                providers.push(h.provider);
            }
        }
        drop(held);
        for hash in components {
            if self.kept.drop_compiled(&hash) {
                tracing::info!(component = %hash, "compiled component discarded: its lease is over");
            }
        }
        for pin in providers {
            let closed = self.kept.close_provider(&pin);
            if closed > 0 {
                tracing::info!(provider = %pin, closed, "provider connections closed: lease over");
            }
        }
    }
}
