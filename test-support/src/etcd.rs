//! A real etcd member on loopback, for benchmarks and tests that compare with or run on
//! etcd: Debian's `etcd-server` binary started in a directory of the caller's, on free
//! ports, killed when dropped. Callers skip with one line when [`etcd_binary`] is `None`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member may take to answer `/health` after it starts.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The `etcd` binary on `PATH` (or Debian's `/usr/bin/etcd`), if installed.
pub fn etcd_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("etcd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
}

/// The line a caller prints when it skips for want of etcd.
pub const SKIP_LINE: &str =
    "etcd is not installed: skipped (install it with `apt-get install etcd-server`)";

/// A free TCP port on 127.0.0.1 (bound, read and released; etcd binds it right after).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts etcd with its data in `dir/data`, appending its log to `dir/etcd.log`.
fn spawn(dir: &Path, client: SocketAddr, peer: &str) -> std::io::Result<Child> {
    let binary = etcd_binary().ok_or_else(|| std::io::Error::other(SKIP_LINE))?;
    let client_url = format!("http://{client}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))?;
    Command::new(binary)
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", peer])
        .args(["--initial-advertise-peer-urls", peer])
        .args(["--initial-cluster", &format!("bench={peer}")])
        .args(["--logger", "zap", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
}

/// One single-member etcd cluster, running until dropped.
pub struct EtcdMember {
    child: Child,
    client: SocketAddr,
    peer: String,
    dir: PathBuf,
}

impl EtcdMember {
    /// Starts a single-member cluster with its data in `dir/data` and its log in
    /// `dir/etcd.log`, and waits until it reports itself healthy.
    pub fn start(dir: &Path) -> std::io::Result<EtcdMember> {
        let client: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        std::fs::create_dir_all(dir)?;
        let child = spawn(dir, client, &peer)?;
        let mut member = EtcdMember {
            child,
            client,
            peer,
            dir: dir.to_path_buf(),
        };
        member.wait_healthy()?;
        Ok(member)
    }

    /// Kills the member (SIGKILL) and starts it again on the same data and ports, then
    /// waits until it is healthy: what a crash and a restart do.
    pub fn restart(&mut self) -> std::io::Result<()> {
        let _ = self.child.kill();
        self.child.wait()?;
        self.child = spawn(&self.dir, self.client, &self.peer)?;
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> std::io::Result<()> {
        let start = Instant::now();
        while start.elapsed() < READY_WITHIN {
            if let Some(status) = self.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "etcd exited at start ({status}); its log: {}",
                    self.dir.join("etcd.log").display()
                )));
            }
            if self.healthy() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!(
            "etcd did not become healthy within {READY_WITHIN:?}; its log: {}",
            self.dir.join("etcd.log").display()
        )))
    }

    /// Whether the member answers `GET /health` with `"health":"true"`.
    pub fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.client, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let request = format!(
            "GET /health HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.client
        );
        let mut body = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut body).is_ok()
            && body.contains("\"health\":\"true\"")
    }

    /// The URL clients connect to (`http://127.0.0.1:PORT`).
    pub fn client_url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// The etcd process's resident memory in bytes, from `/proc/PID/statm`.
    pub fn rss_bytes(&self) -> u64 {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", self.child.id())).unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
