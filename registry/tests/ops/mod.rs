//! Helpers for the tests of the operators' side: a registry with its HTTP listener, plain
//! HTTP requests, `/metrics` samples, and external tools that may be missing.
#![allow(clippy::unwrap_used, dead_code)]

use courier_registry::{HttpConfig, RegistryHandle};
use std::net::SocketAddr;
use std::path::PathBuf;

/// An HTTP listener on a free loopback port.
pub fn http_config() -> HttpConfig {
    HttpConfig::new("127.0.0.1:0".parse().unwrap())
}

/// The HTTP listener's address.
pub fn http_addr(h: &RegistryHandle) -> SocketAddr {
    h.http_addr().expect("the registry has an HTTP listener")
}

/// A client that follows no redirects (the tests look at them).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// `/metrics` as text.
pub async fn scrape(h: &RegistryHandle) -> String {
    let resp = http()
        .get(format!("http://{}/metrics", http_addr(h)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of the sample written exactly `series` (name and labels) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// [`sample`], which must be there.
pub fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// The path of `program` on `PATH`, or `None` (and a line saying the check is skipped).
pub fn tool(program: &str, package: &str, what: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        println!(
            "SKIPPED {what}: `{program}` not found (Debian package `{package}`; .ci/run installs it)"
        );
    }
    found
}
