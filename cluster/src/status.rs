//! `courier cluster status`: what etcd says of a cluster: its nodes (with their sessions'
//! time left, their adverts and the standbys' lag behind etcd's revision), which one writes, how many registrations it holds, and
//! etcd's own members (which one leads etcd, which answer).

use crate::ClusterError;
use crate::etcd::Etcd;
use crate::layout::Layout;
use crate::node::Advert;
use crate::read;
use std::time::Duration;

/// One registry node.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// Where it serves, or will once elected (`None`: not said yet).
    pub advert: Option<Advert>,
    /// Seconds its session has left before it ends without a keep-alive.
    pub session_ttl_s: i64,
    /// Whether it is the cluster's writer.
    pub writer: bool,
    /// A standby's lag behind etcd when it last said (every 5 s): revisions it had not yet
    /// applied, and how many seconds ago that was (`None`: it has not said yet).
    pub lag: Option<(i64, u64)>,
}

/// One etcd member.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: u64,
    /// Its client URLs.
    pub client_urls: Vec<String>,
    /// Whether it is etcd's leader.
    pub leader: bool,
    /// Whether it answered now.
    pub healthy: bool,
}

/// A cluster as etcd sees it.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The cluster's name.
    pub cluster: String,
    /// etcd's revision now.
    pub revision: i64,
    /// The writer, if one is elected.
    pub writer: Option<String>,
    /// The live nodes.
    pub nodes: Vec<NodeStatus>,
    /// Registrations held.
    pub registrations: u64,
    /// etcd's members.
    pub members: Vec<MemberStatus>,
}

/// Reads the status of cluster `cluster` from etcd at `endpoints`. Blocking.
pub fn status(endpoints: &[String], cluster: &str) -> Result<ClusterStatus, ClusterError> {
    let etcd = Etcd::connect(endpoints, Duration::from_secs(5))?;
    let layout = Layout::new(cluster);
    let election = layout.election();
    let writer = etcd.run("read the writer", move |mut c| async move {
        match c.leader(election).await {
            Ok(r) => Ok(r
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    let prefix = layout.key("nodes/");
    let kvs = etcd.run("read the nodes", move |mut c| async move {
        c.get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
            .await
    })?;
    let revision = kvs.header().map_or(0, |h| h.revision());
    let progress = layout.key("progress/");
    let progress = etcd.run("read the standbys' progress", move |mut c| async move {
        c.get(progress, Some(etcd_client::GetOptions::new().with_prefix()))
            .await
    })?;
    let now_ms = crate::clock::wall_ms();
    // The put that said it is itself a revision: everything before it had to be applied.
    let lags: std::collections::HashMap<String, (i64, u64)> = progress
        .kvs()
        .iter()
        .filter_map(|kv| {
            let name = layout.strip(kv.key(), "progress/")?.to_string();
            let [applied, at_ms] = crate::layout::be_n::<2>(kv.value())?;
            let behind = (kv.mod_revision() - 1 - i64::try_from(applied).ok()?).max(0);
            Some((name, (behind, now_ms.saturating_sub(at_ms) / 1000)))
        })
        .collect();
    let mut nodes = Vec::new();
    for kv in kvs.kvs() {
        let Some(name) = layout.strip(kv.key(), "nodes/") else {
            continue;
        };
        let lease = kv.lease();
        let ttl = etcd
            .run("read a session", move |mut c| async move {
                c.lease_time_to_live(lease, None).await
            })
            .map_or(-1, |r| r.ttl());
        nodes.push(NodeStatus {
            name: name.to_string(),
            advert: Advert::decode(kv.value()),
            session_ttl_s: ttl,
            writer: writer.as_deref() == Some(name),
            lag: lags.get(name).copied(),
        });
    }
    let registrations = read::count(&etcd, &layout, "reg/")?;
    let list = etcd.run("list etcd's members", |mut c| async move {
        c.member_list().await
    })?;
    let leader_id = etcd
        .run(
            "read etcd's status",
            |mut c| async move { c.status().await },
        )
        .map_or(0, |s| s.leader());
    let members = list
        .members()
        .iter()
        .map(|m| MemberStatus {
            name: m.name().to_string(),
            id: m.id(),
            client_urls: m.client_urls().to_vec(),
            leader: m.id() == leader_id,
            healthy: !m.client_urls().is_empty()
                && Etcd::connect(m.client_urls(), Duration::from_secs(1)).is_ok(),
        })
        .collect();
    Ok(ClusterStatus {
        cluster: cluster.to_string(),
        revision,
        writer,
        nodes,
        registrations,
        members,
    })
}
