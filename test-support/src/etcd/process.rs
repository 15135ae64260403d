//! The etcd processes behind [`EtcdMember`](super::EtcdMember) and
//! [`EtcdCluster`](crate::etcd_cluster::EtcdCluster), started one way: a [`MemberSpec`]
//! (name, directory, ports, initial cluster and its state, cluster token) spawned as a
//! [`Member`], waited for until healthy, and asked over plain HTTP on loopback.

use super::{SKIP_LINE, etcd_binary};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a member may take to answer `/health` after it starts.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(30);

/// `n` distinct free TCP addresses on 127.0.0.1: all bound at once (so no two are the
/// same), then released for etcd to bind right after. Another process may take one in
/// between; etcd then exits at start and [`wait_healthy`] reports
/// [`io::ErrorKind::AddrInUse`], on which the starts here retry once with new ports.
pub(crate) fn free_addrs(n: usize) -> io::Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners.iter().map(TcpListener::local_addr).collect()
}

/// Whether a member bootstraps a new cluster or joins one that already exists (ignored by
/// etcd when the member's data directory already holds its state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClusterState {
    /// `--initial-cluster-state new`.
    New,
    /// `--initial-cluster-state existing`.
    Existing,
}

/// Everything one etcd member is started with: the same on every (re)start.
#[derive(Clone, Debug)]
pub(crate) struct MemberSpec {
    /// `--name`, and its entry in `initial_cluster`.
    pub(crate) name: String,
    /// The member's directory: its data in `data`, its log in `etcd.log`.
    pub(crate) dir: PathBuf,
    /// Where it serves clients (`--listen-client-urls`, and advertises them).
    pub(crate) client: SocketAddr,
    /// Where it talks to its peers (`--listen-peer-urls`, and advertises them).
    pub(crate) peer: SocketAddr,
    /// `--initial-cluster`: `name=http://peer,...` for every member.
    pub(crate) initial_cluster: String,
    /// `--initial-cluster-token`: unique per cluster, so members of two clusters never
    /// mistake each other for peers.
    pub(crate) token: String,
    /// Further flags (raft timing).
    pub(crate) extra: &'static [&'static str],
}

/// One etcd process: its spec, the child while it runs, and where its log stood when it
/// was last started (so a failure reads only that start's lines). Killed when dropped.
pub(crate) struct Member {
    pub(crate) spec: MemberSpec,
    child: Option<Child>,
    log_from: u64,
}

impl Member {
    /// A member that is not running yet.
    pub(crate) fn new(spec: MemberSpec) -> Member {
        Member {
            spec,
            child: None,
            log_from: 0,
        }
    }

    /// The member's log file.
    pub(crate) fn log_path(&self) -> PathBuf {
        self.spec.dir.join("etcd.log")
    }

    /// Starts etcd (if it is not running) with its data in `dir/data`, appending its log
    /// to `dir/etcd.log`. Does not wait for it.
    pub(crate) fn spawn(&mut self, state: ClusterState) -> io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let binary = etcd_binary().ok_or_else(|| io::Error::other(SKIP_LINE))?;
        let spec = &self.spec;
        std::fs::create_dir_all(&spec.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        self.log_from = log.metadata()?.len();
        let client_url = format!("http://{}", spec.client);
        let peer_url = format!("http://{}", spec.peer);
        let state = match state {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        };
        let child = Command::new(binary)
            .args(["--name", &spec.name, "--data-dir"])
            .arg(spec.dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &spec.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &spec.token])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(spec.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the member (SIGKILL) and reaps it; nothing if it is not running.
    pub(crate) fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the member as an operator would (SIGTERM: etcd shuts down cleanly) and reaps
    /// it; nothing if it is not running.
    pub(crate) fn terminate(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            let signalled = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()?;
            if !signalled.success() {
                let _ = child.kill();
            }
            child.wait()?;
        }
        Ok(())
    }

    /// Whether the member was started and has not been stopped (a member that exited by
    /// itself since counts as not running).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id while the member has one.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the member answers `GET /health` with `"health":"true"` (in etcd 3.4: it
    /// has a leader and a quorum read went through).
    pub(crate) fn healthy(&self) -> bool {
        healthy_at(self.spec.client)
    }

