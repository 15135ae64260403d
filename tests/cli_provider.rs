//! `courier provider run`, as the README's tour uses it: the example provider starts, keeps
//! its TLS identity (so its pin) and its proxy in the data directory, prints a publish line
//! that works as printed, serves calls, and stops on Ctrl-C or a kill.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ServedRegistry, courier, generate_key, interrupt, lines_of, run_ok, wait_for};
use courier_example_services::kv;
use courier_patch_api::messages::decode;
use courier_patch_api::{GatherList, methods};
use courier_protocol::SpkiPin;
use courier_provider::ProviderClient;
use std::ffi::OsStr;
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
    /// What it printed before it listened.
    before: Vec<String>,
}

impl Provider {
    fn start(service: &str, data_dir: &Path) -> Self {
        Self::start_with(service, data_dir, &[])
    }

    fn start_with(service: &str, data_dir: &Path, extra: &[&OsStr]) -> Self {
        let mut child = courier()
            .args(["provider", "run", service, "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn courier provider run");
        let lines = lines_of(&mut child);
        let mut before = Vec::new();
        let listening = loop {
            let line = wait_for(&lines, "");
            if line.contains("provider listening on ") {
                break line;
            }
            before.push(line);
        };
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
            before,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patch_provider_serves_the_catalog_and_indexes_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let indexes = dir.path().join("indexes");
    std::fs::create_dir(&indexes).unwrap();
    let fixtures = root.join("debian/tests/fixtures");
    std::fs::copy(
        fixtures.join("Packages.gz"),
        indexes.join("good_Packages.gz"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("corrupt.gz"),
        indexes.join("broken_Packages.gz"),
    )
    .unwrap();
    let catalog = root.join("examples/patch-catalog");
    let data_dir = dir.path().join("patch-provider");
    let args = [
        OsStr::new("--catalog"),
        catalog.as_os_str(),
        OsStr::new("--indexes"),
        indexes.as_os_str(),
    ];
    let provider = Provider::start_with("patch", &data_dir, &args);
    let summary = "patch catalog: 2 patches, 1 package indexes";
    assert!(
        provider.before.iter().any(|l| l.starts_with(summary)),
        "{:?}",
        provider.before
    );
    let warned = |l: &String| l.contains("warning") && l.contains("broken_Packages.gz");
    assert!(provider.before.iter().any(warned), "{:?}", provider.before);
    assert_eq!(
        std::fs::read(&provider.proxy).unwrap(),
        courier_proxy_artifacts::PATCH
    );
    assert!(provider.addr.port() > 0);

    let client = ProviderClient::connect(provider.addr, provider.pin)
        .await
        .unwrap();
    let reply = client.call(methods::FINGERPRINTS, vec![]).await.unwrap();
    let list: GatherList = decode("gather list", &reply).unwrap();
    assert!(
        list.paths.contains(&"app/bin/hello.sh".to_owned()),
        "{list:?}"
    );
    assert!(data_dir.join("patch.redb").is_file());
    client.close();

    let refused = courier()
        .args(["provider", "run", "echo", "--catalog"])
        .arg(&catalog)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--catalog and --indexes are for the patch provider"),
        "{stderr}"
    );
}
