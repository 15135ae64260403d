//! Webhooks for operators: the registry POSTs JSON alerts to the URLs it was given when
//! something an operator must hear of happens ([`AlertKind`]): a lease of a watched service
//! was lost (it expired or was revoked), a revocation, a spike of failed outcomes for a
//! service, admission refusals above a rate, a staged rollout that halted.
//!
//! Rooms: `watch`, one task that follows the event feed, the failed outcomes the server
//! hands over and the refusal counters, and decides what to alert on; `deliver`, one task
//! per webhook with a bounded queue (full: the oldest alert goes, counted), posting batches
//! of alerts with a timeout and retrying with exponential backoff and jitter, then
//! dropping (counted); `alert`, what is posted.
//!
//! A webhook that fails, refuses or hangs holds only its own task and queue: the registry
//! hands alerts over without waiting, and the feed is read by the watcher alone (a watcher
//! that falls behind reads what it missed from the event ring).

mod alert;
mod deliver;
mod watch;

use crate::driver::Registry;
use crate::observe::Observer;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a webhook can be told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// A lease of a watched service ran out or was revoked (`lease-lost`).
    LeaseLost,
    /// A lease was revoked, whatever its service (`revocation`).
    Revocation,
    /// A watched service got [`NotifyConfig::failure_spike`] failed outcomes within
    /// [`NotifyConfig::failure_window`] (`failure-spike`).
    FailureSpike,
    /// Admission refused more than [`NotifyConfig::refusal_rate`] connections and requests
    /// in one second (`refusals`).
    Refusals,
    /// A staged rollout halted on its own: too many of its clients reported failures, or
    /// its staged registration went (`rollout-halted`).
    RolloutHalted,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 5] = [
        AlertKind::LeaseLost,
        AlertKind::Revocation,
        AlertKind::FailureSpike,
        AlertKind::Refusals,
        AlertKind::RolloutHalted,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::LeaseLost => "lease-lost",
            AlertKind::Revocation => "revocation",
            AlertKind::FailureSpike => "failure-spike",
            AlertKind::Refusals => "refusals",
            AlertKind::RolloutHalted => "rollout-halted",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not an [`AlertKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown alert {0:?}: expected lease-lost, revocation, failure-spike, refusals or rollout-halted"
)]
pub struct UnknownAlertKind(pub String);

impl FromStr for AlertKind {
    type Err = UnknownAlertKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownAlertKind(s.to_string()))
    }
}

/// Where a webhook posts: an `http` or `https` URL. Shown without its path and query,
/// which often hold a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget(reqwest::Url);

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    /// It does not parse as a URL.
    #[error("not a URL: {0}")]
    Parse(String),
    /// Its scheme is neither `http` nor `https`.
    #[error("webhook URLs are http or https, not {0}")]
    Scheme(String),
    /// It names no host.
    #[error("webhook URL without a host")]
    NoHost,
}

impl FromStr for WebhookTarget {
    type Err = WebhookUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = reqwest::Url::parse(s).map_err(|e| WebhookUrlError::Parse(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookUrlError::Scheme(url.scheme().to_string()));
        }
        if url.host_str().is_none() {
            return Err(WebhookUrlError::NoHost);
        }
        Ok(Self(url))
    }
}

impl fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.0.host_str().unwrap_or("?");
        match self.0.port_or_known_default() {
            Some(port) => write!(f, "{}://{host}:{port}/…", self.0.scheme()),
            None => write!(f, "{}://{host}/…", self.0.scheme()),
        }
    }
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookTarget({self})")
    }
}

/// The webhooks and what they are told. [`NotifyConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Where alerts are posted (each gets every alert).
    pub webhooks: Vec<WebhookTarget>,
    /// What is alerted on.
    pub on: Vec<AlertKind>,
    /// The services whose lost leases and failure spikes are alerted on; empty: every
    /// service. Revocations are alerted on whatever the service.
    pub watch_services: Vec<String>,
    /// Failed outcomes of one service that make a spike...
    pub failure_spike: u32,
    /// ...within this window (one alert per window and service).
    pub failure_window: Duration,
    /// Admission refusals per second above which an alert goes (once, until the rate falls
    /// below again).
    pub refusal_rate: u64,
    /// Alerts each webhook's queue holds; when full, the oldest is dropped.
    pub queue: usize,
    /// Most alerts in one post.
    pub batch: usize,
    /// How long one post may take, connection included.
    pub timeout: Duration,
    /// Posts of one batch before it is dropped.
    pub attempts: u32,
    /// Wait before the first retry; doubled after each (with ±25 % jitter)...
    pub backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
}

impl NotifyConfig {
    /// Every alert to `webhooks`, for every service: 5 failures within 60 s make a spike,
    /// 100 refusals/s alert; 256 alerts queued per webhook, 100 per post, 5 s per post, 5
    /// attempts 0.5 s apart at first, at most 30 s.
    pub fn new(webhooks: Vec<WebhookTarget>) -> Self {
        Self {
            webhooks,
            on: AlertKind::ALL.to_vec(),
            watch_services: Vec::new(),
            failure_spike: 5,
            failure_window: Duration::from_secs(60),
            refusal_rate: 100,
            queue: 256,
            batch: 100,
            timeout: Duration::from_secs(5),
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Whether `kind` is alerted on.
    pub(crate) fn wants(&self, kind: AlertKind) -> bool {
        self.on.contains(&kind)
    }

    /// Whether `service` is watched.
    pub(crate) fn watches(&self, service: &str) -> bool {
        self.watch_services.is_empty() || self.watch_services.iter().any(|s| s == service)
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The HTTP client could not be built (its TLS setup failed).
    #[error("webhook client: {0}")]
    Client(String),
}

/// Failed outcomes the watcher can hold before the server's hand-over drops them.
pub(crate) const FAILURE_QUEUE: usize = 1024;

/// Starts the watcher and one delivery task per webhook, until `shutdown`. `failures`
/// receives the services of failed outcomes from the server's [`Observer`].
pub(crate) fn start(
    config: NotifyConfig,
    registry: Arc<Registry>,
    observer: Arc<Observer>,
    failures: mpsc::Receiver<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, NotifyError> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("courier-registry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| NotifyError::Client(e.to_string()))?;
    let config = Arc::new(config);
    let mut tasks = Vec::new();
    let mut queues = Vec::new();
    for target in &config.webhooks {
        let queue = Arc::new(deliver::AlertQueue::new(config.queue, observer.clone()));
        queues.push(queue.clone());
        let delivery = deliver::Delivery {
            target: target.clone(),
            client: client.clone(),
            queue,
            config: config.clone(),
            registry_id: registry.registry_id().to_string(),
            observer: observer.clone(),
        };
        tasks.push(tokio::spawn(delivery.run(shutdown.clone())));
    }
    tracing::info!(
        webhooks = config.webhooks.len(),
        on = ?config.on,
        "webhooks configured"
    );
    let watcher = watch::Watcher::new(config, registry, observer, queues);
    tasks.push(tokio::spawn(watcher.run(failures, shutdown)));
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_checked_and_shown_without_their_secrets() {
        let t: WebhookTarget = "https://hooks.example/services/T0/B1/secret?x=1"
            .parse()
            .unwrap();
        assert_eq!(t.to_string(), "https://hooks.example:443/…");
        assert!(matches!(
            "ftp://x/".parse::<WebhookTarget>(),
            Err(WebhookUrlError::Scheme(_))
        ));
        assert!(matches!(
            "not a url".parse::<WebhookTarget>(),
            Err(WebhookUrlError::Parse(_))
        ));
    }

    #[test]
    fn alert_kinds_parse_by_their_names() {
        for k in AlertKind::ALL {
            assert_eq!(k.name().parse::<AlertKind>(), Ok(k));
        }
        assert!("lease_lost".parse::<AlertKind>().is_err());
        let mut c = NotifyConfig::new(vec![]);
        assert!(c.watches("anything"));
        c.watch_services = vec!["acme/echo".into()];
        assert!(c.watches("acme/echo") && !c.watches("acme/kv"));
    }
}
