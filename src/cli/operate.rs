//! The grammar of watching a registry: the lease view, usage, and registrations of
//! interest.

use super::{OperatorArgs, humantime_of, parse_duration};
use crate::connect::RegistryArgs;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// `courier leases`
#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// Only leases whose proxy exports this interface (`namespace:package/interface`).
    #[arg(long)]
    pub interface: Option<String>,
    /// Only this vendor's leases: its key (ed25519:...) or the start of it, as the table
    /// shows it.
    #[arg(long)]
    pub vendor: Option<String>,
    /// Only services whose name starts with this (`acme/` for all of acme's).
    #[arg(long)]
    pub name: Option<String>,
    /// The order of the rows.
    #[arg(long, value_enum, default_value_t = LeaseSort::Name)]
    pub sort: LeaseSort,
    /// Print JSON instead of a table (with --watch, one event per line).
    #[arg(long)]
    pub json: bool,
    /// Keep watching: in a terminal the table is redrawn in place, as `top` does; piped,
    /// each registry event is printed as a line.
    #[arg(long)]
    pub watch: bool,
    /// With --watch in a terminal: how often the table is redrawn when nothing happens.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub every: Duration,
    /// With --watch piped: the first event sequence number wanted (default: only new
    /// events).
    #[arg(long)]
    pub from: Option<u64>,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How `courier leases` orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LeaseSort {
    /// By service name, then lease.
    Name,
    /// Least time left first.
    Left,
    /// Most renewals first.
    Renewals,
    /// Most clients served first.
    Clients,
    /// Longest since the last renewal first.
    LastRenewal,
    /// By vendor key.
    Vendor,
}

/// `courier usage`
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// How far back: `24h`, `7d`, `30m` (counted in whole hours).
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub since: Duration,
    /// Sum per client, per service, or per client and service.
    #[arg(long, value_enum, default_value_t = UsageGroup::Service)]
    pub by: UsageGroup,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV with a header line, for an invoicing script.
    #[arg(long)]
    pub csv: bool,
    /// The operator.
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// What `courier usage` sums by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageGroup {
    /// One row per client key.
    Client,
    /// One row per service name.
    Service,
    /// One row per client and service.
    ClientService,
}

/// `courier notify`
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The interface of the services (`namespace:package/interface`, optionally
    /// `@version requirement`); every service when left out.
    pub interface: Option<String>,
    /// Attribute constraint: `key=value`, `key` (present) or `!key` (absent).
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
    /// Which transitions: appeared, changed, gone (all by default).
    #[arg(long = "on", value_enum, value_delimiter = ',')]
    pub transitions: Vec<TransitionArg>,
    /// Also be told of new proxies that fit the system data this client shared
    /// (`courier client share`): recommendations.
    #[arg(long)]
    pub recommendations: bool,
    /// The lease asked for the registration; it is renewed at half of it while this runs.
    #[arg(long, value_parser = parse_duration,
          default_value = humantime_of(Duration::from_secs(60)))]
    pub ttl: Duration,
    /// The first notification sequence number wanted (default: only new ones).
    #[arg(long)]
    pub from: Option<u64>,
    /// Stop after this many notifications (default: run until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Register with the operator key in this file instead of the client key.
    #[arg(long)]
    pub operator_key: Option<PathBuf>,
    /// Where the client key is (`courier client init`).
    #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
    pub state_dir: PathBuf,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// A transition named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransitionArg {
    /// A matching service was registered.
    Appeared,
    /// A matching service's registration was replaced (a new version or component).
    Changed,
    /// A matching service's lease ended: lapsed, cancelled or revoked.
    Gone,
}

impl From<TransitionArg> for courier_protocol::Transition {
    fn from(t: TransitionArg) -> Self {
        match t {
            TransitionArg::Appeared => Self::Appeared,
            TransitionArg::Changed => Self::Changed,
            TransitionArg::Gone => Self::Gone,
        }
    }
}
