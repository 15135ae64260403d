//! The parent as the source of component bytes a child lacks: fetched over the link's
//! connection, by hash, no more than the manifest's size, within a deadline (a parent that
//! stalls mid-component fails this fetch; the next client's asks again).

use crate::ComponentSource;
use courier_protocol::ContentHash;
use courier_transport::RegistryClient;
use std::sync::Mutex;
use std::time::Duration;

/// How long asking the parent for root statements may take (a client waits meanwhile).
const STATEMENTS_DEADLINE: Duration = Duration::from_secs(5);

/// The link's connection to the parent, while it is up.
pub(super) struct ParentSource {
    client: Mutex<Option<RegistryClient>>,
    handle: tokio::runtime::Handle,
    /// How long one component fetch may take.
    deadline: Duration,
}

impl ParentSource {
    pub(super) fn new(handle: tokio::runtime::Handle, deadline: Duration) -> Self {
        Self {
            client: Mutex::new(None),
            handle,
            deadline,
        }
    }

    /// The connection to fetch over (`None`: the link is down).
    pub(super) fn set(&self, client: Option<RegistryClient>) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
    }
}

impl crate::driver::RootSource for ParentSource {
    fn root_statements(
        &self,
        roots: &[courier_protocol::RootSince],
    ) -> Option<courier_protocol::RootBatch> {
        let client = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let roots = roots.to_vec();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let got =
                tokio::time::timeout(STATEMENTS_DEADLINE, client.root_statements(roots)).await;
            let _ = tx.send(got);
        });
        match rx.recv_timeout(STATEMENTS_DEADLINE + Duration::from_secs(1)) {
            Ok(Ok(Ok(batch))) => Some(batch),
            Ok(Ok(Err(e))) => {
                tracing::debug!("the parent did not give root statements: {e}");
                None
            }
            _ => {
                tracing::debug!("the parent did not give root statements in time");
                None
            }
        }
    }
}

impl ComponentSource for ParentSource {
    fn fetch(&self, hash: &ContentHash, size: u64) -> Option<Vec<u8>> {
        let client = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let (hash, deadline) = (*hash, self.deadline);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let got = client.fetch(hash, size, deadline).await;
            let _ = tx.send(got);
        });
        match rx.recv_timeout(deadline + Duration::from_secs(1)) {
            Ok(Ok(bytes)) => Some(bytes),
            Ok(Err(e)) => {
                tracing::warn!(%hash, "the parent did not give a component: {e}");
                None
            }
            Err(_) => {
                tracing::warn!(%hash, "the parent did not give a component in time");
                None
            }
        }
    }
}
