//! The writer's view of the renewals other nodes take: a vendor renews at whichever node it
//! is connected to, and that node writes the lease's row behind, in batches (`held.rs`).
//! The writer, which alone expires, watches `lease/` from the revision it loaded the store
//! at and moves each lease's deadline on to the rows other nodes wrote
//! ([`Registry::renewed_elsewhere`]; only ever later). Its own rows come back through the
//! watch too, and are skipped by the name they carry.
//!
//! When the watch fails (etcd lost a while, or its history was compacted past where the
//! watch was), every row is read again and applied the same way, and the watch goes on
//! from the revision read: a renewal is never missed for longer than that.

use crate::etcd::{Changes, Etcd};
use crate::layout::{self, Layout};
use crate::node::Node;
use crate::store::lease_row;
use crate::write::row_holder;
use courier_protocol::LeaseId;
use courier_registry::{LeaseRow, Registry};
use etcd_client::{EventType, GetOptions};
use std::sync::Arc;
use std::time::Duration;

/// The task that moves the writer's deadlines on to other nodes' renewals. Dropping it
/// stops it.
#[derive(Debug)]
pub(crate) struct RenewalFollower {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RenewalFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RenewalFollower {
    /// Follows the lease rows other nodes than `node` write, into `registry` (the
    /// writer's, opened on the store at etcd revision `loaded_at`).
    pub(crate) fn start(node: &Node, registry: Arc<Registry>, loaded_at: i64) -> Self {
        let follow = Follow {
            etcd: node.etcd().clone(),
            layout: node.layout().clone(),
            me: node.name().to_string(),
            registry,
        };
        Self {
            task: node.etcd().handle().spawn(follow.run(loaded_at)),
        }
    }
}

struct Follow {
    etcd: Arc<Etcd>,
    layout: Layout,
    me: String,
    registry: Arc<Registry>,
}

impl Follow {
    async fn run(self, mut revision: i64) {
        loop {
            match self.watch(&mut revision).await {
                Ok(()) => tracing::debug!("the writer's watch of renewals ended"),
                Err(e) => tracing::warn!("the writer's watch of renewals failed: {e}"),
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.read_all().await {
                    Ok(r) => {
                        revision = r;
                        break;
                    }
                    Err(e) => tracing::debug!("cannot read the lease rows yet: {e}"),
                }
            }
        }
    }

    /// The row of a `lease/` key and value and the node that wrote it, unless this one did.
    fn foreign(&self, key: &[u8], value: &[u8]) -> Option<(LeaseId, LeaseRow, String)> {
        let lease = layout::parse_lease(self.layout.strip(key, "lease/")?)?;
        let holder = row_holder(value);
        if holder == self.me {
            return None;
        }
        Some((lease, lease_row(value)?, holder.to_string()))
    }

    async fn watch(&self, revision: &mut i64) -> Result<(), String> {
        let mut changes =
            Changes::open(self.etcd.client(), self.layout.key("lease/"), *revision + 1).await?;
        while let Some(resp) = changes.next().await? {
            let rows: Vec<_> = resp
                .events()
                .iter()
                .filter(|e| e.event_type() == EventType::Put)
                .filter_map(|e| e.kv())
                .filter_map(|kv| self.foreign(kv.key(), kv.value()))
                .collect();
            if !rows.is_empty() {
                self.registry.renewed_elsewhere(rows);
            }
            if let Some(h) = resp.header() {
                *revision = h.revision();
            }
        }
        Ok(())
    }

    /// Reads every lease row and applies the others'; returns the revision read at.
    async fn read_all(&self) -> Result<i64, String> {
        let prefix = self.layout.key("lease/");
        let resp = self
            .etcd
            .client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| e.to_string())?;
        let rows: Vec<_> = resp
            .kvs()
            .iter()
            .filter_map(|kv| self.foreign(kv.key(), kv.value()))
            .collect();
        self.registry.renewed_elsewhere(rows);
        Ok(resp.header().map_or(0, |h| h.revision()))
    }
}
