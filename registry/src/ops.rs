//! The operators' side of a running server, started with it by [`crate::serve`]: the
//! counters ([`Observer`]) and the HTTP listener (`/metrics`, the dashboard) if
//! [`crate::ServerConfig::http`] is set. Without it, nothing here runs and the server
//! counts nothing.

use crate::driver::Registry;
use crate::http::{self, HttpConfig, HttpRunning};
use crate::observe::Observer;
use courier_protocol::SpkiPin;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the operators' side could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The HTTP listener could not bind.
    #[error("http listener on {addr}: {source}")]
    Http {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What runs for operators.
#[derive(Debug, Default)]
pub(crate) struct Ops {
    /// The counters the server increments, if anything reads them.
    pub observer: Option<Arc<Observer>>,
    /// The HTTP listener's address and start token.
    pub http: Option<(SocketAddr, String)>,
    /// The tasks to wait for at shutdown.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts what `http` asks for, until `shutdown`.
pub(crate) async fn start(
    http: Option<&HttpConfig>,
    registry: &Arc<Registry>,
    pin: SpkiPin,
    shutdown: &watch::Receiver<bool>,
) -> Result<Ops, OpsError> {
    let Some(config) = http else {
        return Ok(Ops::default());
    };
    let observer = Arc::new(Observer::new(None));
    let HttpRunning {
        local_addr,
        start_token,
        task,
    } = http::start(
        config,
        registry.clone(),
        observer.clone(),
        pin,
        registry.config().operators.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(|source| OpsError::Http {
        addr: config.listen,
        source,
    })?;
    Ok(Ops {
        observer: Some(observer),
        http: Some((local_addr, start_token)),
        tasks: vec![task],
    })
}
