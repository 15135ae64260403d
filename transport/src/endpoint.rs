//! QUIC endpoints: servers with their identity and caps, clients that pin their peer.

use crate::pinning::PinnedVerifier;
use crate::{Identity, PinMove, TransportError};
use courier_protocol::{ALPN, SpkiPin};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The TLS server name clients send; certificates are pinned, so it carries no trust.
pub const SERVER_NAME: &str = "courier";

/// Caps a server puts on each connection.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Concurrent bidirectional streams a peer may open on one connection.
    pub max_streams_per_connection: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Bytes a peer may have in flight on one stream.
    pub stream_receive_window: u32,
    /// Bytes a peer may have in flight on one connection.
    pub connection_receive_window: u32,
    /// Bytes of answers one connection may have sent and not yet acknowledged, or
    /// buffered to send: a write waits past it, so an answer's memory is held by its
    /// writer (and counted there) until the peer has nearly all of it.
    pub send_window: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_streams_per_connection: 256,
            idle_timeout: Duration::from_secs(30),
            stream_receive_window: 4 * 1024 * 1024,
            connection_receive_window: 16 * 1024 * 1024,
            send_window: 2 * 1024 * 1024,
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server endpoint bound to `addr`, presenting `identity`, speaking ALPN `courier/1`.
pub fn server_endpoint(
    addr: SocketAddr,
    identity: &Identity,
    limits: &ServerLimits,
) -> Result<quinn::Endpoint, TransportError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.cert_chain(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_streams_per_connection.into())
        .max_concurrent_uni_streams(0u8.into())
        .stream_receive_window(limits.stream_receive_window.into())
        .receive_window(limits.connection_receive_window.into())
        .send_window(limits.send_window)
        .max_idle_timeout(Some(limits.idle_timeout.try_into().map_err(|_| {
            TransportError::Certificate("idle timeout too large".into())
        })?));
    config.transport_config(Arc::new(transport));
    Ok(quinn::Endpoint::server(config, addr)?)
}

/// A client endpoint on an ephemeral port of the right address family for `peer`.
pub fn client_endpoint(peer: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
    let bind: SocketAddr = if peer.is_ipv6() {
        "[::]:0"
            .parse()
            .map_err(|_| TransportError::Address("[::]:0".into()))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| TransportError::Address("0.0.0.0:0".into()))?
    };
    Ok(quinn::Endpoint::client(bind)?)
}

/// Resolves `host:port`.
pub async fn resolve(addr: &str) -> Result<SocketAddr, TransportError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|_| TransportError::Address(addr.to_string()))?
        .next()
        .ok_or_else(|| TransportError::Address(addr.to_string()))
}

/// Connects to `peer`, accepting only a server whose key hashes to `pin`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    peer: SocketAddr,
    pin: SpkiPin,
    timeout: Duration,
) -> Result<quinn::Connection, TransportError> {
    let provider = provider();
    let verifier = PinnedVerifier::new(pin, &provider);
    Ok(
        connect_verified(endpoint, peer, provider, verifier, timeout)
            .await?
            .0,
    )
}

/// Connects to `peer`, accepting a server whose key hashes to `pin` or one that valid,
/// unexpired rotation statements signed by the pinned key lead to (a registry in the
/// overlap of its identity's rotation); returns the pin's move in that case.
pub async fn connect_following(
    endpoint: &quinn::Endpoint,
    peer: SocketAddr,
    pin: SpkiPin,
    timeout: Duration,
) -> Result<(quinn::Connection, Option<PinMove>), TransportError> {
    let provider = provider();
    let verifier = PinnedVerifier::following_rotations(pin, &provider);
    connect_verified(endpoint, peer, provider, verifier, timeout).await
}

async fn connect_verified(
    endpoint: &quinn::Endpoint,
    peer: SocketAddr,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<PinnedVerifier>,
    timeout: Duration,
) -> Result<(quinn::Connection, Option<PinMove>), TransportError> {
    let pin = verifier.pinned();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    let connecting = endpoint.connect_with(config, peer, SERVER_NAME)?;
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(TransportError::Timeout(timeout)),
        Ok(Ok(conn)) => Ok((conn, verifier.outcome().moved)),
        Ok(Err(e)) => {
            let seen = verifier.outcome();
            match (seen.presented, seen.refused) {
                (Some(presented), Some(reason)) => Err(TransportError::RotationRefused {
                    pinned: pin,
                    presented,
                    reason: Box::new(reason),
                }),
                (Some(got), None) if got != pin => {
                    Err(TransportError::PinMismatch { expected: pin, got })
                }
                _ => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server(id: &Identity) -> (quinn::Endpoint, SocketAddr) {
        let ep =
            server_endpoint("127.0.0.1:0".parse().unwrap(), id, &ServerLimits::default()).unwrap();
        let addr = ep.local_addr().unwrap();
        let server = ep.clone();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let v: String = crate::read_one(&mut recv, 1024).await.unwrap();
                        crate::write_frame(&mut send, &v).await.unwrap();
                        send.finish().unwrap();
                    }
                });
            }
        });
        (ep, addr)
    }

    #[tokio::test]
    async fn pinned_connection_round_trip() {
        let id = Identity::generate().unwrap();
        let (_server, addr) = echo_server(&id).await;
        let client = client_endpoint(addr).unwrap();
        let conn = connect(&client, addr, id.pin(), Duration::from_secs(5))
            .await
            .unwrap();
        let back: String = crate::call(&conn, &"hi".to_string(), 1024).await.unwrap();
        assert_eq!(back, "hi");
    }

    #[tokio::test]
    async fn wrong_pin_refused_with_pin_mismatch() {
        let id = Identity::generate().unwrap();
        let (_server, addr) = echo_server(&id).await;
        let client = client_endpoint(addr).unwrap();
        let other = Identity::generate().unwrap().pin();
        match connect(&client, addr, other, Duration::from_secs(5)).await {
            Err(TransportError::PinMismatch { expected, got }) => {
                assert_eq!(expected, other);
                assert_eq!(got, id.pin());
            }
            other => panic!("expected pin mismatch, got {other:?}"),
        }
    }
}
