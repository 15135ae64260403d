//! A node elected the cluster's writer: its registry opened on the store through the
//! restart rule, on the last writer's clock carried on ([`crate::takeover_wall_ms`]), and
//! following the renewals the other nodes take ([`RenewalFollower`]) for as long as it
//! lives.

use crate::node::Node;
use crate::renewals::RenewalFollower;
use crate::write::Fence;
use crate::{ClusterError, takeover_wall_ms};
use courier_registry::{Registry, RegistryConfig};
use std::path::Path;
use std::sync::Arc;

/// The writer's registry and the task that moves its deadlines on to other nodes'
/// renewals. Dropping it stops the task; serve [`Writer::registry`] meanwhile.
#[derive(Debug)]
pub struct Writer {
    registry: Arc<Registry>,
    _renewals: RenewalFollower,
}

impl Writer {
    /// Opens `node`'s registry as the writer under `fence` (components in `dir/blobs`),
    /// `now_ms` being this machine's wall clock. Blocking (etcd reads).
    pub fn open(
        node: &Node,
        dir: &Path,
        fence: Fence,
        config: RegistryConfig,
        now_ms: u64,
    ) -> Result<Self, ClusterError> {
        let store = node.store(dir, Some(fence))?;
        let at = takeover_wall_ms(
            store.last_alive_ms()?,
            now_ms,
            node.session_ttl(),
            config.flush_interval,
        );
        let loaded = store.held_manifests();
        let registry =
            Registry::open_takeover(config, Box::new(store), at).map_err(ClusterError::Writer)?;
        let registry = Arc::new(registry);
        let renewals = RenewalFollower::start(node, registry.clone(), loaded.loaded_at());
        Ok(Self {
            registry,
            _renewals: renewals,
        })
    }

    /// The registry to serve.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}
