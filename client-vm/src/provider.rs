//! The client side of the provider protocol: the only network a proxy can reach.
//!
//! A [`ProviderTarget`] comes from a verified manifest (its endpoints and TLS pin); the
//! [`ProviderPool`] connects to it over pinned QUIC, says `ProviderHello`
//! ([`courier_transport::provider_hello`], the opening every provider client shares), and
//! sends `Call`s on bidirectional streams kept for reuse ([`StreamPool`]). Established
//! connections and their streams are kept per (address, pin), so a warm call costs one frame
//! each way, not a handshake or a stream set-up.

use crate::policy::{EndpointRefusal, EndpointRules, ProxyOrigin};
use courier_protocol::SpkiPin;
use courier_protocol::provider::{Call, Reply};
use courier_transport::{
    HelloError, StreamPool, TransportError, client_endpoint, connect, provider_hello, resolve,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a proxy's provider is, as its signed manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTarget {
    /// `host:port` endpoints, tried in order.
    pub endpoints: Vec<String>,
    /// The provider's TLS key pin.
    pub pin: SpkiPin,
}

/// Why a provider call failed on the host side.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The manifest names no endpoint.
    #[error("the manifest names no provider endpoint")]
    NoEndpoint,
    /// No endpoint could be reached; the last failure is kept.
    #[error("provider unreachable at {endpoint}: {source}")]
    Unreachable {
        /// The endpoint tried last.
        endpoint: String,
        /// Why it failed.
        source: TransportError,
    },
    /// The provider presented another TLS key than the pinned one.
    #[error("provider at {endpoint} presented TLS key {got}, but the manifest pins {expected}")]
    PinMismatch {
        /// The endpoint.
        endpoint: String,
        /// The pin from the manifest.
        expected: SpkiPin,
        /// What the provider presented.
        got: SpkiPin,
    },
    /// The provider did not answer the handshake correctly.
    #[error("provider handshake failed: {0}")]
    Handshake(String),
    /// The call failed on the connection.
    #[error("provider call failed: {0}")]
    Call(TransportError),
    /// No answer in time.
    #[error("provider did not answer within {}", to_the_millisecond(.0))]
    Timeout(Duration),
    /// The run's time is used up.
    #[error("no time left for a provider call")]
    NoTimeLeft,
    /// The client's policy does not let proxies reach this endpoint (nothing was sent).
    #[error("{0}")]
    Refused(EndpointRefusal),
}

/// `d` rounded to the nearest millisecond, as a person writes it (`5s`, `1s 250ms`): a
/// timeout cut to the run's time left is a few nanoseconds short of what was configured.
fn to_the_millisecond(d: &Duration) -> String {
    let ms = d.as_nanos().saturating_add(500_000) / 1_000_000;
    humantime::format_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
        .to_string()
}

impl ProviderError {
    fn from_connect(endpoint: &str, e: TransportError) -> Self {
        match e {
            TransportError::PinMismatch { expected, got } => ProviderError::PinMismatch {
                endpoint: endpoint.to_string(),
                expected,
                got,
            },
            TransportError::Timeout(d) => ProviderError::Timeout(d),
            source => ProviderError::Unreachable {
                endpoint: endpoint.to_string(),
                source,
            },
        }
    }
}

/// Pinned QUIC connections to providers, shared by every run of a client.
#[derive(Debug)]
pub struct ProviderPool {
    endpoints: Mutex<(Option<quinn::Endpoint>, Option<quinn::Endpoint>)>,
    conns: Mutex<HashMap<(SocketAddr, SpkiPin), Kept>>,
    reuse: bool,
    rules: EndpointRules,
    origin: ProxyOrigin,
}

