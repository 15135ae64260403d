//! Delivering alerts to one webhook: a bounded queue that drops its oldest alert when full
//! (counted), and a task that posts what is queued in batches, each post under a timeout,
//! retried with exponential backoff and jitter, and dropped (counted) after the last
//! attempt. The task is the only one that waits on the webhook.

use super::NotifyConfig;
use super::WebhookTarget;
use super::alert::{Alert, Payload};
use crate::driver::wall_clock_ms;
use crate::observe::Observer;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The alerts waiting for one webhook.
#[derive(Debug)]
pub(super) struct AlertQueue {
    alerts: Mutex<VecDeque<Alert>>,
    cap: usize,
    ready: Notify,
    observer: Arc<Observer>,
}

impl AlertQueue {
    /// A queue of at most `cap` alerts (at least 1).
    pub fn new(cap: usize, observer: Arc<Observer>) -> Self {
        Self {
            alerts: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            ready: Notify::new(),
            observer,
        }
    }

    /// Queues an alert without waiting; when full, the oldest is dropped and counted.
    pub fn push(&self, alert: Alert) {
        let mut q = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= self.cap {
            q.pop_front();
            self.observer.metrics.webhook_dropped_full.inc();
        }
        q.push_back(alert);
        drop(q);
        self.ready.notify_one();
    }

    /// Takes up to `n` alerts, oldest first.
    fn take(&self, n: usize) -> Vec<Alert> {
        let mut q = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = n.min(q.len());
        q.drain(..n).collect()
    }

    /// Alerts waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Why one post failed.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// No answer: refused, reset, timed out.
    #[error("{0}")]
    Transport(String),
    /// The webhook answered, but not with a 2xx.
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
}

/// One webhook's delivery task.
#[derive(Debug)]
pub(super) struct Delivery {
    /// Where it posts.
    pub target: WebhookTarget,
    /// The HTTP client (shared by every webhook).
    pub client: reqwest::Client,
    /// Its queue.
    pub queue: Arc<AlertQueue>,
    /// Timeouts, retries, batch size.
    pub config: Arc<NotifyConfig>,
    /// The registry's id, named in every post.
    pub registry_id: String,
    /// Where deliveries, retries and drops are counted.
    pub observer: Arc<Observer>,
}

impl Delivery {
    /// Posts queued alerts until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let batch = self.queue.take(self.config.batch.max(1));
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = self.queue.ready.notified() => continue,
                }
            }
            if !self.deliver(&batch, &mut shutdown).await {
                return;
            }
        }
    }

    /// Posts one batch until it is taken or the attempts run out; `false` on shutdown.
    async fn deliver(&self, batch: &[Alert], shutdown: &mut watch::Receiver<bool>) -> bool {
        let body = match serde_json::to_vec(&Payload {
            registry: &self.registry_id,
            sent_at_ms: wall_clock_ms(),
            alerts: batch,
        }) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(webhook = %self.target, "alert not encoded: {e}");
                return true;
            }
        };
        let metrics = &self.observer.metrics;
        let attempts = self.config.attempts.max(1);
        for attempt in 1..=attempts {
            let posted = tokio::select! {
                _ = shutdown.changed() => return false,
                r = self.post(body.clone()) => r,
            };
            match posted {
                Ok(()) => {
                    metrics.webhook_delivered.inc();
                    tracing::debug!(webhook = %self.target, alerts = batch.len(), attempt, "alerts delivered");
                    return true;
                }
                Err(e) if attempt == attempts => {
                    metrics.webhook_dropped_failed.add(batch.len() as u64);
                    tracing::warn!(webhook = %self.target, alerts = batch.len(), "alerts dropped after {attempts} attempts: {e}");
                }
                Err(e) => {
                    metrics.webhook_retried.inc();
                    let wait = backoff(&self.config, attempt, rand::random::<f64>());
                    tracing::debug!(webhook = %self.target, attempt, "post failed ({e}); again in {wait:?}");
                    tokio::select! {
                        _ = shutdown.changed() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        true
    }

    /// One post, under the client's timeout.
    async fn post(&self, body: Vec<u8>) -> Result<(), PostError> {
        let resp = self
            .client
            .post(self.target.0.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| PostError::Transport(transport_reason(&e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Status(status))
        }
    }
}

/// A short reason for a failed post (reqwest's own message names the whole URL).
fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "connection failed".into()
    }
}

/// The wait after failed attempt `attempt` (1-based): the base doubled per attempt, capped,
/// times a jitter of ±25 % (`unit` in [0, 1)).
fn backoff(config: &NotifyConfig, attempt: u32, unit: f64) -> Duration {
    let doubled = config
        .backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    doubled.min(config.max_backoff).mul_f64(0.75 + unit / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(seq: u64) -> Alert {
        Alert::Missed {
            from_seq: seq,
            to_seq: seq + 1,
            at_ms: 0,
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_it() {
        let observer = Arc::new(Observer::new(None));
        let q = AlertQueue::new(2, observer.clone());
        for seq in 1..=5 {
            q.push(alert(seq));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(observer.metrics.webhook_dropped_full.get(), 3);
        assert_eq!(q.take(10), vec![alert(4), alert(5)]);
        assert!(q.take(10).is_empty());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let mut c = NotifyConfig::new(vec![]);
        c.backoff = Duration::from_millis(100);
        c.max_backoff = Duration::from_millis(1000);
        assert_eq!(backoff(&c, 1, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(&c, 2, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(&c, 3, 0.0), Duration::from_millis(300));
        assert_eq!(backoff(&c, 10, 0.5), Duration::from_millis(1000));
        assert_eq!(
            backoff(&c, 40, 0.999_999),
            c.max_backoff.mul_f64(1.249_999_5)
        );
    }
}
