//! Helpers shared by the end-to-end tests: run the `courier` binary as a user would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;

use courier_protocol::SpkiPin;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The courier binary built for these tests.
pub fn courier() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_courier"));
    c.env_remove("COURIER_REGISTRY")
        .env_remove("COURIER_REGISTRY_PIN")
        .env_remove("COURIER_KEY")
        .env_remove("COURIER_TRUST")
        .env_remove("COURIER_TRUST_OPERATOR")
        .env_remove("COURIER_TRUST_ROOT")
        .env_remove("COURIER_POLICY")
        .env_remove("RUST_LOG")
        // The client's state (accepted versions, learned keys) goes to a scratch directory
        // of this test process under the target directory, not into the source tree.
        .env(
            "COURIER_STATE_DIR",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("courier-client-state-{}", std::process::id())),
        )
        // Likewise the registry pins it moved (`--registry-pins`).
        .env(
            "COURIER_REGISTRY_PINS",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("courier-registry-pins-{}", std::process::id())),
        );
    c
}

/// The example echo provider on a loopback port, under an identity of its own (a vendor's
/// service, served in the test's process).
pub async fn echo_provider() -> courier_provider::ServiceHandle {
    courier_example_services::echo_service()
        .serve(
            "127.0.0.1:0".parse().unwrap(),
            &courier_transport::Identity::generate().unwrap(),
        )
        .await
        .unwrap()
}

/// Runs a command to completion; panics with its output unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run courier");
    assert!(
        out.status.success(),
        "command failed: {:?}\nstdout: {}\nstderr: {}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `courier keys generate --out <path>`; returns the public key it printed.
pub fn generate_key(path: &Path) -> String {
    let out = run_ok(courier().args(["keys", "generate", "--out"]).arg(path));
    out.lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("public key printed")
        .to_string()
}

/// The lines a child prints on its stdout (taken from it), as they come.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line containing `needle`; panics after 30 s without one.
pub fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line containing {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// Sends SIGINT (what Ctrl-C sends) to a child.
pub fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `GET path` over HTTP/1.0 at `addr` (with a bearer token if given): the whole answer,
/// status line and headers included.
pub fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: courier\r\n{auth}\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// A `courier registry serve` child process, with the address and pin it printed.
pub struct ServedRegistry {
    /// The registry process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its TLS pin.
    pub pin: SpkiPin,
    /// Its stdout after the banner.
    pub lines: mpsc::Receiver<String>,
}

impl ServedRegistry {
    /// Starts `courier registry serve` on an ephemeral loopback port.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = courier()
            .args(["registry", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn courier registry serve");
        let lines = lines_of(&mut child);
        let mut addr = None;
        let mut pin = None;
        while addr.is_none() || pin.is_none() {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("registry printed its address and pin");
            if let Some(a) = line.strip_prefix("courier registry listening on ") {
                addr = Some(a.trim().parse().unwrap());
            }
            if let Some(p) = line.trim().strip_prefix("pin:") {
                pin = Some(p.trim().parse().unwrap());
            }
        }
        Self {
            child,
            addr: addr.unwrap(),
            pin: pin.unwrap(),
            lines,
        }
    }

    /// Environment a CLI command needs to reach this registry.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("COURIER_REGISTRY", self.addr.to_string())
            .env("COURIER_REGISTRY_PIN", self.pin.to_string());
    }

    /// SIGKILL: no shutdown, no final flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServedRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process killed when the test ends, however it ends.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
