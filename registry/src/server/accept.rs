//! Accepting connections: the caps on connections in all and per peer address. A
//! connection over a cap is answered `Busy` on its first stream and closed; a flood beyond
//! that is refused at the handshake.

use super::admission::PeerConnections;
use super::connection;
use super::respond::close_with;
use super::{Shared, close};
use crate::observe::Refusal;
use courier_protocol::limits::MAX_SMALL_FRAME;
use courier_protocol::{ErrorKind, Request, Response, WireError};
use courier_transport::FrameBuffer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Accepts connections until shutdown, each served by a task of its own.
pub(super) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let config = &shared.config;
    let connections = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let peers = PeerConnections::new(
        config.max_connections_per_peer,
        config.large_response_budget_per_peer,
    );
    // Connections over a cap get a Busy answer; a flood beyond that is refused outright.
    let busy = Arc::new(Semaphore::new(config.max_connections.max(64) / 4));
    let mut shutdown = shared.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            _ = shutdown.changed() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let peer = incoming.remote_address();
        let admitted = match connections.clone().try_acquire_owned() {
            Err(_) => {
                shared.refused(Refusal::ConnectionCap);
                Err("registry is at its connection cap; try later")
            }
            Ok(permit) => match peers.admit(peer.ip()) {
                None => {
                    shared.refused(Refusal::PeerCap);
                    Err("too many connections from your address; try later")
                }
                Some(slot) => Ok((permit, slot)),
            },
        };
        let done = shared.done.clone();
        match admitted {
            Ok((permit, slot)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    connection::serve(incoming, &shared, slot.room().clone()).await;
                    drop((permit, slot, done));
                });
            }
            Err(why) => match busy.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::warn!(%peer, "{why}: answering busy");
                    let timeout = config.handshake_timeout;
                    tokio::spawn(async move {
                        answer_busy(incoming, timeout, why).await;
                        drop((permit, done));
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, "connection flood: refusing");
                    incoming.refuse();
                }
            },
        }
    }
}

/// Completes the handshake of a connection over a cap only to tell it so.
async fn answer_busy(incoming: quinn::Incoming, timeout: Duration, why: &'static str) {
    let work = async {
        let conn = incoming.await.ok()?;
        let (mut send, mut recv) = conn.accept_bi().await.ok()?;
        let _ = FrameBuffer::new()
            .read::<Request>(&mut recv, MAX_SMALL_FRAME)
            .await;
        let resp = Response::Error(WireError::new(ErrorKind::Busy, why));
        close_with(&conn, &mut send, &resp, close::BUSY, b"busy").await;
        Some(())
    };
    let _ = tokio::time::timeout(timeout, work).await;
}
