//! The writer's view of the cluster's history: the renewals other nodes take, and the
//! events every node numbers alike (`feed.rs`).
//!
//! A vendor renews at whichever node it is connected to, and that node writes the lease's
//! row behind, in batches (`held.rs`). The writer, which alone expires, watches the
//! cluster's keys from the revision it loaded the store at and moves each lease's
//! deadline on to the rows other nodes wrote ([`Registry::renewed_elsewhere`]; only ever
//! later). Its own rows come back through the watch too, and are skipped by the name they
//! carry. Every change also comes back as the cluster's events
//! ([`Registry::record_events`]): the writer numbers none of its own.
//!
//! When the watch breaks (etcd, or the connection to it, lost a while), it is opened again
//! from the last revision it delivered: nothing is missed. When etcd's history was
//! compacted past it, every row is read again and applied the same way, and the watch goes
//! on from the revision read: the events between are given up (a subscriber asking for
//! them hears they are missed).

use crate::etcd::{Changes, Etcd, WatchError};
use crate::feed;
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
                // Opened again from where it was: nothing is missed.
                Ok(()) => {
                    tracing::debug!("the writer's watch ended: following on");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(WatchError::Broken(e)) => {
                    tracing::warn!("the writer's watch broke ({e}): following on");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e @ WatchError::Compacted(_)) => {
                    tracing::warn!("the writer's watch ended ({e}): reading every lease row");
                }
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.read_all().await {
                    Ok(r) => {
                        revision = r;
                        self.registry.skip_events_to(feed::after(r));
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

    async fn watch(&self, revision: &mut i64) -> Result<(), WatchError> {
        let mut changes =
            Changes::open(self.etcd.client(), self.layout.key(""), *revision + 1).await?;
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
            let events = feed::events(&self.layout, resp.events());
            tracing::trace!(
                revision = feed::last_revision(&resp),
                changes = resp.events().len(),
                events = events.len(),
                "the writer follows"
            );
            if !events.is_empty() {
                self.registry.record_events(events);
            }
            if let Some(r) = feed::last_revision(&resp) {
                *revision = r;
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
