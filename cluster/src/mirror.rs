//! A standby's copy of the writer's component files: every registration's component, on
//! this node's disk before it is needed, so that a standby elected after the writer's
//! crash serves every registration it loads. Reads the registrations in etcd once, then
//! follows them with a watch from that revision; on any error it starts over.

use crate::layout::Layout;
use crate::node::Advert;
use crate::read::prefix_end;
use courier_registry::BlobDir;
use courier_registry::store_records::decode_manifest;
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use std::sync::Arc;
use std::time::Duration;

/// Keeps `blobs` holding the component of every registration of the cluster, until the
/// task is aborted (when this node is elected).
pub async fn follow(client: Client, layout: Layout, blobs: Arc<BlobDir>) {
    loop {
        if let Err(e) = follow_once(client.clone(), &layout, &blobs).await {
            tracing::debug!("standby copy of components starts over: {e}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(
    mut client: Client,
    layout: &Layout,
    blobs: &Arc<BlobDir>,
) -> Result<(), String> {
    let prefix = layout.key("reg/");
    let end = prefix_end(&prefix);
    let mut from = prefix.clone();
    let mut revision = 0i64;
    loop {
        let resp = client
            .get(
                from.clone(),
                Some(
                    GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(1_000)
                        .with_revision(revision),
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        for kv in resp.kvs() {
            keep(&mut client, layout, blobs, kv.value()).await;
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    let mut stream = client
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        )
        .await
        .map_err(|e| e.to_string())?;
    while let Some(resp) = stream.message().await.map_err(|e| e.to_string())? {
        if resp.canceled() {
            return Err(format!("watch cancelled: {}", resp.cancel_reason()));
        }
        for event in resp.events() {
            if event.event_type() == EventType::Put
                && let Some(kv) = event.kv()
            {
                keep(&mut client, layout, blobs, kv.value()).await;
            }
        }
    }
    Err("watch ended".into())
}

/// Fetches the component of the registration `record` from the writer unless it is here.
async fn keep(client: &mut Client, layout: &Layout, blobs: &Arc<BlobDir>, record: &[u8]) {
    let Some(m) = decode_manifest(record).ok().and_then(|m| m.peek().ok()) else {
        return;
    };
    let (hash, size) = (m.component_hash, m.component_size);
    if matches!(blobs.size(&hash), Ok(Some(n)) if n == size) {
        return;
    }
    let Some(advert) = writer(client, layout).await else {
        tracing::debug!("no writer to copy {hash} from");
        return;
    };
    let Some(bytes) = crate::peer::fetch(&advert, hash, size).await else {
        return;
    };
    let blobs = blobs.clone();
    let stored = tokio::task::spawn_blocking(move || blobs.put(&hash, &bytes)).await;
    match stored {
        Ok(Ok(())) => tracing::debug!(%hash, "copied a component from the writer"),
        Ok(Err(e)) => tracing::warn!(%hash, "cannot keep a copied component: {e}"),
        Err(e) => tracing::warn!(%hash, "cannot keep a copied component: {e}"),
    }
}

/// The writer's advert.
async fn writer(client: &mut Client, layout: &Layout) -> Option<Advert> {
    let leader = client.leader(layout.election()).await.ok()?;
    let name = String::from_utf8(leader.kv()?.value().to_vec()).ok()?;
    let resp = client
        .get(layout.key(&format!("nodes/{name}")), None)
        .await
        .ok()?;
    Advert::decode(resp.kvs().first()?.value())
}
