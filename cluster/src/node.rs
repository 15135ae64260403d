//! A registry node's membership of a cluster: its etcd session (an etcd lease kept alive),
//! its name (claimed under the session: two live nodes never share one), its address for
//! the others (`nodes/<name>`), and etcd's election of the one node that writes.
//!
//! Nodes that did not win wait as standbys, copying the component files of every
//! registration from the writer as they appear, so that when the writer's session ends
//! (a crash: its etcd lease runs out) a standby wins, loads the cluster's state from etcd
//! through the restart rule and serves it with the components on its own disk.

use crate::ClusterError;
use crate::etcd::{DEFAULT_DEADLINE, Etcd};
use crate::layout::Layout;
use crate::store::{ComponentSource, EtcdStore};
use crate::write::Fence;
use courier_protocol::{ContentHash, SpkiPin};
use courier_registry::StoreError;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a node's session outlives its last keep-alive, unless told otherwise.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(5);

/// The file in a node's data directory naming the cluster whose data it holds.
const CLUSTER_FILE: &str = "cluster-id";

/// How a node joins.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// etcd's client URLs (`http://host:port`).
    pub endpoints: Vec<String>,
    /// The cluster's name: its keys live under `/courier/<cluster>/`.
    pub cluster: String,
    /// This node's name, unique among the live nodes.
    pub name: String,
    /// How long the session outlives the node's last keep-alive.
    pub session_ttl: Duration,
    /// How long one etcd request may take.
    pub deadline: Duration,
}

impl NodeConfig {
    /// Defaults for node `name` of cluster `cluster` at `endpoints`.
    pub fn new(endpoints: Vec<String>, cluster: &str, name: &str) -> Self {
        Self {
            endpoints,
            cluster: cluster.to_string(),
            name: name.to_string(),
            session_ttl: DEFAULT_SESSION_TTL,
            deadline: DEFAULT_DEADLINE,
        }
    }
}

/// The state of a node's etcd session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Kept alive.
    Live,
    /// etcd did not answer the last keep-alive: the session is alive if etcd answers again
    /// within its TTL, but nothing can be written meanwhile.
    Unreachable,
    /// etcd says the session ended: another node may lead. This node must step down.
    Lost,
}

/// A node's advertisement to the others: where its registry listens (a standby: will
/// listen once elected), and its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The registry's address.
    pub addr: SocketAddr,
    /// The pin of its TLS key.
    pub pin: SpkiPin,
}

impl Advert {
    fn encode(&self) -> String {
        format!("{} {}", self.addr, self.pin)
    }

    /// Reads what [`Advert::encode`] wrote (`None`: a node that has not advertised yet).
    pub fn decode(v: &[u8]) -> Option<Advert> {
        let s = std::str::from_utf8(v).ok()?;
        let (addr, pin) = s.split_once(' ')?;
        Some(Advert {
            addr: addr.parse().ok()?,
            pin: pin.parse().ok()?,
        })
    }
}

/// A node of a cluster: connected to etcd, its name claimed under its session.
pub struct Node {
    etcd: Arc<Etcd>,
    layout: Layout,
    config: NodeConfig,
    session_id: i64,
    /// The create revision of the node's `nodes/<name>` key.
    claimed_at: i64,
    session: watch::Receiver<Session>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.config.name)
            .field("cluster", &self.config.cluster)
            .finish_non_exhaustive()
    }
}

