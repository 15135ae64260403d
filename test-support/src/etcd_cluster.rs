//! A real etcd cluster of several members on loopback, for tests of several registry
//! nodes sharing one etcd that must survive the loss of a member or of a majority: each
//! member a Debian `etcd-server` process with its own directory and free ports, stopped
//! (SIGKILL) and started again one by one, all killed when the cluster is dropped.
//! Callers skip with [`SKIP_LINE`](crate::etcd::SKIP_LINE) when
//! [`etcd_binary`](crate::etcd::etcd_binary) is `None`.
//!
//! Raft runs with a 50 ms heartbeat and a 500 ms election timeout instead of etcd's 100 ms
//! and 1 s: on loopback a heartbeat takes well under a millisecond, and a test that stops
//! the leader waits one election timeout (and a little more) before the survivors elect
//! another, so halving it halves that wait. Ten heartbeats per election timeout still
//! leave room for a loaded machine (etcd wants at least five).

use crate::etcd::process::{
    ClusterState, Member, MemberSpec, READY_WITHIN, free_addrs, http, wait_healthy,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Raft timing for loopback (see the module's documentation).
const TIMING: &[&str] = &["--heartbeat-interval", "50", "--election-timeout", "500"];

/// Makes cluster tokens unique within the process (with its id and the time, across
/// processes).
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// An etcd cluster of several members on 127.0.0.1, running until dropped. Members are
/// numbered from 0 and named `etcd0`, `etcd1`, ...; methods taking a member's index panic
/// if it is out of range, as slice indexing does.
pub struct EtcdCluster {
    dir: PathBuf,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts a new cluster of `members` members, member `i` in `dir/etcd<i>` (data in
    /// `data`, log in `etcd.log`) with its own free client and peer ports and a unique
    /// cluster token, and waits (at most 30 s for all together) until every member is
    /// healthy and they agree on a leader.
    pub fn start(dir: &Path, members: usize) -> io::Result<EtcdCluster> {
        if members == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an etcd cluster needs at least one member",
            ));
        }
        match EtcdCluster::try_start(dir, members) {
            // One of the free ports was taken before etcd bound it: once more, on other
            // ports and under another token, without what the failed start wrote.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                for i in 0..members {
                    let data = dir.join(format!("etcd{i}")).join("data");
                    if data.exists() {
                        std::fs::remove_dir_all(data)?;
                    }
                }
                EtcdCluster::try_start(dir, members)
            }
            started => started,
        }
    }

    fn try_start(dir: &Path, n: usize) -> io::Result<EtcdCluster> {
        let addrs = free_addrs(2 * n)?;
        let (clients, peers) = addrs.split_at(n);
        let initial_cluster = peers
            .iter()
            .enumerate()
            .map(|(i, peer)| format!("etcd{i}=http://{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = format!(
            "courier-test-{}-{nanos}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let members = (0..n)
            .map(|i| {
                Member::new(MemberSpec {
                    name: format!("etcd{i}"),
                    dir: dir.join(format!("etcd{i}")),
                    client: clients[i],
                    peer: peers[i],
                    initial_cluster: initial_cluster.clone(),
                    token: token.clone(),
                    extra: TIMING,
                })
            })
            .collect();
        let mut cluster = EtcdCluster {
            dir: dir.to_path_buf(),
            members,
        };
        // All are spawned before any is waited for: a member of a new cluster serves
        // nothing until a majority of its peers are up.
        for member in &mut cluster.members {
            member.spawn(ClusterState::New)?;
        }
        let start = Instant::now();
        wait_healthy(&mut cluster.members, READY_WITHIN)?;
        while cluster.leader().is_none() {
            if start.elapsed() >= READY_WITHIN {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the etcd members in {} agreed on no leader within {READY_WITHIN:?}",
                        cluster.dir.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    /// How many members the cluster has (running or not).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Every member's client URL (`http://127.0.0.1:PORT`), in member order: what a
    /// client is given as its endpoints.
    pub fn client_urls(&self) -> Vec<String> {
        (0..self.size()).map(|i| self.member_url(i)).collect()
    }

    /// Member `i`'s client URL (`http://127.0.0.1:PORT`).
    pub fn member_url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].spec.client)
    }

    /// Member `i`'s log file (`dir/etcd<i>/etcd.log`).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.members[i].log_path()
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit: a crash. Nothing if it is
    /// stopped already.
    pub fn stop(&mut self, i: usize) -> io::Result<()> {
        self.members[i].kill()
    }

    /// Starts member `i` again (nothing if it runs) on its data and ports, with
    /// `--initial-cluster-state existing`, without waiting: in etcd 3.4 a member serves
    /// clients only once it has published itself through raft, so it cannot become
    /// healthy before a majority of members runs. See [`EtcdCluster::wait_healthy`].
    pub fn start_member(&mut self, i: usize) -> io::Result<()> {
        self.members[i].spawn(ClusterState::Existing)
    }

    /// Kills member `i` (if it runs) and starts it again, then waits (at most 30 s) until
    /// it is healthy, which needs a majority of members running.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.stop(i)?;
        self.start_member(i)?;
        self.wait_healthy(i, READY_WITHIN)
    }

    /// Waits at most `within` until member `i` is healthy; errors at once if it is stopped
    /// or exits (naming its log).
    pub fn wait_healthy(&mut self, i: usize, within: Duration) -> io::Result<()> {
        wait_healthy(std::slice::from_mut(&mut self.members[i]), within)
    }

    /// Whether member `i` runs (started, not stopped, and has not exited by itself).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].is_running()
    }

    /// Whether member `i` answers `GET /health` with `"health":"true"`: in etcd 3.4, it
    /// knows a leader and a quorum read through raft succeeded within a second.
    pub fn healthy(&self, i: usize) -> bool {
        self.members[i].healthy()
    }

    /// Stops the last `size / 2 + 1` members, leaving the others (member 0 at least)
    /// running without a quorum, and returns the stopped members' indices.
    pub fn stop_majority(&mut self) -> io::Result<Vec<usize>> {
        let n = self.size();
        let stopped: Vec<usize> = (n - (n / 2 + 1)..n).collect();
        for &i in &stopped {
            self.stop(i)?;
        }
        Ok(stopped)
    }

    /// The index of the leader, if every running member that answers
    /// `/v3/maintenance/status` names the same one and it is among them.
    pub fn leader(&mut self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for (i, member) in self.members.iter_mut().enumerate() {
            if !member.is_running() {
                continue;
            }
            let Ok((200, body)) = http(
                member.spec.client,
                "POST",
                "/v3/maintenance/status",
                Some("{}"),
                Duration::from_secs(1),
            ) else {
                continue;
            };
            if let (Some(id), Some(leader)) =
                (json_u64(&body, "member_id"), json_u64(&body, "leader"))
            {
                ids.push((i, id));
                leaders.push(leader);
            }
        }
        let first = *leaders.first()?;
        if first == 0 || leaders.iter().any(|l| *l != first) {
            return None;
        }
        ids.iter().find(|(_, id)| *id == first).map(|(i, _)| *i)
    }
}

/// The first `"field":"123"` (or `"field":123`) in the gateway's JSON, as a number: etcd's
/// ids are 64-bit and the gateway writes them as strings.
fn json_u64(json: &str, field: &str) -> Option<u64> {
    let (_, rest) = json.split_once(&format!("\"{field}\":"))?;
    let rest = rest.trim_start().trim_start_matches('"');
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::json_u64;

    #[test]
    fn reads_ids_written_as_strings_or_numbers() {
        let status = r#"{"header":{"cluster_id":"1","member_id":"13668033151171901709"},"leader":"42","raftIndex":5}"#;
        assert_eq!(json_u64(status, "member_id"), Some(13668033151171901709));
        assert_eq!(json_u64(status, "leader"), Some(42));
        assert_eq!(json_u64(status, "raftIndex"), Some(5));
        assert_eq!(json_u64(status, "absent"), None);
        assert_eq!(json_u64(r#"{"leader":""}"#, "leader"), None);
    }
}
