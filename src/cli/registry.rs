//! The grammar of an operator's commands: serving a registry, acting on it, reading it.

use super::{humantime_of, parse_duration};
use crate::connect::RegistryArgs;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `courier registry ...`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve a registry over QUIC. Prints its address and TLS pin.
    Serve(Box<ServeArgs>),
    /// Let another vendor key register, renew and cancel a service name (registry stopped).
    Grant(GrantArgs),
    /// Revoke a vendor key as the operator (registry stopped): its proxies stop matching
    /// and it cannot register again. Clients learn only of revocations the key signed
    /// itself (`courier keys revoke`).
    Revoke(OperatorRevokeArgs),
    /// Replace the registry's TLS key (registry stopped). The old key signs a statement
    /// naming the new one: for the overlap, clients and vendors pinned to the old key
    /// reach the registry, move their pin and keep the move; after it the old pin is
    /// refused. Takes effect at the next start.
    RotateIdentity(RotateIdentityArgs),
    /// The child registries allowed to follow this one (a site, a branch, a customer's
    /// network): allow a child's key, deny it, list them (registry running, operator key).
    Children(ChildrenArgs),
    /// A child registry's rules: which of its parent's registrations it mirrors (registry
    /// running, operator key).
    Rules(super::RulesArgs),
    /// A child registry's approvals: the parent's versions its rules hold until an
    /// operator approves or declines them (registry running, operator key).
    Approvals(super::ApprovalsArgs),
}

/// `courier registry children ...`
#[derive(Debug, Args)]
pub struct ChildrenArgs {
    /// What to do (default: list them).
    #[command(subcommand)]
    pub action: Option<ChildrenCommand>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The operator.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// The actions of `courier registry children`.
#[derive(Debug, Subcommand)]
pub enum ChildrenCommand {
    /// Allow a child registry's key (again: rename it).
    Allow {
        /// The child's key (`ed25519:...`, as the child prints it).
        key: String,
        /// Its name, for operators (`site-a`).
        #[arg(long)]
        name: String,
    },
    /// Take a child's permission away: its next hello is refused.
    Deny {
        /// The child's key.
        key: String,
    },
    /// List the allowed children, and when each last said hello.
    List,
    /// Ask a child for a report now and print it when it comes (a child hears it within
    /// 2 s while its link is up).
    Report {
        /// The child's key.
        key: String,
    },
}

/// `courier registry rotate-identity`
#[derive(Debug, Args)]
pub struct RotateIdentityArgs {
    /// Directory of the registry's database and TLS identity.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "courier-registry")]
    pub data_dir: PathBuf,
    /// How long the old pin keeps working, from now.
    #[arg(long, value_parser = parse_duration, default_value = "7days")]
    pub overlap: Duration,
}

/// `courier registry serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of the registry's database, components and TLS identity.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "courier-registry")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value_t = courier_registry::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Shortest lease the registry grants.
    #[arg(long, value_parser = parse_duration, default_value = humantime_of(courier_registry::DEFAULT_MIN_TTL))]
    pub min_ttl: Duration,
    /// Longest lease the registry grants.
    #[arg(long, value_parser = parse_duration, default_value = humantime_of(courier_registry::DEFAULT_MAX_TTL))]
    pub max_ttl: Duration,
    /// After a restart, how long a lease that ran out while the registry was down has to
    /// renew (once: a lease still in grace at the next restart keeps only what is left).
    #[arg(long, value_parser = parse_duration, default_value = humantime_of(courier_registry::DEFAULT_GRACE))]
    pub grace: Duration,
    /// Most concurrent connections.
    #[arg(long, default_value_t = courier_registry::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most concurrent connections from one peer address (raise it when many vendors or
    /// clients reach the registry through one NAT address).
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_peer: usize,
    /// A further operator key (ed25519:...); repeat for several. The data directory's own
    /// operator key (operator.key, made on first start) is always one.
    #[arg(long = "operator")]
    pub operators: Vec<String>,
    /// The HTTP listener and webhooks.
    #[command(flatten)]
    pub ops: super::OpsArgs,
    /// Cluster mode: the registry's state in etcd.
    #[command(flatten)]
    pub cluster: ClusterNodeArgs,
    /// A child registry: its parent.
    #[command(flatten)]
    pub parent: ParentArgs,
}

/// `courier registry serve --parent ...`: a child registry.
#[derive(Debug, Args)]
pub struct ParentArgs {
    /// Serve as a child of the registry at this address: mirror what its rules let in of
    /// the parent's catalog (`courier registry rules`), fetch components from it when a
    /// client first asks, and report to it. The parent's operator allows this registry's
    /// key first (`courier registry children allow KEY`; the key is printed at start).
    #[arg(long, env = "COURIER_PARENT", requires = "parent_pin")]
    pub parent: Option<SocketAddr>,
    /// The parent's TLS pin (`sha256:...`, as it prints it).
    #[arg(long, env = "COURIER_PARENT_PIN", requires = "parent")]
    pub parent_pin: Option<String>,
    /// How long a mirrored registration is served past its lease's last known end, while
    /// the parent cannot be reached.
    #[arg(long, value_parser = parse_duration, default_value = humantime_of(courier_registry::DEFAULT_MIRROR_GRACE))]
    pub mirror_grace: Duration,
    /// How often to report to the parent (its clients' activity and this registry's sync
    /// state).
    #[arg(long, value_parser = parse_duration, default_value = humantime_of(courier_registry::DEFAULT_REPORT_EVERY))]
    pub report_every: Duration,
    /// Fetch the component of every mirrored registration at once, instead of when a
    /// client first asks.
    #[arg(long)]
    pub prefetch: bool,
}

