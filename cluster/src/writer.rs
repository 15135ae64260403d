//! A node elected the cluster's writer: its registry opened on the store through the
//! restart rule, on the last writer's clock carried on ([`crate::takeover_wall_ms`]), and
//! following the renewals the other nodes take and the cluster's events
//! ([`RenewalFollower`]) for as long as it lives. A standby elected writer hands its
//! events over ([`Writer::take_over`]): the event stream at this node goes on unbroken.

use crate::feed;
use crate::node::Node;
use crate::renewals::RenewalFollower;
use crate::standby::{CarriedEvents, Standby};
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
        Self::open_after(node, dir, fence, config, now_ms, None)
    }

    /// [`Writer::open`] for a node that was a standby until elected: its event stream goes
    /// on from the events `standby` kept, so a subscriber that was reading them at this
    /// node resumes here without a gap.
    pub fn take_over(
        standby: Standby,
        node: &Node,
        dir: &Path,
        fence: Fence,
        config: RegistryConfig,
        now_ms: u64,
    ) -> Result<Self, ClusterError> {
        let carried = standby.into_events();
        Self::open_after(node, dir, fence, config, now_ms, Some(carried))
    }

    fn open_after(
        node: &Node,
        dir: &Path,
        fence: Fence,
        config: RegistryConfig,
        now_ms: u64,
        carried: Option<CarriedEvents>,
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
        registry.number_events_from_store(feed::after(loaded.loaded_at()));
        // The history is followed from where the events go on: rows older than the load
        // move no deadline (only ever later), events numbered already are skipped.
        let from = match carried {
            Some(c) if c.applied <= loaded.loaded_at() => {
                registry.adopt_events(c.ring);
                c.applied
            }
            _ => loaded.loaded_at(),
        };
        let registry = Arc::new(registry);
        let renewals = RenewalFollower::start(node, registry.clone(), from);
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
