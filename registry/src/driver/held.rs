//! Renewals a cluster's standby takes are acknowledged once their rows are in the store.
//!
//! The writer acknowledges a renewal from memory: if it dies before its flush, the node
//! that takes over gives every lease a grace (the restart rule). A standby that dies takes
//! no one's grace with it: a renewal it acknowledged and had not written would be lost to
//! the writer, which expires the lease when the vendor's next renewal is only just due. So
//! a standby numbers each renewal it takes ([`RegistryState::held_ticket`]), its flush
//! task runs as soon as one waits (renewals that come meanwhile ride with the next flush:
//! a group commit), and [`Registry::renew_durably`] answers once a flush that carried it
//! committed, or says `Unavailable` when it failed or took longer than
//! [`HELD_WRITE_WAIT`].
//!
//! [`RegistryState::held_ticket`]: crate::core::state::RegistryState::held_ticket

use super::Registry;
use crate::core::lease_table::Millis;
use crate::errors::LeaseError;
use crate::store::StoreError;
use courier_protocol::{LeaseGrant, LeaseId, VendorKey};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long a renewal at a standby waits for its row to be written.
pub const HELD_WRITE_WAIT: Duration = Duration::from_secs(2);

/// Where a standby's flushes have got to: the highest renewal ticket written, and the
/// highest one whose flush failed.
#[derive(Debug)]
pub(super) struct HeldWrites {
    waiting: Notify,
    done: watch::Sender<(u64, u64)>,
}

impl Default for HeldWrites {
    fn default() -> Self {
        Self {
            waiting: Notify::new(),
            done: watch::Sender::new((0, 0)),
        }
    }
}

impl HeldWrites {
    /// The flush that planned renewals up to `ticket` committed (`ok`) or failed.
    pub(super) fn finished(&self, ticket: u64, ok: bool) {
        self.done.send_modify(|(written, failed)| {
            let at = if ok { written } else { failed };
            *at = (*at).max(ticket);
        });
    }
}

impl Registry {
    /// Notified when a standby's renewal waits for its row: the flush task runs at once.
    pub fn held_waiting(&self) -> &Notify {
        &self.held.waiting
    }

    /// [`Registry::renew`], answered once the renewal is durable where that matters: at a
    /// cluster's standby, once its row is in the store (see the module docs); elsewhere at
    /// once.
    pub async fn renew_durably(
        &self,
        now: Millis,
        key: &VendorKey,
        lease: LeaseId,
        ttl_ms: u64,
    ) -> Result<LeaseGrant, LeaseError> {
        let (grant, ticket) = self.renew_ticketed(now, key, lease, ttl_ms)?;
        let Some(ticket) = ticket else {
            return Ok(grant);
        };
        let mut done = self.held.done.subscribe();
        self.held.waiting.notify_one();
        let reached = tokio::time::timeout(
            HELD_WRITE_WAIT,
            done.wait_for(|(written, failed)| *written >= ticket || *failed >= ticket),
        )
        .await;
        match reached {
            Ok(Ok(at)) if at.0 >= ticket => Ok(grant),
            _ => Err(LeaseError::Store(StoreError::Unavailable(
                "this node could not write the renewal in time (its etcd is slow or \
                 unreachable from here): renew at another node"
                    .into(),
            ))),
        }
    }
}
