//! [`OfflineRegistry`]: an operator's commands on a stopped registry (`courier registry
//! grant`, `revoke`). It opens the data directory, applies the restart rule in memory only
//! (nothing of it is written, so the next real start decides as if this had not happened),
//! makes the operator's change durable, and cannot serve.

use crate::config::RegistryConfig;
use crate::driver::{Registry, wall_clock_ms};
use crate::errors::{GrantError, OpenError, ReadError, StatementRefused};
use courier_protocol::{LeaseInfo, VendorKey};

/// A stopped registry opened for an operator's command. It has no `serve`: a registry that
/// skipped the restart rule's writes must not answer anyone, and the types see to it:
///
/// ```compile_fail,E0308
/// # async fn no(config: courier_registry::RegistryConfig) {
/// let offline = courier_registry::OfflineRegistry::open(config).unwrap();
/// let server = courier_registry::serve(std::sync::Arc::new(offline), Default::default());
/// # }
/// ```
#[derive(Debug)]
pub struct OfflineRegistry {
    registry: Registry,
}

impl OfflineRegistry {
    /// Opens the registry in `config.data_dir`, which no running registry may hold (the
    /// store is locked while one runs: opening then fails). Blocking.
    pub fn open(config: RegistryConfig) -> Result<Self, OpenError> {
        Self::open_at(config, wall_clock_ms())
    }

    /// [`OfflineRegistry::open`] at wall-clock time `wall_now_ms` (for tests that simulate
    /// time).
    pub fn open_at(config: RegistryConfig, wall_now_ms: u64) -> Result<Self, OpenError> {
        Ok(Self {
            registry: Registry::open_offline(config, wall_now_ms)?,
        })
    }

    /// The lease table as the next start would find it before its restart rule's writes
    /// (graces shown as they would be given now). Blocking.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, ReadError> {
        self.registry.leases(self.registry.now())
    }

    /// Lets `key` register (and so replace, renew, cancel its own registrations of) `name`.
    /// An unowned name becomes `key`'s. Durable before it returns. Blocking.
    pub fn grant(&self, name: &str, key: &VendorKey) -> Result<(), GrantError> {
        self.registry.grant(name, key)
    }

    /// Revokes `key` (without a statement of the key itself): the registry stops matching
    /// its proxies and refuses it once it runs again. Durable before it returns; returns
    /// whether it was new. Blocking.
    pub fn revoke(&self, key: &VendorKey) -> Result<bool, StatementRefused> {
        self.registry.revoke_by_operator(self.registry.now(), key)
    }

    /// The owner of a service name.
    pub fn owner(&self, name: &str) -> Option<VendorKey> {
        self.registry.owner(name)
    }

    /// The key acting for `key` now, and whether `key` is revoked.
    pub fn key_status(&self, key: &VendorKey) -> (VendorKey, bool) {
        self.registry.key_status(key)
    }
}
