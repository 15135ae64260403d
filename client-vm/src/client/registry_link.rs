//! The client's link to the registry: the current connection (replaced when it was lost,
//! by a new one to the same address and pin, as moved by a rotation of the registry's
//! identity, or else to the next node of the registry's cluster) and the watched lookup
//! cache in front of the registry's `find`.

use crate::discard::Holdings;
use crate::lookup_cache::LookupCache;
use courier_protocol::{Candidate, ServiceQuery, SigningKey, SpkiPin};
use courier_transport::{
    ClientError, NODE_REQUEST_TIMEOUT, PinBook, RegistryClient, TransportError,
};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A registry connection with reconnection and the lookup cache.
pub(super) struct RegistryLink {
    current: RwLock<RegistryClient>,
    /// Where to connect again: the first connection's address and pin, then the other
    /// nodes of the registry's cluster.
    nodes: Vec<(SocketAddr, SpkiPin)>,
    /// The agent named in the Hello.
    agent: String,
    lookups: LookupCache,
    /// Longest a query's candidates are reused (zero: ask on every call).
    lookup_ttl: Duration,
    /// The client's key, with which a new connection authenticates.
    key: Option<SigningKey>,
    /// Where moves of the registry's pin are kept.
    pins: PinBook,
}

impl RegistryLink {
    /// A link on `registry`, connecting again as `agent` when it is lost, reusing a
    /// query's candidates for up to `lookup_ttl`, keeping moves of the registry's pin in
    /// `pins` (the move `registry` saw, if any, is recorded now); the events it watches end
    /// `holdings`.
    pub(super) fn new(
        registry: RegistryClient,
        agent: String,
        lookup_ttl: Duration,
        key: Option<SigningKey>,
        pins: PinBook,
        holdings: Arc<Holdings>,
        other_nodes: Vec<(SocketAddr, SpkiPin)>,
    ) -> Self {
        if let Some(moved) = registry.moved()
            && let Err(e) = pins.record(&moved)
        {
            tracing::error!("cannot keep the registry's new pin: {e}");
        }
        Self {
            nodes: std::iter::once((registry.addr(), registry.pin()))
                .chain(other_nodes)
                .collect(),
            agent,
            current: RwLock::new(registry),
            lookups: LookupCache::with_holdings(holdings),
            lookup_ttl,
            key,
            pins,
        }
    }

    /// The current connection (a cheap handle).
    pub(super) fn current(&self) -> RegistryClient {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Authenticates `registry` as the client's key, if it has one and the connection has
    /// not yet, so that what it fetches is metered as this client's. Best effort: a
    /// connection that cannot authenticate still fetches, anonymously, and says why in
    /// the log.
    pub(super) async fn identify(&self, registry: &RegistryClient) {
        if let Some(key) = &self.key
            && let Err(e) = registry.ensure_authenticated(key).await
        {
            tracing::warn!("fetching anonymously: could not authenticate as the client ({e})");
        }
    }

    /// Queries whose candidates the lookup cache keeps now.
    pub(super) fn cached_lookups(&self) -> usize {
        self.lookups.len()
    }

    /// Candidates from the lookup cache, or from the registry (then remembered while the
    /// interface's event feed shows no change), with the connection that answered.
    pub(super) async fn find(
        &self,
        query: ServiceQuery,
    ) -> Result<(RegistryClient, Vec<Candidate>), ClientError> {
        if self.lookup_ttl.is_zero() {
            return self.find_remote(query).await;
        }
        if let Some(candidates) = self.lookups.get(&query, self.lookup_ttl) {
            return Ok((self.current(), candidates));
        }
        let fill = self.lookups.begin(&self.current(), &query).await;
        let (registry, candidates) = self.find_remote(query).await?;
        if let Some(fill) = fill {
            self.lookups.put(fill, &candidates);
        }
        Ok((registry, candidates))
    }

    /// Finds candidates at the registry; if the connection was lost, reconnects once and
    /// asks again. With several nodes, a node that does not answer within
    /// [`NODE_REQUEST_TIMEOUT`] (killed outright: QUIC would notice only at its idle
    /// timeout) counts as lost, and the next node is asked.
    pub(super) async fn find_remote(
        &self,
        query: ServiceQuery,
    ) -> Result<(RegistryClient, Vec<Candidate>), ClientError> {
        let registry = self.current();
        let several = self.nodes.len() > 1;
        let asked = if several {
            tokio::time::timeout(NODE_REQUEST_TIMEOUT, registry.find(query.clone()))
                .await
                .unwrap_or_else(|_| {
                    registry.close();
                    Err(ClientError::Transport(TransportError::Timeout(
                        NODE_REQUEST_TIMEOUT,
                    )))
                })
        } else {
            registry.find(query.clone()).await
        };
        match asked {
            Ok(c) => Ok((registry, c)),
            Err(ClientError::Transport(e)) if registry.connection().close_reason().is_some() => {
                tracing::info!("registry connection lost ({e}); reconnecting");
                let silent = matches!(e, TransportError::Timeout(_));
                let fresh = self.reconnect(registry.addr(), silent).await?;
                if let Some(key) = &self.key {
                    fresh.authenticate(key).await?;
                }
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                let candidates = fresh.find(query).await?;
                Ok((fresh, candidates))
            }
            Err(e) => Err(e),
        }
    }

    /// A new connection: to the node that was lost (unless it went `silent`: then last),
    /// then to each other node in turn (each given
    /// [`courier_transport::NODE_CONNECT_TIMEOUT`] when there are several). The last
    /// failure if none answers.
    async fn reconnect(
        &self,
        lost: SocketAddr,
        silent: bool,
    ) -> Result<RegistryClient, ClientError> {
        let start = self.nodes.iter().position(|(a, _)| *a == lost).unwrap_or(0);
        let mut order = self.nodes.clone();
        order.rotate_left(start);
        if silent {
            order.rotate_left(1);
        }
        match RegistryClient::connect_first(&order, &self.agent, &self.pins).await {
            Ok(c) => {
                if c.addr() != lost {
                    tracing::info!(addr = %c.addr(), "connected to another node of the registry");
                }
                Ok(c)
            }
            Err(mut failures) => Err(failures.pop().map_or(
                ClientError::Unexpected("no registry node to connect to"),
                |(_, e)| e,
            )),
        }
    }
}
