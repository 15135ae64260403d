//! A standby's copy of the writer's component files: the component of every registration
//! the standby learns of is on this node's disk before a client asks for it here, and
//! before this node could be elected and serve it as the writer. Fetched from the writer
//! over courier's own protocol, pinned to its advertised key, checked against the hash,
//! on one connection kept open while the writer stays the same.

use crate::layout::Layout;
use crate::node::Advert;
use crate::peer;
use courier_protocol::SignedManifest;
use courier_registry::BlobDir;
use courier_transport::RegistryClient;
use etcd_client::Client;
use std::sync::Arc;

/// Copies components from the writer into this node's blob directory.
pub(crate) struct Copier {
    etcd: Client,
    layout: Layout,
    blobs: Arc<BlobDir>,
    /// The writer's advert and a connection to it, kept between copies.
    writer: Option<(Advert, RegistryClient)>,
}

impl Copier {
    pub(crate) fn new(etcd: Client, layout: Layout, blobs: Arc<BlobDir>) -> Self {
        Self {
            etcd,
            layout,
            blobs,
            writer: None,
        }
    }

    /// The writer may have changed: the next copy asks etcd again.
    pub(crate) fn forget_writer(&mut self) {
        if let Some((_, c)) = self.writer.take() {
            c.close();
        }
    }

    /// Fetches the component of the registration `manifest` from the writer unless it is
    /// here (one more try on a new connection if the kept one fails).
    pub(crate) async fn keep(&mut self, manifest: &SignedManifest) {
        let Ok(m) = manifest.peek() else {
            return;
        };
        let (hash, size) = (m.component_hash, m.component_size);
        if matches!(self.blobs.size(&hash), Ok(Some(n)) if n == size) {
            return;
        }
        let mut bytes = None;
        for _ in 0..2 {
            let Some(client) = self.writer_client().await else {
                tracing::debug!("no writer to copy {hash} from");
                return;
            };
            bytes = peer::fetch_from(&client, hash, size).await;
            if bytes.is_some() {
                break;
            }
            self.forget_writer();
        }
        let Some(bytes) = bytes else { return };
        let blobs = self.blobs.clone();
        let stored = tokio::task::spawn_blocking(move || blobs.put(&hash, &bytes)).await;
        match stored {
            Ok(Ok(())) => tracing::debug!(%hash, "copied a component from the writer"),
            Ok(Err(e)) => tracing::warn!(%hash, "cannot keep a copied component: {e}"),
            Err(e) => tracing::warn!(%hash, "cannot keep a copied component: {e}"),
        }
    }

    /// The kept connection to the writer, or a new one.
    async fn writer_client(&mut self) -> Option<RegistryClient> {
        if let Some((_, c)) = &self.writer
            && c.connection().close_reason().is_none()
        {
            return Some(c.clone());
        }
        let advert = writer(&mut self.etcd, &self.layout).await?;
        let client = peer::connect(&advert).await?;
        self.writer = Some((advert, client.clone()));
        Some(client)
    }
}

/// The writer's advert.
async fn writer(client: &mut Client, layout: &Layout) -> Option<Advert> {
    let name = writer_name(client, layout).await?;
    let resp = client
        .get(layout.key(&format!("nodes/{name}")), None)
        .await
        .ok()?;
    Advert::decode(resp.kvs().first()?.value())
}

/// The name of the node etcd's election made the writer (`None`: none, or etcd did not
/// answer).
pub(crate) async fn writer_name(client: &mut Client, layout: &Layout) -> Option<String> {
    let leader = client.leader(layout.election()).await.ok()?;
    String::from_utf8(leader.kv()?.value().to_vec()).ok()
}