/// Whether `s` can name a cluster or a node.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Node {
    /// Connects to etcd, opens a session and claims the node's name. Blocking (call it
    /// outside an async worker). Errors: etcd unreachable (naming the URLs), a bad name,
    /// or a name a live node holds.
    pub fn join(config: NodeConfig) -> Result<Node, ClusterError> {
        for (what, s) in [("cluster", &config.cluster), ("node", &config.name)] {
            if !is_name(s) {
                return Err(ClusterError::BadName {
                    what,
                    name: s.clone(),
                });
            }
        }
        let etcd = Arc::new(Etcd::connect(&config.endpoints, config.deadline)?);
        let layout = Layout::new(&config.cluster);
        let key = layout.key(&format!("nodes/{}", config.name));
        wait_for_name(&etcd, &key, &config.name)?;
        let ttl = i64::try_from(config.session_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let session_id = etcd
            .run("grant the session", move |mut c| async move {
                c.lease_grant(ttl, None).await
            })?
            .id();
        let claim = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                Vec::new(),
                Some(PutOptions::new().with_lease(session_id)),
            )]);
        let claim = etcd.run("claim the node's name", move |mut c| async move {
            c.txn(claim).await
        })?;
        // The key is created by this transaction: its create revision is the answer's.
        let claimed_at = claim.header().map(|h| h.revision());
        if !claim.succeeded() {
            let _ = etcd.run("revoke the session", move |mut c| async move {
                c.lease_revoke(session_id).await
            });
            return Err(ClusterError::NameTaken(config.name.clone()));
        }
        let Some(claimed_at) = claimed_at.filter(|r| *r > 0) else {
            return Err(ClusterError::Etcd(StoreError::Corrupt(
                "etcd answered the claim of the node's name without its revision".into(),
            )));
        };
        let (tx, session) = watch::channel(Session::Live);
        etcd.handle()
            .spawn(keep_alive(etcd.clone(), session_id, config.session_ttl, tx));
        tracing::info!(node = %config.name, cluster = %config.cluster, "joined the cluster");
        Ok(Node {
            etcd,
            layout,
            config,
            session_id,
            claimed_at,
            session,
        })
    }

    /// The node's membership key (`nodes/<name>`, under its session) as a fence: what a
    /// standby writes (the rows of the leases it renewed) commits only while it is this
    /// node's.
    pub fn membership(&self) -> Fence {
        Fence {
            key: self.layout.key(&format!("nodes/{}", self.config.name)),
            revision: self.claimed_at,
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The etcd lease of the node's session (what it puts under its name).
    pub(crate) fn session_id(&self) -> i64 {
        self.session_id
    }

    /// How long the node's session outlives its last keep-alive.
    pub fn session_ttl(&self) -> Duration {
        self.config.session_ttl
    }

    /// The etcd connection.
    pub fn etcd(&self) -> &Arc<Etcd> {
        &self.etcd
    }

    /// The cluster's keys.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The session's state, as it changes.
    pub fn session(&self) -> watch::Receiver<Session> {
        self.session.clone()
    }

    /// Tells the other nodes where this one's registry listens. Blocking.
    pub fn advertise(&self, advert: &Advert) -> Result<(), ClusterError> {
        let key = self.layout.key(&format!("nodes/{}", self.config.name));
        let value = advert.encode();
        let lease = self.session_id;
        self.etcd
            .run("advertise the node", move |mut c| async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            })?;
        Ok(())
    }

    /// The live nodes and their adverts (`None`: not serving yet). Blocking.
    pub fn nodes(&self) -> Result<Vec<(String, Option<Advert>)>, ClusterError> {
        Ok(crate::read::all(&self.etcd, &self.layout, "nodes/")?
            .into_iter()
            .map(|(name, v)| (name, Advert::decode(&v)))
            .collect())
    }

    /// The node that leads now, if any. Blocking.
    pub fn leader(&self) -> Result<Option<String>, ClusterError> {
        let name = self.layout.election();
        let resp = self.etcd.run("read the leader", move |mut c| async move {
            match c.leader(name).await {
                Ok(r) => Ok(r.kv().map(|kv| kv.value().to_vec())),
                // etcd answers "no leader" as an error.
                Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("no leader") => {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })?;
        Ok(resp.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Waits until this node is elected the cluster's writer (etcd's election: the
    /// candidate whose key is oldest leads; a candidate's key goes with its session), and
    /// returns the fence its writes carry.
    pub async fn lead(&self) -> Result<Fence, ClusterError> {
        let lease = self.session_id;
        loop {
            let (name, value) = (self.layout.election(), self.config.name.clone());
            let mut client = self.etcd.client();
            // etcd answers a campaign when this node leads; each request has the client's
            // deadline, so a long wait is many campaigns on the same key (etcd keeps the
            // candidate's key, and its place in line, between them).
            let answer = self
                .etcd
                .handle()
                .spawn(async move { client.campaign(name, value, lease).await })
                .await
                .map_err(|e| ClusterError::Campaign(e.to_string()))?;
            match answer {
                Ok(resp) => {
                    let leader = resp.leader().ok_or_else(|| {
                        ClusterError::Campaign("etcd answered without a leader key".into())
                    })?;
                    tracing::info!(node = %self.config.name, "elected the cluster's writer");
                    return Ok(Fence {
                        key: leader.key().to_vec(),
                        revision: leader.rev(),
                    });
                }
                Err(e) if *self.session.borrow() == Session::Lost => {
                    return Err(ClusterError::Campaign(format!(
                        "the node's etcd session ended while it waited: {e}"
                    )));
                }
                Err(e) => {
                    tracing::debug!("campaign again: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The store of the cluster for this node's registry, its components in `dir`
    /// (`dir/cluster-id` remembers which cluster's data the directory holds: another
    /// cluster's is refused). Blocking.
    pub fn store(&self, dir: &Path, fence: Option<Fence>) -> Result<EtcdStore, ClusterError> {
        let source: Box<dyn ComponentSource> = Box::new(Peers {
            etcd: self.etcd.clone(),
            layout: self.layout.clone(),
            me: self.config.name.clone(),
        });
        let store = EtcdStore::open(
            self.etcd.clone(),
            self.layout.clone(),
            fence,
            dir,
            Some(source),
        )?
        .held_by(&self.config.name);
        let id = format!("{} {}", self.config.cluster, store.cluster_id()?);
        let file = dir.join(CLUSTER_FILE);
        match std::fs::read_to_string(&file) {
            Ok(held) if held.trim() != id => {
                return Err(ClusterError::OtherCluster {
                    dir: dir.to_path_buf(),
                    held: held.trim().to_string(),
                    cluster: id,
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(&file, format!("{id}\n")).map_err(ClusterError::Io)?;
            }
            Err(e) => return Err(ClusterError::Io(e)),
        }
        Ok(store)
    }

    /// Ends the session at once (its name and any election key go with it).
    pub fn leave(&self) {
        let id = self.session_id;
        let _ = self.etcd.run("end the session", move |mut c| async move {
            c.lease_revoke(id).await
        });
    }
}

/// Waits until no session holds the node name `key`: a node restarted after a crash
/// finds its old session still there until its TTL runs out. Still held after that TTL
/// (and a second), it belongs to a live node: refused.
fn wait_for_name(etcd: &Etcd, key: &[u8], name: &str) -> Result<(), ClusterError> {
    let get = |key: Vec<u8>| {
        etcd.run("read the node's name", move |mut c| async move {
            c.get(key, None).await
        })
    };
    let Some(lease) = get(key.to_vec())?.kvs().first().map(|kv| kv.lease()) else {
        return Ok(());
    };
    let granted = etcd
        .run("read the holder's session", move |mut c| async move {
            c.lease_time_to_live(lease, None).await
        })?
        .granted_ttl();
    let wait = Duration::from_secs(u64::try_from(granted).unwrap_or(0) + 1);
    tracing::info!(
        node = name,
        "a session holds this node's name: waiting up to {wait:?} for it to end"
    );
    let until = std::time::Instant::now() + wait;
    while std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        if get(key.to_vec())?.kvs().is_empty() {
            return Ok(());
        }
    }
    Err(ClusterError::NameTaken(name.to_string()))
}

/// Keeps the session alive at a third of its TTL, saying how it goes.
async fn keep_alive(etcd: Arc<Etcd>, id: i64, ttl: Duration, tx: watch::Sender<Session>) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    let answer_within = every.max(Duration::from_secs(1));
    let set = |state: Session| {
        tx.send_if_modified(|s| std::mem::replace(s, state) != state);
    };
    loop {
        let mut client = etcd.client();
        let opened = tokio::time::timeout(answer_within, client.lease_keep_alive(id)).await;
        let Ok(Ok((mut keeper, mut stream))) = opened else {
            unreachable_now(&tx);
            tokio::time::sleep(every).await;
            continue;
        };
        loop {
            let round = tokio::time::timeout(answer_within, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
            match round {
                Ok(Ok(Some(r))) if r.ttl() > 0 => set(Session::Live),
                Ok(Ok(Some(_))) => {
                    tracing::error!(
                        "the etcd session ended: this node no longer holds its name or its election"
                    );
                    set(Session::Lost);
                    return;
                }
                // The stream broke or etcd did not answer: open another.
                _ => {
                    unreachable_now(&tx);
                    break;
                }
            }
            tokio::time::sleep(every).await;
        }
        tokio::time::sleep(every).await;
    }
}

/// Notes that etcd did not answer a keep-alive (said once per outage).
fn unreachable_now(tx: &watch::Sender<Session>) {
    if *tx.borrow() == Session::Live {
        tracing::warn!(
            "etcd does not answer the session's keep-alive: writes are refused until it does"
        );
    }
    tx.send_if_modified(|s| std::mem::replace(s, Session::Unreachable) != Session::Unreachable);
}

/// The other live nodes, as a source of component bytes.
struct Peers {
    etcd: Arc<Etcd>,
    layout: Layout,
    me: String,
}

impl ComponentSource for Peers {
    fn fetch(&self, hash: &ContentHash, size: u64) -> Option<Vec<u8>> {
        let nodes = crate::read::all(&self.etcd, &self.layout, "nodes/").ok()?;
        for (name, v) in nodes {
            let Some(advert) = Advert::decode(&v).filter(|_| name != self.me) else {
                continue;
            };
            let (hash, (tx, rx)) = (*hash, std::sync::mpsc::sync_channel(1));
            self.etcd.handle().spawn(async move {
                let _ = tx.send(crate::peer::fetch(&advert, hash, size).await);
            });
            if let Ok(Some(bytes)) = rx.recv() {
                return Some(bytes);
            }
        }
        None
    }
}
