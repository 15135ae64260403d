//! courier's cluster mode: registry nodes that keep the registry's state in a real etcd
//! cluster instead of a redb file, so that the loss of a machine loses nothing that was
//! acknowledged.
//!
//! - [`EtcdStore`] is the registry's [`courier_registry::Storage`] in etcd (every record
//!   under `/courier/<cluster>/`, see [`layout`]); component bytes stay on the nodes'
//!   disks, content-addressed, copied between nodes over courier's own protocol.
//! - [`Node`] is a node's membership: its etcd session, its unique name, its advert, and
//!   etcd's election of the one node that writes. Every write carries the writer's
//!   [`Fence`], so a node whose session ended cannot write after another took over.
//! - The other nodes are standbys ([`Standby`]): each follows the writer's commits with an
//!   etcd watch into a registry of its own that answers lookups, fetches, reads, event
//!   streams and renewals (other writes go to the writer), copies the writer's components, and waits in the
//!   election; when the writer's session ends, one of them loads the state through the
//!   registry's restart rule (time left, one grace) and writes.
//! - Renewals are taken by whichever node a vendor is connected to: a standby writes the
//!   rows of the leases it renewed behind, in batches, under its own membership key, and
//!   the writer ([`Writer`]) moves its deadlines on to them; the writer alone
//!   expires.
//! - [`Writer`] is a node elected writer: its registry and the renewals it follows.
//! - Every node numbers the cluster's events alike, from etcd's history (`feed.rs`): a
//!   subscriber moves between nodes without a gap.
//! - [`takeover_wall_ms`] is the time a new writer opens at: the last writer's clock
//!   carried on, never another machine's clock compared with it.
//! - [`status()`] is what `courier cluster status` prints.
//!
//! The state machine is the registry's own: a cluster node runs the same
//! [`courier_registry::Registry`] on another store.

mod clock;
mod etcd;
mod feed;
mod held;
pub mod layout;
mod mirror;
mod node;
mod peer;
mod read;
mod renewals;
mod standby;
mod status;
mod store;
mod write;
mod writer;

pub use clock::takeover_wall_ms;
pub use etcd::{DEFAULT_DEADLINE, Etcd};
pub use node::{Advert, DEFAULT_SESSION_TTL, Node, NodeConfig, Session};
pub use standby::{CarriedEvents, Standby};
pub use status::{ClusterStatus, MemberStatus, NodeStatus, status};
pub use store::{ComponentSource, EtcdStore, HeldManifests};
pub use write::{Fence, MAX_TXN_OPS};
pub use writer::Writer;

use courier_registry::StoreError;
use std::path::PathBuf;

/// Why a node cannot join or serve.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No etcd URL was given.
    #[error("no etcd URL given (--etcd http://host:port[,...])")]
    NoEndpoints,
    /// etcd did not answer.
    #[error("etcd is unreachable at {endpoints}: {why}")]
    Unreachable {
        /// The URLs tried.
        endpoints: String,
        /// What failed.
        why: String,
    },
    /// A cluster or node name that cannot be used.
    #[error("bad {what} name {name:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    BadName {
        /// `cluster` or `node`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// Another live node holds the name.
    #[error(
        "a live node of this cluster is already named {0:?} (its session is still renewed): give this one another --node"
    )]
    NameTaken(String),
    /// The data directory holds another cluster's data.
    #[error(
        "{dir} holds the data of cluster {held:?}, not of {cluster:?}: give this node a directory of its own"
    )]
    OtherCluster {
        /// The directory.
        dir: PathBuf,
        /// The cluster it names.
        held: String,
        /// The cluster joined.
        cluster: String,
    },
    /// The election failed.
    #[error("cannot take part in the election of the writer: {0}")]
    Campaign(String),
    /// The client's runtime could not start.
    #[error("cannot start the etcd client's runtime: {0}")]
    Runtime(std::io::Error),
    /// A file of the data directory.
    #[error("io: {0}")]
    Io(std::io::Error),
    /// The standby's registry could not be opened on the store.
    #[error("cannot open the standby's registry: {0}")]
    Standby(courier_registry::OpenError),
    /// The writer's registry could not be opened on the store.
    #[error("cannot open the writer's registry: {0}")]
    Writer(courier_registry::OpenError),
    /// etcd failed a request.
    #[error(transparent)]
    Etcd(#[from] StoreError),
}
