//! `courier registry serve --http` and `courier admin token`, as an operator uses them:
//! the banner names `/metrics` and the dashboard address with its token, a token the
//! operator key signs opens the dashboard's API, none is refused; a bad webhook URL is one
//! clear line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, http_get, run_ok, wait_for};
use std::net::SocketAddr;

/// The status code of an HTTP answer.
fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A GET over plain HTTP/1.0; the whole answer.

#[test]
fn serve_prints_the_http_addresses_and_admin_token_opens_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let registry = ServedRegistry::start(&data, &["--http", "127.0.0.1:0"]);
    let metrics = wait_for(&registry.lines, "metrics:");
    let addr: SocketAddr = metrics
        .trim()
        .trim_start_matches("metrics:")
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let dashboard = wait_for(&registry.lines, "dashboard:");
    let start_token = dashboard.rsplit_once("?token=").unwrap().1.trim();

    let text = http_get(addr, "/metrics", None);
    assert_eq!(status(&text), 200, "{text}");
    assert!(text.contains("courier_leases_active 0"), "{text}");
    assert_eq!(status(&http_get(addr, "/api/overview", None)), 401);
    assert_eq!(
        status(&http_get(addr, "/api/overview", Some(start_token))),
        200
    );

    let mut cmd = courier();
    registry.env(&mut cmd);
    let token = run_ok(
        cmd.args(["admin", "token", "--valid", "10m", "--operator-key"])
            .arg(data.join("operator.key")),
    );
    let token = token.trim();
    assert!(token.starts_with("courier-op."), "{token}");
    let overview = http_get(addr, "/api/overview", Some(token));
    assert_eq!(status(&overview), 200, "{overview}");
    assert!(overview.contains("\"leases\":0"), "{overview}");
}

#[test]
fn a_bad_webhook_url_is_one_clear_line() {
    let out = courier()
        .args(["registry", "serve", "--webhook", "ftp://hooks.example/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webhook URLs are http or https, not ftp"),
        "{err}"
    );
}
