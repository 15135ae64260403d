//! The parent as the source of component bytes a child lacks: fetched over the link's
//! connection, by hash, no more than the manifest's size, within a deadline (a parent that
//! stalls mid-component fails this fetch; the next client's asks again).

use crate::ComponentSource;
use courier_protocol::ContentHash;
use courier_transport::RegistryClient;
use std::sync::Mutex;
use std::time::Duration;

/// How long one component fetch from the parent may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(20);

/// The link's connection to the parent, while it is up.
pub(super) struct ParentSource {
    client: Mutex<Option<RegistryClient>>,
    handle: tokio::runtime::Handle,
}

impl ParentSource {
    pub(super) fn new(handle: tokio::runtime::Handle) -> Self {
        Self {
            client: Mutex::new(None),
            handle,
        }
    }

    /// The connection to fetch over (`None`: the link is down).
    pub(super) fn set(&self, client: Option<RegistryClient>) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
    }
}

impl ComponentSource for ParentSource {
    fn fetch(&self, hash: &ContentHash, size: u64) -> Option<Vec<u8>> {
        let client = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let hash = *hash;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let got = client.fetch(hash, size, FETCH_DEADLINE).await;
            let _ = tx.send(got);
        });
        match rx.recv_timeout(FETCH_DEADLINE + Duration::from_secs(1)) {
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
