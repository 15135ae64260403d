//! `/metrics` after scripted traffic: every counter and gauge shows what was done, the text
//! passes `promtool check metrics` (Debian's `prometheus` package; skipped with a line
//! when it is missing), and a scraper asking for OpenMetrics gets it.
#![allow(clippy::unwrap_used)]

mod common;
mod ops;

use common::*;
use courier_protocol::{
    AdminAction, ClientProfile, ContentHash, Outcome, ServiceQuery, SigningKey, VendorKey,
};
use ops::{http, http_addr, http_config, scrape, tool, value};
use std::io::Write;
use std::process::{Command, Stdio};

fn outcome(ok: bool) -> Outcome {
    Outcome {
        client: String::new(),
        name: "acme/echo".into(),
        version: "1.0.0".into(),
        component: ContentHash([1; 32]),
        function: "courier:echo/echo@0.1.0.say".into(),
        ok,
        detail: String::new(),
        duration_us: 10,
        facts: Default::default(),
    }
}

fn query(interface: &str) -> ServiceQuery {
    ServiceQuery {
        interface: interface.into(),
        limit: 10,
        ..Default::default()
    }
}

/// Runs `promtool check metrics` on `text`, if promtool is installed.
fn promtool_check(text: &str) {
    let Some(promtool) = tool("promtool", "prometheus", "promtool check metrics") else {
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the text:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("promtool check metrics: ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_scripted_traffic_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let (vendor_key, client_key): (SigningKey, SigningKey) = (key(1), key(2));
    let mut setup = config(dir.path());
    setup.registry.operators = vec![VendorKey::of(&client_key)];
    setup.server.http = Some(http_config());
    setup.server.max_connections_per_peer = 3;
    let h = start(setup).await;

    // A fresh registry: nothing counted yet, and the text is valid already.
    let text = scrape(&h).await;
    assert_eq!(value(&text, "courier_renewals_total"), 0.0);
    promtool_check(&text);

    // A vendor: three registrations, five renewals, a cancellation, an expiry.
    let v = vendor(&h, &vendor_key).await;
    let echo_lease = v
        .register(echo(&vendor_key, "acme/echo", 60_000))
        .await
        .unwrap()
        .lease;
    let kv_lease = v
        .register(kv(&vendor_key, "acme/kv", 60_000))
        .await
        .unwrap()
        .lease;
    let text = scrape(&h).await;
    assert_eq!(value(&text, "courier_leases_active"), 2.0);
    assert_eq!(value(&text, "courier_registrations_total"), 2.0);
    for _ in 0..5 {
        v.renew(echo_lease, 60_000).await.unwrap();
    }
    v.cancel(kv_lease).await.unwrap();

    // A client (also the operator): four lookups (three find the echo proxy), a fetch,
    // three outcomes, a live subscription.
    let c = vendor(&h, &client_key).await;
    let mut candidates = Vec::new();
    for _ in 0..3 {
        candidates = c.find(query("courier:echo/echo")).await.unwrap();
        assert_eq!(candidates.len(), 1);
    }
    assert!(c.find(query("courier:kv/store")).await.unwrap().is_empty());
    let manifest = candidates[0].manifest.peek().unwrap();
    let bytes = c
        .fetch(
            manifest.component_hash,
            manifest.component_size,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    c.register_client(ClientProfile::default()).await.unwrap();
    c.report(outcome(true)).await.unwrap();
    c.report(outcome(false)).await.unwrap();
    c.report(outcome(false)).await.unwrap();
    let mut events = c.subscribe(None, 0).await.unwrap();
    events.next().await.unwrap();

    // A third connection from this address is let in, a fourth refused at the cap.
    let third = client(&h).await;
    assert!(
        courier_transport::RegistryClient::connect(h.local_addr(), h.pin(), "test")
            .await
            .is_err()
    );

    // A lease that runs out, and the operator's revocation of the echo lease.
    v.register(echo(&vendor_key, "acme/brief", 100))
        .await
        .unwrap();
    assert!(
        eventually(async || value(&scrape(&h).await, "courier_expiries_total") == 1.0).await,
        "the brief lease expired"
    );
    c.admin(AdminAction::RevokeLease {
        lease: echo_lease,
        reason: "test".into(),
    })
    .await
    .unwrap();

    let text = scrape(&h).await;
    for (series, want) in [
        ("courier_registrations_total", 3.0),
        ("courier_renewals_total", 5.0),
        ("courier_cancellations_total", 1.0),
        ("courier_expiries_total", 1.0),
        ("courier_revocations_total{by=\"operator\"}", 1.0),
        ("courier_revocations_total{by=\"vendor\"}", 0.0),
        ("courier_lookup_duration_seconds_count", 4.0),
        ("courier_lookup_duration_seconds_bucket{le=\"+Inf\"}", 4.0),
        ("courier_lookup_errors_total", 0.0),
        ("courier_proxies_handed_out_total", 3.0),
        ("courier_fetches_total", 1.0),
        ("courier_fetched_bytes_total", bytes.len() as f64),
        ("courier_outcomes_total{result=\"ok\"}", 1.0),
        ("courier_outcomes_total{result=\"failed\"}", 2.0),
        ("courier_subscribers{feed=\"quic\"}", 1.0),
        ("courier_subscribers{feed=\"dashboard\"}", 0.0),
        ("courier_admission_refusals_total{cause=\"peer_cap\"}", 1.0),
        ("courier_admission_refusals_total{cause=\"in_flight\"}", 0.0),
        ("courier_leases_active", 0.0),
        ("courier_catalog_registrations", 0.0),
        ("courier_http_unauthorized_total", 0.0),
    ] {
        assert_eq!(value(&text, series), want, "{series}");
    }
    assert!(bytes.len() > 1000);
    assert!(value(&text, "courier_lookup_duration_seconds_sum") > 0.0);
    assert!(value(&text, "courier_event_next_seq") >= 6.0);
    promtool_check(&text);

    // The subscription ends: the gauge follows.
    drop(events);
    c.close();
    assert!(
        eventually(async || value(&scrape(&h).await, "courier_subscribers{feed=\"quic\"}") == 0.0)
            .await
    );
    drop(third);
    h.shutdown().await;
}

#[tokio::test]
async fn openmetrics_is_served_to_scrapers_that_ask_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = config(dir.path());
    setup.server.http = Some(http_config());
    let h = start(setup).await;
    let url = format!("http://{}/metrics", http_addr(&h));
    let resp = http()
        .get(&url)
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE courier_renewals counter"), "{text}");
    let plain = http().get(&url).send().await.unwrap();
    assert!(
        plain.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    h.shutdown().await;
}
