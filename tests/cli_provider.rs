//! `courier provider run`, as the README's tour uses it: the example provider starts, keeps
//! its TLS identity (so its pin) and its proxy in the data directory, prints a publish line
//! that works as printed, serves calls, and stops on Ctrl-C or a kill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, generate_key, interrupt, lines_of, run_ok, wait_for};
use courier_example_services::kv;
use courier_protocol::SpkiPin;
use courier_provider::ProviderClient;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;

/// A `courier provider run` child and what it printed before serving.
struct Provider {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
    pin: SpkiPin,
    proxy: PathBuf,
    /// The arguments of the printed `courier publish` line, `publish` first.
    publish: Vec<String>,
    /// Whether it said it made a new TLS identity.
    new_identity: bool,
}

impl Provider {
    fn start(service: &str, data_dir: &Path) -> Self {
        let mut child = courier()
            .args(["provider", "run", service, "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn courier provider run");
        let lines = lines_of(&mut child);
        let listening = wait_for(&lines, "provider listening on ");
        let addr = listening.rsplit(' ').next().unwrap().parse().unwrap();
        let identity = wait_for(&lines, "TLS identity in ");
        let pin = wait_for(&lines, "provider pin: ");
        let pin = pin.strip_prefix("provider pin: ").unwrap().parse().unwrap();
        let proxy = wait_for(&lines, "its proxy: ");
        let proxy = PathBuf::from(proxy.strip_prefix("its proxy: ").unwrap());
        wait_for(&lines, "publish its proxy with:");
        let publish = wait_for(&lines, "courier publish ");
        let publish = publish
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect();
        wait_for(&lines, "serving until Ctrl-C");
        Self {
            child,
            lines,
            addr,
            pin,
            proxy,
            publish,
            new_identity: identity.starts_with("new "),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_printed_publish_line_publishes_a_proxy_that_calls_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ServedRegistry::start(&dir.path().join("registry"), &[]);
    let key = dir.path().join("vendor.key");
    let vendor = generate_key(&key);

    let data_dir = dir.path().join("echo-provider");
    let mut provider = Provider::start("echo", &data_dir);
    assert!(provider.new_identity);
    // The proxy sits in the data directory, so the publish line needs no source checkout.
    assert_eq!(provider.proxy, data_dir.join("echo.wasm"));
    assert_eq!(
        std::fs::read(&provider.proxy).unwrap(),
        courier_proxy_artifacts::ECHO
    );
    let pin = provider.pin.to_string();
    let addr = provider.addr.to_string();
    let expected = [
        "publish",
        provider.proxy.to_str().unwrap(),
        "--name",
        "example/echo",
        "--endpoint",
        &addr,
        "--provider-pin",
        &pin,
    ];
    assert_eq!(provider.publish, expected);

    // The line as printed, with the key and the registry a user has set.
    let mut publish = courier();
    registry.env(&mut publish);
    let mut publish = publish
        .args(&provider.publish)
        .arg("--key")
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let publish_lines = lines_of(&mut publish);
    wait_for(&publish_lines, "registered: lease ");

    // A client finds the proxy, which calls this provider.
    let mut call = courier();
    registry.env(&mut call);
    let out = run_ok(call.args(["call", "--trust", &vendor, r#"courier:echo/echo.say("hi")"#]));
    assert_eq!(out.trim(), r#"ok("echo: hi")"#);

    interrupt(&publish);
    wait_for(&publish_lines, "cancelled lease");
    assert!(publish.wait().unwrap().success());

    // Ctrl-C stops the provider cleanly.
    interrupt(&provider.child);
    wait_for(&provider.lines, "stopping");
    assert!(provider.child.wait().unwrap().success());

    // Started again on the same data directory: the same identity, so the same pin.
    let again = Provider::start("echo", &data_dir);
    assert!(!again.new_identity);
    assert_eq!(again.pin, provider.pin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_provider_keeps_state_across_connections_until_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = Provider::start("kv", &dir.path().join("kv-provider"));
    assert_eq!(
        std::fs::read(&provider.proxy).unwrap(),
        courier_proxy_artifacts::KV
    );
    let first = ProviderClient::connect(provider.addr, provider.pin)
        .await
        .unwrap();
    first
        .call("set", kv::encode_set("greeting", "hello"))
        .await
        .unwrap();
    first.close();
    let second = ProviderClient::connect(provider.addr, provider.pin)
        .await
        .unwrap();
    let reply = second.call("get", "greeting").await.unwrap();
    assert_eq!(
        kv::decode_get_reply(&reply).unwrap().as_deref(),
        Some("hello")
    );

    second.close();

    // A kill stops it at once and frees its port.
    provider.child.kill().unwrap();
    let status = provider.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    std::net::UdpSocket::bind(provider.addr).expect("the provider's port is free again");
}