    /// Polls until the member is healthy (`true`), or `deadline` passes or `give_up` is
    /// set (`false`); errors if it is not running.
    fn poll_healthy(&mut self, deadline: Instant, give_up: &AtomicBool) -> io::Result<bool> {
        loop {
            self.check_alive()?;
            if self.healthy() {
                return Ok(true);
            }
            if Instant::now() >= deadline || give_up.load(Ordering::Relaxed) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Errors if the member is not running: [`io::ErrorKind::AddrInUse`] if it exited
    /// because one of its ports was taken.
    fn check_alive(&mut self) -> io::Result<()> {
        let status = match self.child.as_mut() {
            None => {
                return Err(io::Error::other(format!(
                    "etcd {} is stopped",
                    self.spec.name
                )));
            }
            Some(child) => child.try_wait()?,
        };
        let Some(status) = status else {
            return Ok(());
        };
        self.child = None;
        let log = self.log_path();
        let tail = std::fs::read(&log)
            .ok()
            .and_then(|bytes| bytes.get(self.log_from as usize..).map(<[u8]>::to_vec))
            .unwrap_or_default();
        let kind = if String::from_utf8_lossy(&tail).contains("address already in use") {
            io::ErrorKind::AddrInUse
        } else {
            io::ErrorKind::Other
        };
        Err(io::Error::new(
            kind,
            format!(
                "etcd {} exited ({status}); its log: {}",
                self.spec.name,
                log.display()
            ),
        ))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Waits until every member of `members` is healthy, each polled by its own thread (a
/// member that is not serving yet holds a health check for up to a second, which must not
/// delay the others), for at most `within` in all. Errors as soon as one exits (naming
/// its log), or on the deadline (naming the logs of those not healthy).
pub(crate) fn wait_healthy(members: &mut [Member], within: Duration) -> io::Result<()> {
    let deadline = Instant::now() + within;
    let failed = AtomicBool::new(false);
    let outcomes: Vec<io::Result<bool>> = std::thread::scope(|s| {
        let polls: Vec<_> = members
            .iter_mut()
            .map(|member| {
                let failed = &failed;
                s.spawn(move || {
                    let outcome = member.poll_healthy(deadline, failed);
                    if outcome.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    outcome
                })
            })
            .collect();
        polls
            .into_iter()
            .map(|poll| {
                poll.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a health poll panicked")))
            })
            .collect()
    });
    let mut not_healthy = Vec::new();
    for (member, outcome) in members.iter().zip(outcomes) {
        if !outcome? {
            not_healthy.push(member.log_path().display().to_string());
        }
    }
    if not_healthy.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "etcd did not become healthy within {within:?}; see {}",
            not_healthy.join(", ")
        ),
    ))
}

/// Whether the member serving clients at `client` answers `GET /health` healthy.
pub(crate) fn healthy_at(client: SocketAddr) -> bool {
    http(client, "GET", "/health", None, Duration::from_secs(1))
        .is_ok_and(|(status, body)| status == 200 && body.contains("\"health\":\"true\""))
}

/// One HTTP/1.0 request (so the answer is never chunked and ends with the connection).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = json.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    s.write_all(request.as_bytes())
        .and_then(|()| s.read_to_string(&mut answer))
        .map_err(|e| match e.kind() {
            // What a read or write timeout looks like on Linux.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{method} {path}: no answer from {addr} within {timeout:?}"),
            ),
            _ => e,
        })?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer"))?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{ClusterState, Member, MemberSpec, free_addrs, wait_healthy};
    use crate::etcd::{SKIP_LINE, etcd_binary};
    use std::io;
    use std::net::TcpListener;
    use std::time::Duration;

    #[test]
    fn a_taken_port_is_reported_as_addr_in_use() {
        if etcd_binary().is_none() {
            println!("{SKIP_LINE}");
            return;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let taken = TcpListener::bind("127.0.0.1:0").expect("a port to hold");
        let peer = free_addrs(1).expect("a free port")[0];
        let mut member = Member::new(MemberSpec {
            name: "etcd0".into(),
            dir: dir.path().join("etcd0"),
            client: taken.local_addr().expect("the held port"),
            peer,
            initial_cluster: format!("etcd0=http://{peer}"),
            token: "taken-port".into(),
            extra: &[],
        });
        member.spawn(ClusterState::New).expect("etcd spawns");
        let err = wait_healthy(std::slice::from_mut(&mut member), Duration::from_secs(10))
            .expect_err("etcd cannot listen on a taken port");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("etcd0/etcd.log"), "{err}");
    }
}
