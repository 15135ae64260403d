//! Cluster-mode helpers: `courier registry serve --etcd` node processes on loopback,
//! lookups at one node, and lease keepers that know every node.

use super::{courier, lines_of, wait_for};
use courier_protocol::{Candidate, ServiceQuery, SigningKey, SpkiPin};
use courier_provider::{Bundle, KeeperConfig, LeaseKeeper};
use courier_test_support::etcd::{SKIP_LINE, etcd_binary};
use courier_transport::{ClientError, RegistryClient};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The variable whose value the node processes get as `RUST_LOG` (unset: they log
/// warnings and errors only).
pub const NODE_LOG: &str = "COURIER_TEST_NODE_LOG";

/// A node process and where it serves. Dropping it kills it (SIGKILL).
pub struct NodeProc {
    /// The `courier registry serve --etcd` process.
    pub child: Child,
    /// Where it serves.
    pub addr: SocketAddr,
    /// Its TLS pin.
    pub pin: SpkiPin,
    /// Its stdout after the banner.
    pub lines: mpsc::Receiver<String>,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts node `name` of cluster `t` whose etcd session outlives its last keep-alive by
/// `session_ttl`, with `extra` arguments to `courier registry serve`; returns once it
/// serves (as a standby or as the writer).
pub fn start_node(
    name: &str,
    dir: &Path,
    urls: &[String],
    session_ttl: &str,
    extra: &[&str],
) -> NodeProc {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut command = courier();
    if let Ok(filter) = std::env::var(NODE_LOG) {
        command.env("RUST_LOG", filter);
    }
    let mut child = command
        .args(["registry", "serve", "--data-dir"])
        .arg(dir)
        .args(["--listen", &addr.to_string()])
        .args(["--min-ttl", "100ms", "--etcd", &urls.join(",")])
        .args(["--cluster", "t", "--node", name])
        .args(["--session-ttl", session_ttl])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn courier registry serve --etcd");
    let lines = lines_of(&mut child);
    let line = wait_for(&lines, "serves at");
    let pin = line
        .split_whitespace()
        .skip_while(|w| *w != "pin")
        .nth(1)
        .expect("the pin printed")
        .parse()
        .unwrap();
    NodeProc {
        child,
        addr,
        pin,
        lines,
    }
}

/// Every candidate for `courier:echo/echo` that the node at `addr` finds.
pub async fn find_echo(addr: SocketAddr, pin: SpkiPin) -> Result<Vec<Candidate>, ClientError> {
    let c = RegistryClient::connect(addr, pin, "test").await?;
    let found = c
        .find(ServiceQuery {
            interface: "courier:echo/echo".into(),
            limit: 1_000,
            ..Default::default()
        })
        .await;
    c.close();
    found
}

/// Whether etcd is installed (else the skip line is printed); logs what
/// [`NODE_LOG`] asks for from the test's own keepers and clients.
pub fn etcd_here() -> bool {
    if etcd_binary().is_none() {
        eprintln!("{SKIP_LINE}");
        return false;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var(NODE_LOG).unwrap_or_default())
        .try_init();
    true
}

/// A lease keeper for `bundle` that renews at `home` first and knows `others`, trying a
/// node for at most 800 ms and backing off 50-300 ms, so that a node's loss shows within
/// a renewal interval or two.
pub fn keeper(
    home: (SocketAddr, SpkiPin),
    others: Vec<(SocketAddr, SpkiPin)>,
    key: SigningKey,
    bundle: Bundle,
    ttl: Duration,
) -> LeaseKeeper {
    LeaseKeeper::start_with(
        home.0,
        home.1,
        key,
        bundle,
        KeeperConfig {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            request_timeout: Duration::from_millis(800),
            other_nodes: others,
            ..KeeperConfig::new(ttl)
        },
    )
}
