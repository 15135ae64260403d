//! A real etcd member on loopback, for benchmarks and tests that compare with or run on
//! etcd: Debian's `etcd-server` binary started in a directory of the caller's, on free
//! ports, killed when dropped. Callers skip with one line when [`etcd_binary`] is `None`.
//!
//! How an etcd process is started and watched lives in the private `process` module,
//! shared with [`EtcdCluster`](crate::etcd_cluster::EtcdCluster).

pub(crate) mod process;

use process::{ClusterState, Member, MemberSpec, READY_WITHIN, free_addrs, http, wait_healthy};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Sends one JSON `POST` to the v3 JSON gateway of the member at `client_url`
/// (`http://127.0.0.1:PORT`), e.g. `/v3/kv/put` with `{"key":"Zm9v","value":"YmFy"}`
/// (keys and values in base64), and returns the HTTP status and body. `timeout` bounds
/// the connection and each read and write: a member without a quorum may hold a write for
/// several seconds before failing it.
pub fn gateway_post(
    client_url: &str,
    path: &str,
    json: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let addr: SocketAddr = client_url
        .strip_prefix("http://")
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not an http://IP:PORT URL: {client_url}"),
            )
        })?;
    http(addr, "POST", path, Some(json), timeout)
}

/// Revokes the etcd lease `key` is attached to, at the member at `client_url`: what etcd
/// does to a node's session when the node has been cut off for longer than its TTL.
pub fn revoke_lease_of(client_url: &str, key: &str, timeout: Duration) -> io::Result<()> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let (status, body) = gateway_post(
        client_url,
        "/v3/kv/range",
        &format!(r#"{{"key":"{key}"}}"#),
        timeout,
    )?;
    // The gateway writes 64-bit numbers as strings: `"lease":"7587884650443215373"`.
    let lease = body
        .split_once(r#""lease":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(id, _)| id.to_string())
        .filter(|_| status == 200)
        .ok_or_else(|| io::Error::other(format!("no lease on that key ({status}): {body}")))?;
    let (status, body) = gateway_post(
        client_url,
        "/v3/lease/revoke",
        &format!(r#"{{"ID":"{lease}"}}"#),
        timeout,
    )?;
    if status != 200 {
        return Err(io::Error::other(format!(
            "revoke refused ({status}): {body}"
        )));
    }
    Ok(())
}

/// One single-member etcd cluster, running until dropped.
pub struct EtcdMember {
    member: Member,
}

impl EtcdMember {
    /// Starts a single-member cluster with its data in `dir/data` and its log in
    /// `dir/etcd.log`, and waits until it reports itself healthy.
    pub fn start(dir: &Path) -> io::Result<EtcdMember> {
        EtcdMember::start_with(dir, &[])
    }

    /// [`EtcdMember::start`], with `extra` flags for etcd (`--quota-backend-bytes=...`).
    pub fn start_with(dir: &Path, extra: &'static [&'static str]) -> io::Result<EtcdMember> {
        match EtcdMember::try_start(dir, extra) {
            // One of the free ports was taken before etcd bound it: once more, on others.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => EtcdMember::try_start(dir, extra),
            started => started,
        }
    }

    fn try_start(dir: &Path, extra: &'static [&'static str]) -> io::Result<EtcdMember> {
        let addrs = free_addrs(2)?;
        let (client, peer) = (addrs[0], addrs[1]);
        let mut member = Member::new(MemberSpec {
            name: "bench".into(),
            dir: dir.to_path_buf(),
            client,
            peer,
            initial_cluster: format!("bench=http://{peer}"),
            token: "etcd-cluster".into(),
            extra,
        });
        member.spawn(ClusterState::New)?;
        let mut member = EtcdMember { member };
        member.wait_healthy()?;
        Ok(member)
    }

    /// Kills the member (SIGKILL) and starts it again on the same data and ports, then
    /// waits until it is healthy: what a crash and a restart do.
    pub fn restart(&mut self) -> io::Result<()> {
        self.member.kill()?;
        self.member.spawn(ClusterState::Existing)?;
        self.wait_healthy()
    }

    /// Stops the member cleanly (SIGTERM), as an operator's restart does.
    pub fn stop(&mut self) -> io::Result<()> {
        self.member.terminate()
    }

    /// Starts the stopped member again on its data and ports, without waiting for it:
    /// the caller times how soon it answers.
    pub fn start_again(&mut self) -> io::Result<()> {
        self.member.spawn(ClusterState::Existing)
    }

    fn wait_healthy(&mut self) -> io::Result<()> {
        wait_healthy(std::slice::from_mut(&mut self.member), READY_WITHIN)
    }

    /// Whether the member answers `GET /health` with `"health":"true"`.
    pub fn healthy(&self) -> bool {
        self.member.healthy()
    }

    /// The URL clients connect to (`http://127.0.0.1:PORT`).
    pub fn client_url(&self) -> String {
        format!("http://{}", self.member.spec.client)
    }

    /// The etcd process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.member.pid()
    }

    /// The etcd process's whole resident set in bytes (0 if unknown).
    pub fn rss_bytes(&self) -> u64 {
        self.member
            .pid()
            .map_or(0, |pid| crate::resident::resident(Some(pid)).total())
    }
}

#[cfg(test)]
mod tests {
    use super::{EtcdMember, SKIP_LINE, etcd_binary};

    #[test]
    fn a_member_starts_restarts_and_reports_its_memory() {
        if etcd_binary().is_none() {
            println!("{SKIP_LINE}");
            return;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut member = EtcdMember::start(dir.path()).expect("etcd starts");
        let url = member.client_url();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert!(member.healthy());
        assert!(member.rss_bytes() > 0);
        member.restart().expect("etcd restarts");
        assert!(member.healthy());
        assert_eq!(member.client_url(), url, "a restart keeps the ports");
        assert!(dir.path().join("etcd.log").is_file());
    }
}
