//! What the cluster tests share: a real etcd member (or the skip line without one),
//! joining nodes with a short session, and opening a node's standby.
#![allow(clippy::unwrap_used, dead_code)]

use courier_cluster::{ClusterError, Node, NodeConfig, Standby};
use courier_test_support::etcd::{EtcdMember, SKIP_LINE, etcd_binary};
use courier_test_support::{init_logs, short_leases};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A real etcd member in `dir/etcd`, or `None` (after the skip line) without etcd.
pub fn etcd(dir: &Path) -> Option<EtcdMember> {
    if etcd_binary().is_none() {
        eprintln!("{SKIP_LINE}");
        return None;
    }
    init_logs();
    Some(EtcdMember::start(&dir.join("etcd")).unwrap())
}

/// Node `name` of cluster `cluster` at `urls`, with a 2 s session.
pub fn node_config(urls: &[String], cluster: &str, name: &str) -> NodeConfig {
    NodeConfig {
        session_ttl: Duration::from_secs(2),
        ..NodeConfig::new(urls.to_vec(), cluster, name)
    }
}

/// Joins node `name` of cluster `cluster`.
pub async fn join(urls: &[String], cluster: &str, name: &str) -> Result<Arc<Node>, ClusterError> {
    let config = node_config(urls, cluster, name);
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || Node::join(config))
            .await
            .unwrap()?,
    ))
}

/// `node`'s standby registry in `dir`, with short leases.
pub async fn open_standby(node: &Arc<Node>, dir: &Path) -> Standby {
    let (node, dir): (Arc<Node>, PathBuf) = (node.clone(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || Standby::open(&node, &dir, short_leases(&dir)))
        .await
        .unwrap()
        .unwrap()
}
