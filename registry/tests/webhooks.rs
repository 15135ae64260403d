//! Webhooks against local receivers (axum on 127.0.0.1:0): one that fails on purpose
//! first, then takes every kind of alert; one whose port refuses; one that hangs. Failed
//! posts are retried with backoff, then dropped and counted; a hanging webhook never holds
//! the registry or another webhook.
#![allow(clippy::unwrap_used)]

mod common;
mod ops;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use courier_protocol::{AdminAction, ClientProfile, ContentHash, Outcome, ServiceQuery, VendorKey};
use courier_registry::{NotifyConfig, RegistryHandle, WebhookTarget};
use ops::{http_config, scrape, value};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A receiver: fails its first `fail_first` posts with 500, or hangs on every post.
#[derive(Default)]
struct Receiver {
    fail_first: usize,
    hang: bool,
    attempts: AtomicUsize,
    alerts: Mutex<Vec<Value>>,
    registries: Mutex<Vec<Value>>,
}

impl Receiver {
    fn alerts(&self) -> Vec<Value> {
        self.alerts.lock().unwrap().clone()
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["kind"] == kind)
            .collect()
    }
}

async fn hook(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let n = r.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    if r.hang {
        std::future::pending::<()>().await;
    }
    if n <= r.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let post: Value = serde_json::from_slice(&body).unwrap();
    r.registries.lock().unwrap().push(post["registry"].clone());
    let alerts = post["alerts"].as_array().unwrap().clone();
    r.alerts.lock().unwrap().extend(alerts);
    StatusCode::NO_CONTENT
}

/// Starts a receiver; its webhook URL (with a secret-looking path).
async fn receiver(r: Receiver) -> (WebhookTarget, Arc<Receiver>) {
    let r = Arc::new(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hooks/s3cr3t", post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/hooks/s3cr3t").parse().unwrap();
    (url, r)
}

/// Quick retries for tests.
fn notify(webhooks: Vec<WebhookTarget>) -> NotifyConfig {
    let mut n = NotifyConfig::new(webhooks);
    n.backoff = Duration::from_millis(40);
    n.max_backoff = Duration::from_millis(200);
    n.timeout = Duration::from_secs(5);
    n
}

async fn start_notifying(dir: &std::path::Path, n: NotifyConfig, rate: u32) -> RegistryHandle {
    let mut setup = config(dir);
    setup.registry.operators = vec![VendorKey::of(&key(9))];
    setup.server.http = Some(http_config());
    setup.server.notify = Some(n);
    setup.server.request_rate_per_connection = rate;
    start(setup).await
}

