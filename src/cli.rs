//! The command-line grammar (clap).

use crate::connect::RegistryArgs;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// courier: a registry of signed WebAssembly service proxies under leases, run once in a
/// sandbox at the client.
#[derive(Debug, Parser)]
#[command(name = "courier", version, about, long_about = None)]
pub struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The default log filter for the verbosity.
    pub fn log_level(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run or administer a registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Vendor signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Register a signed proxy component and hold its lease until stopped (Ctrl-C cancels it).
    Publish(PublishArgs),
    /// Find the proxies that match an interface.
    Find(FindArgs),
    /// Show the lease table, or stream registry events with --watch.
    Leases(LeasesArgs),
    /// Find, verify and run a proxy once in the sandbox: `courier call 'courier:echo/echo.say("hi")'`.
    Call(CallArgs),
    /// Show a client's service history kept by the registry.
    History(HistoryArgs),
    /// Run the whole flow in one process on loopback: registry, providers, proxies, client.
    Demo(DemoArgs),
}

/// `courier registry ...`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve a registry over QUIC. Prints its address and TLS pin.
    Serve(ServeArgs),
    /// Let another vendor key register, renew and cancel a service name (registry stopped).
    Grant(GrantArgs),
}

/// Parses durations like `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// `courier registry serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of the registry's database, components and TLS identity.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "courier-registry")]
    pub data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7800")]
    pub listen: SocketAddr,
    /// Shortest lease the registry grants.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub min_ttl: Duration,
    /// Longest lease the registry grants.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub max_ttl: Duration,
    /// After a restart, how long a lease that ran out while the registry was down has to renew.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub grace: Duration,
    /// Most concurrent connections.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
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

/// `courier keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a vendor signing key (file mode 0600) and print its public key.
    Generate {
        /// Where to write the key.
        #[arg(long, short, default_value = "vendor.key")]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a key file.
    Show {
        /// The key file.
        #[arg(default_value = "vendor.key")]
        key: PathBuf,
    },
}

/// `courier publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The proxy component (.wasm).
    pub component: PathBuf,
    /// Service name (owned by your key once registered).
    #[arg(long)]
    pub name: String,
    /// Proxy version (semver).
    #[arg(long, default_value = "0.1.0")]
    pub version: String,
    /// Provider endpoint the proxy will call (host:port); repeat for several.
    #[arg(long = "endpoint", required = true)]
    pub endpoints: Vec<String>,
    /// The provider's TLS key pin (sha256:...), as printed by the provider.
    #[arg(long)]
    pub provider_pin: String,
    /// Attribute key=value; repeat for several.
    #[arg(long = "attr", value_parser = parse_key_value)]
    pub attributes: Vec<(String, String)>,
    /// Requested lease duration (the registry clamps it).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub ttl: Duration,
    /// How long the signed manifest stays valid.
    #[arg(long, value_parser = parse_duration, default_value = "30days")]
    pub validity: Duration,
    /// The vendor key file.
    #[arg(long, env = "COURIER_KEY", default_value = "vendor.key")]
    pub key: PathBuf,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// `courier find`
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Interface `namespace:package/interface`, optionally `@version` (a semver requirement).
    pub interface: String,
    /// Functions that must exist; repeat for several.
    #[arg(long = "function")]
    pub functions: Vec<String>,
    /// Attribute constraint: `key=value`, `key` (present) or `!key` (absent).
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
    /// Most candidates.
    #[arg(long, default_value_t = 10)]
    pub limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier leases`
#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// Print JSON instead of a table (one object per line with --watch).
    #[arg(long)]
    pub json: bool,
    /// Stream events as they happen.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: first sequence number wanted (default: only new events).
    #[arg(long)]
    pub from: Option<u64>,
    /// With --watch: only events of this interface (`namespace:package/interface`).
    #[arg(long)]
    pub interface: Option<String>,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier call`
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The call: `namespace:package/interface[@version].function(arg, ...)`, arguments in WAVE.
    pub expression: String,
    /// A trusted vendor key (ed25519:...); repeat for several.
    #[arg(long = "trust", env = "COURIER_TRUST", value_delimiter = ',')]
    pub trust: Vec<String>,
    /// A file of trusted vendor keys, one `ed25519:...` per line.
    #[arg(long)]
    pub trust_file: Option<PathBuf>,
    /// Host facts the proxy may read (e.g. os,arch,hostname); none by default.
    #[arg(long = "allow-fact", value_delimiter = ',')]
    pub allow_facts: Vec<String>,
    /// Answer the proxy's confirmation questions with yes (when no terminal is attached).
    #[arg(long, conflicts_with = "deny")]
    pub approve: bool,
    /// Answer the proxy's confirmation questions with no (when no terminal is attached).
    #[arg(long)]
    pub deny: bool,
    /// Attribute constraint on the proxy: `key=value`, `key` or `!key`.
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
    /// Identifier this client reports its service history under.
    #[arg(long, env = "COURIER_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Print the phase timings.
    #[arg(long)]
    pub timings: bool,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The client identifier (default: this host's name).
    pub client: Option<String>,
    /// Most entries.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's temporary directory instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }
}
