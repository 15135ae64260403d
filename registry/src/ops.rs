//! The operators' side of a running server, started with it by [`crate::serve`]: the
//! counters ([`Observer`]) when anything reads them, the HTTP listener (`/metrics`, the
//! dashboard) if [`crate::ServerConfig::http`] is set, and the webhooks if
//! [`crate::ServerConfig::notify`] is. With neither, nothing here runs and the server
//! counts nothing.

use crate::driver::Registry;
use crate::http::{self, HttpConfig, HttpRunning};
use crate::notify::{self, AlertKind, NotifyConfig, NotifyError};
use crate::observe::Observer;
use courier_protocol::SpkiPin;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
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
    /// The webhooks could not start.
    #[error(transparent)]
    Notify(#[from] NotifyError),
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

/// Starts what `http` and `notify` ask for, until `shutdown`.
pub(crate) async fn start(
    http: Option<&HttpConfig>,
    notify: Option<&NotifyConfig>,
    registry: &Arc<Registry>,
    pin: SpkiPin,
    shutdown: &watch::Receiver<bool>,
) -> Result<Ops, OpsError> {
    if http.is_none() && notify.is_none() {
        return Ok(Ops::default());
    }
    let failures = notify
        .filter(|n| n.wants(AlertKind::FailureSpike))
        .map(|_| mpsc::channel(notify::FAILURE_QUEUE));
    let (failures_tx, failures_rx) = match failures {
        Some((tx, rx)) => (Some(tx), Some(rx)),
        None => (None, None),
    };
    let observer = Arc::new(Observer::new(failures_tx));
    let mut ops = Ops {
        observer: Some(observer.clone()),
        ..Ops::default()
    };
    if let Some(config) = http {
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
        ops.http = Some((local_addr, start_token));
        ops.tasks.push(task);
    }
    if let Some(config) = notify {
        let failures = failures_rx.unwrap_or_else(|| mpsc::channel(1).1);
        ops.tasks.extend(notify::start(
            config.clone(),
            registry.clone(),
            observer,
            failures,
            shutdown.clone(),
        )?);
    }
    Ok(ops)
}
