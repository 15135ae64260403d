//! The keeper's connection to the registry: which node it talks to (see `nodes.rs`), the
//! authenticated connection it keeps there, the deadlines of its requests, and writes that
//! must find the node that takes them.

use super::{Failure, Stopped, Worker, classify, stopped_error, until};
use courier_transport::{
    ClientError, NODE_CONNECT_TIMEOUT, RegistryClient, TransportError, client_endpoint,
};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

impl Worker {
    /// Runs one request with the configured deadline.
    pub(super) async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.timed_within(self.config.request_timeout, fut).await
    }

    /// [`Worker::timed`] with the deadline `limit`.
    pub(super) async fn timed_within<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| ClientError::Transport(TransportError::Timeout(limit)))?
    }

    pub(super) fn drop_client(&mut self) {
        if let Some(client) = self.client.take() {
            client.close();
        }
    }

    /// The authenticated connection, connecting again if it was lost.
    pub(super) async fn client(&mut self) -> Result<RegistryClient, ClientError> {
        if let Some(client) = &self.client {
            if client.connection().close_reason().is_none() {
                return Ok(client.clone());
            }
            tracing::info!("registry connection lost: reconnecting");
            self.client = None;
        }
        let endpoint = match &self.endpoint {
            Some(e) => e.clone(),
            None => {
                let e = client_endpoint(self.nodes.current().0)?;
                self.endpoint = Some(e.clone());
                e
            }
        };
        let ((addr, pin), agent) = (self.nodes.current(), self.config.agent.clone());
        let pins = self.config.registry_pins.clone();
        // With several nodes, a node that does not answer (crashed, or a standby that
        // does not listen) must not hold the keeper for a whole request timeout.
        let limit = if self.nodes.several() {
            self.config.request_timeout.min(NODE_CONNECT_TIMEOUT)
        } else {
            self.config.request_timeout
        };
        let connect = async {
            let client =
                RegistryClient::connect_recording(endpoint, addr, pin, &agent, &pins).await?;
            client.authenticate(&self.key).await?;
            Ok(client)
        };
        let client = self.timed_within(limit, connect).await;
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                self.nodes.connect_failed(Instant::now());
                self.log_node();
                return Err(e);
            }
        };
        self.nodes.connected();
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Moves on to the next node of the cluster (if there are several).
    pub(super) fn next_node(&mut self) {
        if self.nodes.next(Instant::now()) {
            self.log_node();
        }
    }

    pub(super) fn log_node(&self) {
        if self.nodes.several() {
            let addr = self.nodes.current().0;
            tracing::info!(%addr, "trying another node of the registry");
        }
    }

    /// Runs a write (`op` on the connection) at the node that takes writes: a node that
    /// cannot write now (a cluster's standby) gives way to the next at once, each node
    /// tried at most once, even one passed over (it may be the writer). A stop asked for
    /// meanwhile ends the wait for a connection, unless `finishing` (the cancel at the end).
    pub(super) async fn at_writer<T, F, Fut>(
        &mut self,
        finishing: bool,
        mut op: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(RegistryClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let stop = self.stop.clone();
        let mut left = self.nodes.len();
        loop {
            let client = if finishing {
                self.client().await?
            } else {
                until(&stop, self.client())
                    .await
                    .map_err(|Stopped| stopped_error())??
            };
            match self.timed(op(client)).await {
                Err(e) if left > 1 && matches!(classify(&e), Failure::Elsewhere(_)) => {
                    left -= 1;
                    self.drop_client();
                    self.nodes.step();
                    self.log_node();
                }
                other => return other,
            }
        }
    }

    /// Goes back to the node given first for the renewals, after a write made elsewhere.
    pub(super) fn go_home(&mut self) {
        if self.nodes.home(Instant::now()) {
            self.drop_client();
            self.log_node();
        }
    }
}
