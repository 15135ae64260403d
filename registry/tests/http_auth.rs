//! The HTTP listener's front door: the dashboard and its API need the start token or an
//! operator-signed token (refusals are 401, counted), `?token=` becomes a cookie, and
//! malformed requests get a clear 4xx.
#![allow(clippy::unwrap_used)]

mod common;
mod ops;

use common::*;
use courier_protocol::VendorKey;
use courier_registry::{DashboardToken, RegistryHandle};
use ops::{http, http_addr, http_config, scrape, value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start_with_operator(dir: &std::path::Path) -> RegistryHandle {
    let mut setup = config(dir);
    setup.registry.operators = vec![VendorKey::of(&key(9))];
    setup.server.http = Some(http_config());
    start(setup).await
}

#[tokio::test]
async fn the_dashboard_needs_a_token_and_keeps_it_in_a_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with_operator(dir.path()).await;
    let base = format!("http://{}", http_addr(&h));
    let token = h.dashboard_token().unwrap().to_string();
    let web = http();

    // Without a token, or with a wrong one: 401, with the reason, counted.
    for path in [
        "/",
        "/api/overview",
        "/api/leases",
        "/api/events",
        "/?token=nope",
    ] {
        let resp = web.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert!(
            resp.text().await.unwrap().starts_with("401 refused"),
            "{path}"
        );
    }
    let resp = web
        .get(format!("{base}/api/overview"))
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        value(&scrape(&h).await, "courier_http_unauthorized_total"),
        6.0
    );

    // `?token=` once: the token as a cookie, and on to the address without it.
    let resp = web
        .get(format!("{base}/?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("courier_token={token};")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let page = web
        .get(format!("{base}/"))
        .header("cookie", format!("courier_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(page.text().await.unwrap().contains("courier registry"));

    // A token the operator key signed, as a bearer token; expired, or of another key: 401.
    let now = wall_now();
    let signed = DashboardToken::sign(&key(9), &h.pin(), now + 60_000);
    let overview = web
        .get(format!("{base}/api/overview"))
        .bearer_auth(signed.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let overview: serde_json::Value = serde_json::from_slice(&overview).unwrap();
    assert_eq!(overview["leases"], 0);
    assert_eq!(overview["registry_id"], h.registry().registry_id());
    for bad in [
        DashboardToken::sign(&key(9), &h.pin(), now - 1),
        DashboardToken::sign(&key(8), &h.pin(), now + 60_000),
    ] {
        let resp = web
            .get(format!("{base}/api/overview"))
            .bearer_auth(bad.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // A signed token set as a cookie lasts as long as the token.
    let resp = web
        .get(format!("{base}/?token={signed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("Max-Age=59") || cookie.contains("Max-Age=60"),
        "{cookie}"
    );
    // The assets are not secret.
    let js = web
        .get(format!("{base}/dashboard.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    h.shutdown().await;
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn malformed_requests_get_a_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_with_operator(dir.path()).await;
    let addr = http_addr(&h);
    let token = h.dashboard_token().unwrap().to_string();

    assert_eq!(
        raw(addr, b"NOT HTTP AT ALL\r\n\r\n").await,
        "HTTP/1.1 400 Bad Request"
    );
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    assert_eq!(
        raw(addr, huge.as_bytes()).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        raw(
            addr,
            b"GET /nowhere HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .await,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        raw(
            addr,
            b"POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .await,
        "HTTP/1.1 405 Method Not Allowed"
    );

    let web = http();
    let base = format!("http://{addr}");
    for (path, why) in [
        ("/api/leases?limit=many", "limit"),
        ("/api/leases?after_name=a&after_lease=zz", "after_lease"),
        ("/api/clients?after=ed25519:12", "after"),
    ] {
        let resp = web
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(why), "{path}: {body}");
    }
    // The listener still serves.
    assert!(scrape(&h).await.contains("courier_leases_active"));
    h.shutdown().await;
}

/// A `tracing` writer that keeps what is written.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines written that contain `what`.
    fn lines_with(&self, what: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_string)
            .collect()
    }
}

// One thread (the default test runtime): the listener's tasks log through this thread's
// subscriber.
#[tokio::test]
async fn refusals_are_logged_once_per_peer_address_and_all_counted() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let h = start_with_operator(dir.path()).await;
    let addr = http_addr(&h);
    // Two peers on loopback: 127.0.0.1, and 127.0.0.2 by binding the client to it.
    let second_peer = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    for web in [http(), second_peer] {
        for path in ["/", "/api/overview", "/?token=wrong", "/api/leases"] {
            let resp = web
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401, "{path}");
        }
    }

    let refused = logs.lines_with("dashboard request refused");
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused[0].contains("peer=127.0.0.1"), "{}", refused[0]);
    assert!(refused[1].contains("peer=127.0.0.2"), "{}", refused[1]);
    assert_eq!(
        value(&scrape(&h).await, "courier_http_unauthorized_total"),
        8.0
    );
    // The listener still serves the token's holder.
    let ok = http()
        .get(format!("http://{addr}/api/overview"))
        .bearer_auth(h.dashboard_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    h.shutdown().await;
}
