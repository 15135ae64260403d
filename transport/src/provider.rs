//! The opening of the provider protocol, shared by every client of a provider (the client
//! VM's connection pool and the SDK's `ProviderClient`): on a pinned connection, the first
//! stream carries a `ProviderHello` each way, and a provider that speaks another version
//! closes the connection with [`close_code::UNSUPPORTED_VERSION`] and says why.

use crate::TransportError;
use crate::framing::call;
use courier_protocol::PROTOCOL_VERSION;
use courier_protocol::provider::ProviderHello;
use std::time::Duration;

/// QUIC application codes used by providers to close connections and stop streams.
pub mod close_code {
    /// The provider is shutting down.
    pub const SHUTDOWN: u32 = 0;
    /// The client speaks another provider protocol version.
    pub const UNSUPPORTED_VERSION: u32 = 1;
    /// The first stream did not carry a `ProviderHello`.
    pub const BAD_HANDSHAKE: u32 = 2;
    /// (Stream) the request exceeded the cap or its deadline; the reply says so.
    pub const REQUEST_TOO_LARGE: u32 = 4;
}

/// Largest `ProviderHello` answer read.
const MAX_HELLO: usize = 64;

/// Why the provider-protocol opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// One side speaks another protocol version.
    #[error("provider refused the protocol version: {0}")]
    UnsupportedVersion(String),
    /// The provider did not complete the Hello.
    #[error("provider handshake failed: {0}")]
    Handshake(String),
    /// No Hello answer in time.
    #[error("provider did not answer the hello within {0:?}")]
    Timeout(Duration),
}

/// Says `ProviderHello` on `conn` and checks the answer, within `timeout`. On any failure the
/// connection is closed (or was closed by the provider, whose reason is reported).
pub async fn provider_hello(conn: &quinn::Connection, timeout: Duration) -> Result<(), HelloError> {
    let hello = ProviderHello {
        version: PROTOCOL_VERSION,
    };
    let answer = match tokio::time::timeout(timeout, call(conn, &hello, MAX_HELLO)).await {
        Err(_) => {
            conn.close(close_code::BAD_HANDSHAKE.into(), b"hello timeout");
            return Err(HelloError::Timeout(timeout));
        }
        Ok(Err(e)) => return Err(explain(conn, e)),
        Ok(Ok(answer)) => answer,
    };
    let ProviderHello { version } = answer;
    if version == PROTOCOL_VERSION {
        return Ok(());
    }
    conn.close(
        close_code::UNSUPPORTED_VERSION.into(),
        b"unsupported version",
    );
    Err(HelloError::UnsupportedVersion(format!(
        "provider speaks version {version}, this client {PROTOCOL_VERSION}"
    )))
}

/// Explains a failed Hello, with the provider's own reason when it closed the connection.
fn explain(conn: &quinn::Connection, e: TransportError) -> HelloError {
    if let Some(quinn::ConnectionError::ApplicationClosed(close)) = conn.close_reason() {
        let reason = String::from_utf8_lossy(&close.reason).into_owned();
        if close.error_code == close_code::UNSUPPORTED_VERSION.into() {
            return HelloError::UnsupportedVersion(reason);
        }
        return HelloError::Handshake(reason);
    }
    conn.close(close_code::BAD_HANDSHAKE.into(), b"bad hello");
    HelloError::Handshake(e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Identity, ServerLimits, client_endpoint, connect, server_endpoint};
    use std::net::SocketAddr;

    /// A provider that answers the Hello with `version`, or never answers with `None`.
    async fn provider(
        answer: Option<u16>,
    ) -> (quinn::Endpoint, SocketAddr, courier_protocol::SpkiPin) {
        let id = Identity::generate().unwrap();
        let ep = server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &id,
            &ServerLimits::default(),
        )
        .unwrap();
        let addr = ep.local_addr().unwrap();
        let server = ep.clone();
        tokio::spawn(async move {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let _: ProviderHello = crate::read_one(&mut recv, 64).await.unwrap();
            match answer {
                Some(version) => {
                    crate::write_frame(&mut send, &ProviderHello { version })
                        .await
                        .unwrap();
                    send.finish().unwrap();
                }
                None => std::future::pending::<()>().await,
            }
            conn.closed().await;
        });
        (ep, addr, id.pin())
    }

    async fn hello(answer: Option<u16>, timeout: Duration) -> Result<(), HelloError> {
        let (_server, addr, pin) = provider(answer).await;
        let ep = client_endpoint(addr).unwrap();
        let conn = connect(&ep, addr, pin, Duration::from_secs(5))
            .await
            .unwrap();
        let result = provider_hello(&conn, timeout).await;
        if result.is_err() {
            assert!(
                conn.close_reason().is_some(),
                "a failed hello closes the connection"
            );
        }
        result
    }

    #[tokio::test]
    async fn the_same_version_opens_and_another_is_refused() {
        assert_eq!(
            hello(Some(PROTOCOL_VERSION), Duration::from_secs(5)).await,
            Ok(())
        );
        let err = hello(Some(PROTOCOL_VERSION + 1), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HelloError::UnsupportedVersion(_)), "{err}");
    }

    #[tokio::test]
    async fn a_provider_that_never_answers_times_out() {
        let err = hello(None, Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(err, HelloError::Timeout(Duration::from_millis(200)));
    }
}
