//! Component bytes from another node: fetched over courier's own protocol (the same
//! `Fetch` a client sends, by hash, reading no more than the manifest's size), pinned to
//! the node's advertised key, checked against the hash before anything keeps them.

use crate::node::Advert;
use courier_protocol::ContentHash;
use courier_transport::RegistryClient;
use std::time::Duration;

/// How long one fetch from a peer may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(10);

/// The component `hash` (`size` bytes) from the node at `advert`, if it has it.
pub async fn fetch(advert: &Advert, hash: ContentHash, size: u64) -> Option<Vec<u8>> {
    let client = match RegistryClient::connect(advert.addr, advert.pin, "courier-node").await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(addr = %advert.addr, "cannot reach a peer for {hash}: {e}");
            return None;
        }
    };
    let bytes = client.fetch(hash, size, FETCH_DEADLINE).await;
    client.close();
    match bytes {
        Ok(b) if ContentHash::of(&b) == hash => Some(b),
        Ok(_) => {
            tracing::warn!(addr = %advert.addr, "a peer sent bytes that do not match {hash}; dropped");
            None
        }
        Err(e) => {
            tracing::debug!(addr = %advert.addr, "a peer did not give {hash}: {e}");
            None
        }
    }
}