/// A provider connection and its idle streams.
type Kept = (quinn::Connection, Arc<StreamPool>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProviderPool {
    /// A pool; with `reuse` false every call opens (and closes) its own connection. Any
    /// endpoint may be reached.
    pub fn new(reuse: bool) -> Self {
        Self::with_rules(reuse, EndpointRules::default(), ProxyOrigin::Local)
    }

    /// A pool that reaches only the endpoints `rules` allow for proxies from `origin`,
    /// checked before any packet is sent to them.
    pub fn with_rules(reuse: bool, rules: EndpointRules, origin: ProxyOrigin) -> Self {
        Self {
            endpoints: Mutex::new((None, None)),
            conns: Mutex::new(HashMap::new()),
            reuse,
            rules,
            origin,
        }
    }

    /// The client endpoint for `peer`'s address family (created once).
    fn endpoint(&self, peer: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
        let mut eps = lock(&self.endpoints);
        let slot = if peer.is_ipv6() {
            &mut eps.1
        } else {
            &mut eps.0
        };
        if let Some(ep) = slot {
            return Ok(ep.clone());
        }
        let ep = client_endpoint(peer)?;
        *slot = Some(ep.clone());
        Ok(ep)
    }

    /// Number of connections kept open.
    pub fn open_connections(&self) -> usize {
        lock(&self.conns)
            .values()
            .filter(|(c, _)| c.close_reason().is_none())
            .count()
    }

    /// Connections kept open to the provider with TLS key `pin`.
    pub fn open_connections_to(&self, pin: &SpkiPin) -> usize {
        lock(&self.conns)
            .iter()
            .filter(|((_, p), (c, _))| p == pin && c.close_reason().is_none())
            .count()
    }

    /// Closes the kept connections to the provider with TLS key `pin` (every address);
    /// returns how many were open. A call under way on one of them fails; the next call
    /// opens a new connection.
    pub fn close_pin(&self, pin: &SpkiPin) -> usize {
        let mut closed = 0;
        lock(&self.conns).retain(|(_, p), (c, _)| {
            if p != pin {
                return true;
            }
            if c.close_reason().is_none() {
                closed += 1;
            }
            c.close(0u32.into(), b"discarded");
            false
        });
        closed
    }

    /// Closes every kept connection.
    pub fn close_all(&self) {
        for (_, (c, _)) in lock(&self.conns).drain() {
            c.close(0u32.into(), b"bye");
        }
    }

    /// Connects to one address with the pin and says hello.
    async fn open(
        &self,
        endpoint_name: &str,
        addr: SocketAddr,
        pin: SpkiPin,
        timeout: Duration,
    ) -> Result<quinn::Connection, ProviderError> {
        let ep = self
            .endpoint(addr)
            .map_err(|e| ProviderError::from_connect(endpoint_name, e))?;
        let started = Instant::now();
        let conn = connect(&ep, addr, pin, timeout)
            .await
            .map_err(|e| ProviderError::from_connect(endpoint_name, e))?;
        let left = timeout.saturating_sub(started.elapsed());
        provider_hello(&conn, left).await.map_err(|e| match e {
            HelloError::Timeout(_) => ProviderError::Timeout(timeout),
            HelloError::UnsupportedVersion(why) | HelloError::Handshake(why) => {
                ProviderError::Handshake(why)
            }
        })?;
        Ok(conn)
    }

    /// A kept connection, or a new one to the first endpoint that answers.
    async fn connection(
        &self,
        target: &ProviderTarget,
        timeout: Duration,
    ) -> Result<Kept, ProviderError> {
        let started = Instant::now();
        let mut last = ProviderError::NoEndpoint;
        for name in &target.endpoints {
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ProviderError::Timeout(timeout));
            }
            if let Err(refusal) = self.rules.check_name(name) {
                last = ProviderError::Refused(refusal);
                continue;
            }
            let addr = match tokio::time::timeout(left, resolve(name)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => {
                    last = ProviderError::from_connect(name, e);
                    continue;
                }
                Err(_) => return Err(ProviderError::Timeout(timeout)),
            };
            if let Err(refusal) = self.rules.check_addr(name, addr, self.origin) {
                last = ProviderError::Refused(refusal);
                continue;
            }
            if self.reuse {
                let kept = lock(&self.conns).get(&(addr, target.pin)).cloned();
                if let Some(k) = kept {
                    if k.0.close_reason().is_none() {
                        return Ok(k);
                    }
                    lock(&self.conns).remove(&(addr, target.pin));
                }
            }
            match self.open(name, addr, target.pin, left).await {
                Ok(c) => {
                    let kept = (c, Arc::new(StreamPool::new()));
                    if self.reuse {
                        lock(&self.conns).insert((addr, target.pin), kept.clone());
                    }
                    return Ok(kept);
                }
                // Another key is an answer, not an outage: do not try the next endpoint
                // hoping for a different one, report it.
                Err(e @ ProviderError::PinMismatch { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One call to the provider: connection (kept or new), a stream (kept or new), one
    /// reply of at most `max_reply` bytes, all within `timeout`.
    pub async fn call(
        &self,
        target: &ProviderTarget,
        method: &str,
        payload: Vec<u8>,
        timeout: Duration,
        max_reply: usize,
    ) -> Result<Reply, ProviderError> {
        if timeout.is_zero() {
            return Err(ProviderError::NoTimeLeft);
        }
        let started = Instant::now();
        let call = Call {
            method: method.to_string(),
            payload,
        };
        // A kept connection may have died since; retry once on a fresh one.
        for attempt in 0..2 {
            let (conn, streams) = self.connection(target, timeout).await?;
            let left = timeout.saturating_sub(started.elapsed());
            // postcard framing around the reply bytes.
            let cap = max_reply.saturating_add(16);
            let exchange = streams.request(&conn, &call, cap, |_: &Reply| true);
            let result = tokio::time::timeout(left, exchange).await;
            if !self.reuse {
                conn.close(0u32.into(), b"done");
            }
            match result {
                Err(_) => return Err(ProviderError::Timeout(timeout)),
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(e)) => {
                    let stale = matches!(
                        e,
                        TransportError::Connection(_)
                            | TransportError::Write(_)
                            | TransportError::Read(_)
                    );
                    if self.reuse {
                        lock(&self.conns).retain(|_, (c, _)| c.stable_id() != conn.stable_id());
                    }
                    if !(stale && attempt == 0 && self.reuse) {
                        return Err(ProviderError::Call(e));
                    }
                }
            }
        }
        Err(ProviderError::NoTimeLeft)
    }
}

impl Drop for ProviderPool {
    fn drop(&mut self) {
        self.close_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_as_configured() {
        let shown = |ns| ProviderError::Timeout(Duration::from_nanos(ns)).to_string();
        assert_eq!(shown(4_999_999_509), "provider did not answer within 5s");
        assert_eq!(
            shown(1_250_000_000),
            "provider did not answer within 1s 250ms"
        );
        assert_eq!(shown(0), "provider did not answer within 0s");
    }
}
