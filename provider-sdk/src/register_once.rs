//! One registration without a lease keeper: register the bundle, then publish one freshness
//! statement saying its version is current. Clients require such a statement with every
//! candidate; with no keeper to publish more, the candidate is refused once it lapses
//! ([`DEFAULT_FRESHNESS_VALIDITY`]), which is what a client should expect of a vendor that
//! stopped vouching for its service. For scripts, tests and one-off registrations; a service
//! that stays up uses [`LeaseKeeper`](crate::LeaseKeeper).

use crate::bundle::{Bundle, BundleError};
use crate::lease_keeper::DEFAULT_FRESHNESS_VALIDITY;
use courier_protocol::{ErrorKind, LeaseGrant, SigningKey};
use courier_transport::{ClientError, RegistryClient};
use std::time::Duration;

/// Why [`Bundle::register_once`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterOnceError {
    /// The registry refused the registration, or could not be reached.
    #[error("registration: {0}")]
    Register(#[source] ClientError),
    /// The freshness statement could not be signed.
    #[error("freshness statement: {0}")]
    Sign(#[from] BundleError),
    /// The registration went through but the registry refused its freshness statement (the
    /// lease stands; clients requiring statements will refuse its candidates).
    #[error("registered, but the freshness statement was refused: {0}")]
    Freshness(#[source] ClientError),
}

impl Bundle {
    /// Registers the bundle on `client` (authenticated as `key`, the bundle's vendor) for a
    /// lease of `ttl`, then publishes a freshness statement by `key` that its version is
    /// current, valid [`DEFAULT_FRESHNESS_VALIDITY`]. A registry that already holds a newer
    /// statement for the service (`Stale`) keeps that one, as for the lease keeper.
    pub async fn register_once(
        &self,
        client: &RegistryClient,
        key: &SigningKey,
        ttl: Duration,
    ) -> Result<LeaseGrant, RegisterOnceError> {
        let statement = self.freshness(key, DEFAULT_FRESHNESS_VALIDITY)?;
        let grant = client
            .register(self.register_request(ttl))
            .await
            .map_err(RegisterOnceError::Register)?;
        match client.publish_freshness(statement).await {
            Ok(()) => Ok(grant),
            Err(ClientError::Registry(w)) if w.kind == ErrorKind::Stale => Ok(grant),
            Err(e) => Err(RegisterOnceError::Freshness(e)),
        }
    }
}
