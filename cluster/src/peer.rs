//! Component bytes from another node: fetched over courier's own protocol (the same
//! `Fetch` a client sends, by hash, reading no more than the manifest's size), pinned to
//! the node's advertised key, checked against the hash before anything keeps them.

use crate::node::Advert;
use courier_protocol::ContentHash;
use courier_transport::RegistryClient;
use std::time::Duration;

/// How long one fetch from a peer may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(10);

/// The component `hash` (`size` bytes) from the node at `advert`, if it has it, over a
/// connection of its own.
pub async fn fetch(advert: &Advert, hash: ContentHash, size: u64) -> Option<Vec<u8>> {
    let client = connect(advert).await?;
    let bytes = fetch_from(&client, hash, size).await;
    client.close();
    bytes
}

/// A connection to the node at `advert`, pinned to its key.
pub async fn connect(advert: &Advert) -> Option<RegistryClient> {
    match RegistryClient::connect(advert.addr, advert.pin, "courier-node").await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(addr = %advert.addr, "cannot reach a peer: {e}");
            None
        }
    }
}

/// The component `hash` (`size` bytes) over `client`, if the node has it and its bytes
/// match the hash.
pub async fn fetch_from(client: &RegistryClient, hash: ContentHash, size: u64) -> Option<Vec<u8>> {
    match client.fetch(hash, size, FETCH_DEADLINE).await {
        Ok(b) if ContentHash::of(&b) == hash => Some(b),
        Ok(_) => {
            tracing::warn!(addr = %client.addr(), "a peer sent bytes that do not match {hash}; dropped");
            None
        }
        Err(e) => {
            tracing::debug!(addr = %client.addr(), "a peer did not give {hash}: {e}");
            None
        }
    }
}