/// `courier registry serve --etcd ...`: a node of a cluster.
#[derive(Debug, Args)]
pub struct ClusterNodeArgs {
    /// Serve as a node of a cluster whose state is in etcd, at these client URLs
    /// (comma-separated). One node writes at a time; the others wait as standbys and take
    /// over when it goes. Needs a courier built with `--features cluster`.
    #[arg(long, env = "COURIER_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The cluster's name: its keys live under /courier/<cluster>/ in etcd.
    #[arg(long, default_value = "courier")]
    pub cluster: String,
    /// This node's name, unique among the cluster's live nodes.
    #[arg(long, default_value = "node")]
    pub node: String,
    /// The address other nodes reach this one at (default: --listen).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// How long this node's etcd session outlives its last keep-alive: after a crash,
    /// a standby takes over within about this long.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub session_ttl: Duration,
}

/// `courier cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// A cluster as etcd sees it: its nodes, which one writes, their sessions, and etcd's
    /// members.
    Status(ClusterStatusArgs),
}

/// `courier cluster status`
#[derive(Debug, Args)]
pub struct ClusterStatusArgs {
    /// etcd's client URLs (comma-separated).
    #[arg(long, env = "COURIER_ETCD", value_delimiter = ',', required = true)]
    pub etcd: Vec<String>,
    /// The cluster's name.
    #[arg(long, default_value = "courier")]
    pub cluster: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `courier registry grant`
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// Directory of the registry's database.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "courier-registry")]
    pub data_dir: PathBuf,
    /// The service name.
    pub name: String,
    /// The vendor key to grant (ed25519:...).
    pub key: String,
}

/// `courier registry revoke`
#[derive(Debug, Args)]
pub struct OperatorRevokeArgs {
    /// Directory of the registry's database.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "courier-registry")]
    pub data_dir: PathBuf,
    /// The vendor key to revoke (ed25519:...).
    pub key: String,
}

/// The file the registry's own operator key is kept in, inside its data directory.
pub const OPERATOR_KEY_FILE: &str = "operator.key";

/// The registry's own key in its data directory: it authenticates to a parent registry
/// with it, and its children find it first among their ancestors.
pub const REGISTRY_KEY_FILE: &str = "registry.key";

/// How an operator reaches the registry: its key and the registry's address and pin.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// The operator key file (made by `courier registry serve` in its data directory).
    #[arg(
        long,
        global = true,
        env = "COURIER_OPERATOR_KEY",
        default_value = "courier-registry/operator.key"
    )]
    pub operator_key: PathBuf,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier clients`
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// Show one client.
    #[command(subcommand)]
    pub command: Option<ClientsCommand>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// The operator.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// `courier clients show`
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// What the registry knows of one client: attributes, system data, last outcome.
    Show {
        /// The client's key (ed25519:...).
        key: String,
    },
}

/// `courier admin ...`: an operator's actions on a running registry, each logged.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The action.
    #[command(subcommand)]
    pub action: AdminCommand,
    /// The operator.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// The actions of `courier admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Revoke one lease: its proxy stops matching at once; its vendor is told why on its
    /// next renewal.
    RevokeLease {
        /// The lease (hex, as `courier leases` shows it).
        lease: String,
        /// Why (the vendor sees it).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Ban a vendor key from a service name: its registration goes and cannot come back.
    Ban {
        /// The service name.
        name: String,
        /// The vendor key (ed25519:...).
        key: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a ban.
    Allow {
        /// The service name.
        name: String,
        /// The vendor key (ed25519:...).
        key: String,
    },
    /// Let another vendor key use a service name.
    Grant {
        /// The service name.
        name: String,
        /// The vendor key (ed25519:...).
        key: String,
    },
    /// Drain a service: no new registrations or renewals, its leases run out.
    Drain {
        /// The service name.
        name: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End a drain.
    Undrain {
        /// The service name.
        name: String,
    },
    /// Revoke a vendor key with a statement the operator key signs: its proxies stop
    /// matching, and clients that trust the operator key refuse them too. Cannot be undone.
    RevokeKey {
        /// The vendor key (ed25519:...).
        key: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// Confirm: a revocation cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Issue a dashboard token signed by the operator key, for the registry of
    /// --registry-pin (no connection needed).
    Token(super::TokenArgs),
    /// The audit log of operators' actions, oldest first.
    Audit {
        /// First entry number shown.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