fn failed(name: &str) -> Outcome {
    Outcome {
        client: String::new(),
        name: name.into(),
        version: "1.0.0".into(),
        component: ContentHash([1; 32]),
        function: "courier:echo/echo@0.1.0.say".into(),
        ok: false,
        detail: "broken".into(),
        duration_us: 10,
        facts: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_gets_every_kind_of_alert_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(Receiver {
        fail_first: 2,
        ..Receiver::default()
    })
    .await;
    let mut n = notify(vec![url]);
    n.watch_services = vec!["acme/echo".into()];
    n.failure_spike = 3;
    n.refusal_rate = 5;
    let h = start_notifying(dir.path(), n, 20).await;

    // Two brief leases run out: only the watched service's is alerted.
    let vendor_key = key(1);
    let v = vendor(&h, &vendor_key).await;
    v.register(echo(&vendor_key, "acme/echo", 100))
        .await
        .unwrap();
    v.register(echo(&vendor_key, "acme/other", 100))
        .await
        .unwrap();
    let kv_lease = v
        .register(kv(&vendor_key, "acme/kv", 60_000))
        .await
        .unwrap()
        .lease;
    // The operator revokes an unwatched lease: revocations are alerted whatever the service.
    let op = vendor(&h, &key(9)).await;
    op.admin(AdminAction::RevokeLease {
        lease: kv_lease,
        reason: "test".into(),
    })
    .await
    .unwrap();
    // Three failures of the watched service make a spike; the other's do not count.
    let c = vendor(&h, &key(3)).await;
    c.register_client(ClientProfile::default()).await.unwrap();
    for name in [
        "acme/echo",
        "acme/other",
        "acme/echo",
        "acme/other",
        "acme/echo",
    ] {
        c.report(failed(name)).await.unwrap();
    }
    // A burst past the connection's rate (20/s): refusals above 5/s.
    let blaster = client(&h).await;
    let finds = (0..60).map(|_| {
        blaster.find(ServiceQuery {
            interface: "courier:echo/echo".into(),
            limit: 1,
            ..Default::default()
        })
    });
    let refused = futures_util::future::join_all(finds)
        .await
        .iter()
        .filter(|r| r.is_err())
        .count();
    assert!(refused >= 20, "{refused} refused");

    let kinds = [
        "lease_lost",
        "revocation",
        "failure_spike",
        "admission_refusals",
    ];
    let all_came = eventually(async || kinds.iter().all(|k| !rx.of_kind(k).is_empty())).await;
    assert!(all_came, "alerts received: {:#?}", rx.alerts());

    let lost = rx.of_kind("lease_lost");
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(lost[0]["service"], "acme/echo");
    assert_eq!(lost[0]["reason"], "expired");
    assert_eq!(lost[0]["interfaces"][0], ECHO_IFACE);
    let revoked = rx.of_kind("revocation");
    assert_eq!(revoked[0]["service"], "acme/kv");
    assert_eq!(revoked[0]["lease"], kv_lease.to_string());
    let spikes = rx.of_kind("failure_spike");
    assert_eq!(spikes.len(), 1, "{spikes:#?}");
    assert_eq!(spikes[0]["service"], "acme/echo");
    assert_eq!(spikes[0]["failures"], 3);
    let refusals = &rx.of_kind("admission_refusals")[0];
    assert!(refusals["per_second"].as_u64().unwrap() >= 5, "{refusals}");
    assert!(refusals["causes"]["connection_rate"].as_u64().unwrap() >= 5);
    assert!(
        rx.registries
            .lock()
            .unwrap()
            .iter()
            .all(|r| r == h.registry().registry_id())
    );

    // The first post failed twice and was retried; nothing was dropped. (A delivery is
    // counted once its answer is read, just after the receiver has the alerts.)
    let delivered = "courier_webhook_deliveries_total";
    assert!(
        eventually(async || value(&scrape(&h).await, delivered) as usize + 2 == rx.attempts())
            .await,
        "deliveries counted: {}, posts received: {}",
        value(&scrape(&h).await, delivered),
        rx.attempts()
    );
    let text = scrape(&h).await;
    assert_eq!(value(&text, "courier_webhook_retries_total"), 2.0);
    assert_eq!(
        value(&text, "courier_webhook_dropped_total{reason=\"failed\"}"),
        0.0
    );
    assert_eq!(
        value(
            &text,
            "courier_webhook_dropped_total{reason=\"queue_full\"}"
        ),
        0.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_refusing_target_is_retried_with_backoff_then_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let mut n = notify(vec![url.parse().unwrap()]);
    n.attempts = 3;
    let h = start_notifying(dir.path(), n, 0).await;
    let vendor_key = key(1);
    let v = vendor(&h, &vendor_key).await;
    v.register(echo(&vendor_key, "acme/echo", 100))
        .await
        .unwrap();
    let dropped = "courier_webhook_dropped_total{reason=\"failed\"}";
    assert!(eventually(async || value(&scrape(&h).await, dropped) == 1.0).await);
    let text = scrape(&h).await;
    assert_eq!(value(&text, "courier_webhook_retries_total"), 2.0);
    assert_eq!(value(&text, "courier_webhook_deliveries_total"), 0.0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_hanging_target_times_out_is_retried_then_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(Receiver {
        hang: true,
        ..Receiver::default()
    })
    .await;
    let mut n = notify(vec![url]);
    n.timeout = Duration::from_millis(200);
    n.attempts = 2;
    let h = start_notifying(dir.path(), n, 0).await;
    let vendor_key = key(1);
    let v = vendor(&h, &vendor_key).await;
    v.register(echo(&vendor_key, "acme/echo", 100))
        .await
        .unwrap();
    let dropped = "courier_webhook_dropped_total{reason=\"failed\"}";
    assert!(eventually(async || value(&scrape(&h).await, dropped) == 1.0).await);
    assert_eq!(rx.attempts(), 2);
    assert_eq!(
        value(&scrape(&h).await, "courier_webhook_retries_total"),
        1.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_holds_neither_the_registry_nor_another_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (hanging, stuck) = receiver(Receiver {
        hang: true,
        ..Receiver::default()
    })
    .await;
    let (healthy, fine) = receiver(Receiver::default()).await;
    // The hanging webhook holds its post for as long as the test runs.
    let mut n = notify(vec![hanging, healthy]);
    n.timeout = Duration::from_secs(60);
    let h = start_notifying(dir.path(), n, 0).await;
    let vendor_key = key(1);
    let v = vendor(&h, &vendor_key).await;
    v.register(echo(&vendor_key, "acme/first", 100))
        .await
        .unwrap();
    assert!(eventually(async || stuck.attempts() == 1).await);

    // With a post hanging: leases come and go, renewals and lookups are answered, and the
    // other webhook hears of every lease lost.
    let mut leases = Vec::new();
    for i in 0..10 {
        let name = format!("acme/svc{i}");
        leases.push(v.register(echo(&vendor_key, &name, 100)).await.unwrap());
    }
    let keeper = v
        .register(echo(&vendor_key, "acme/kept", 60_000))
        .await
        .unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..100 {
        let asked = Instant::now();
        v.renew(keeper.lease, 60_000).await.unwrap();
        slowest = slowest.max(asked.elapsed());
        let found = v
            .find(ServiceQuery {
                interface: "courier:echo/echo".into(),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(!found.is_empty());
    }
    // The post hangs for up to 60 s; renewals are answered as quickly as ever.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest renewal {slowest:?}"
    );
    assert!(eventually(async || fine.of_kind("lease_lost").len() == 11).await);
    assert_eq!(stuck.attempts(), 1, "the first post is still hanging");
    assert!(stuck.alerts().is_empty());
    let text = scrape(&h).await;
    assert_eq!(value(&text, "courier_renewals_total"), 100.0);
    assert_eq!(value(&text, "courier_lookup_duration_seconds_count"), 100.0);
    // Shutting down does not wait for the hanging post.
    h.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_alerts_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (url, stuck) = receiver(Receiver {
        hang: true,
        ..Receiver::default()
    })
    .await;
    // One alert per post; the first post hangs, two more alerts wait, the rest are dropped.
    let mut n = notify(vec![url]);
    n.timeout = Duration::from_secs(60);
    n.batch = 1;
    n.queue = 2;
    let h = start_notifying(dir.path(), n, 0).await;
    let vendor_key = key(1);
    let v = vendor(&h, &vendor_key).await;
    for i in 0..10 {
        let name = format!("acme/svc{i}");
        v.register(echo(&vendor_key, &name, 100)).await.unwrap();
    }
    let full = "courier_webhook_dropped_total{reason=\"queue_full\"}";
    assert!(
        eventually(async || value(&scrape(&h).await, full) == 7.0).await,
        "dropped as the queue was full: {}",
        value(&scrape(&h).await, full)
    );
    let text = scrape(&h).await;
    assert_eq!(value(&text, "courier_expiries_total"), 10.0);
    assert_eq!(
        value(&text, "courier_webhook_dropped_total{reason=\"failed\"}"),
        0.0
    );
    assert_eq!(stuck.attempts(), 1, "one post, still hanging");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_rollout_is_alerted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(Receiver::default()).await;
    let h = start_notifying(dir.path(), notify(vec![url]), 100).await;
    let vendor_key = key(1);
    let v = vendor(&h, &vendor_key).await;
    v.register(echo(&vendor_key, "acme/echo", 30_000))
        .await
        .unwrap();
    let mut m = echo_manifest(&vendor_key, "acme/echo");
    m.version = "2.0.0".into();
    let mut staged = signed(&m, &vendor_key, courier_proxy_artifacts::ECHO, 30_000);
    staged.staged = true;
    v.register(staged).await.unwrap();
    let op = vendor(&h, &key(9)).await;
    op.admin(AdminAction::StartRollout(courier_protocol::RolloutSpec {
        name: "acme/echo".into(),
        version: "2.0.0".into(),
        waves: vec!["100%".parse().unwrap()],
        delay_ms: 3_600_000,
        max_failure_ppm: 0,
        min_reports: 1,
    }))
    .await
    .unwrap();
    // A client in the wave reports a failure of 2.0.0: halted, and alerted.
    let c = vendor(&h, &key(3)).await;
    c.register_client(ClientProfile::default()).await.unwrap();
    let mut outcome = failed("acme/echo");
    outcome.version = "2.0.0".into();
    c.report(outcome.clone()).await.unwrap();
    assert!(eventually(async || !rx.of_kind("rollout_halted").is_empty()).await);
    // More failures after the halt change nothing.
    c.report(outcome).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let halted = rx.of_kind("rollout_halted");
    assert_eq!(halted.len(), 1, "{halted:#?}");
    assert_eq!(halted[0]["service"], "acme/echo");
    assert_eq!(halted[0]["version"], "2.0.0");
    assert_eq!(halted[0]["waves_opened"], 1);
    assert!(halted[0]["reason"].as_str().unwrap().contains("1 of 1"));
    h.shutdown().await;
}
