//! The command-line grammar (clap).

use crate::connect::RegistryArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Serve an example provider (echo, key-value) to publish a first proxy with.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `courier man | man -l -`; --dir writes one page per command.
    Man(ManArgs),
}

/// `courier registry ...`
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve a registry over QUIC. Prints its address and TLS pin.
    Serve(ServeArgs),
    /// Let another vendor key register, renew and cancel a service name (registry stopped).
    Grant(GrantArgs),
    /// Revoke a vendor key as the operator (registry stopped): its proxies stop matching
    /// and it cannot register again. Clients learn only of revocations the key signed
    /// itself (`courier keys revoke`).
    Revoke(OperatorRevokeArgs),
}

/// Parses durations like `30s`, `5m`, `1h`.
/// A library default duration as `--help` shows it (`5s`, `5m`); made once per flag while
/// the command line is parsed.
fn humantime_of(d: Duration) -> &'static str {
    Box::leak(humantime::format_duration(d).to_string().into_boxed_str())
}

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
    /// Most concurrent connections (64 per peer address).
    #[arg(long, default_value_t = courier_registry::DEFAULT_MAX_CONNECTIONS)]
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

/// `courier registry revoke`
#[derive(Debug, Args)]
pub struct OperatorRevokeArgs {
    /// Directory of the registry's database.
    #[arg(long, env = "COURIER_DATA_DIR", default_value = "courier-registry")]
    pub data_dir: PathBuf,
    /// The vendor key to revoke (ed25519:...).
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
    /// Rotate to a new key: write it, sign the rotation with the current key, and push
    /// the statement to the registry. The new key then owns the current key's service
    /// names; the current key can no longer register or renew; clients that trust the
    /// current key accept the new one once they have seen the statement.
    Rotate(RotateArgs),
    /// Revoke a key with a statement it signs itself, pushed to the registry: its proxies
    /// stop matching at once, it cannot register again, and clients that learn of it
    /// refuse its proxies. Cannot be undone.
    Revoke(RevokeArgs),
}

/// `courier keys rotate`
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The current key file (the one being retired).
    #[arg(long, env = "COURIER_KEY", default_value = "vendor.key")]
    pub key: PathBuf,
    /// Where to write the new key (file mode 0600).
    #[arg(
        long,
        short,
        default_value = "vendor-next.key",
        conflicts_with = "new_key"
    )]
    pub out: PathBuf,
    /// Overwrite an existing --out file.
    #[arg(long)]
    pub force: bool,
    /// Rotate to this existing key file instead of generating one (e.g. to retry a push).
    #[arg(long)]
    pub new_key: Option<PathBuf>,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier keys revoke`
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The key file to revoke.
    #[arg(long, env = "COURIER_KEY", default_value = "vendor.key")]
    pub key: PathBuf,
    /// Confirm: a revocation cannot be undone.
    #[arg(long)]
    pub yes: bool,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    /// Host facts the proxy may read: os, arch, family, hostname, kernel, os-release, cpus,
    /// package-manager, packages (the installed packages); none by default.
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
    /// Accept exactly this version of a service, even older than one accepted before
    /// (rollback protection refuses older versions otherwise): `name@version`, e.g.
    /// `acme/echo@1.0.0`; repeat for several.
    #[arg(long = "pin-version", value_parser = parse_pin)]
    pub pins: Vec<(String, semver::Version)>,
    /// Where this client remembers the highest proxy versions it accepted and the key
    /// rotations and revocations it learned.
    #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
    pub state_dir: PathBuf,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Parses `name@version`.
pub fn parse_pin(s: &str) -> Result<(String, semver::Version), String> {
    let (name, version) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("expected name@version, got {s:?}"))?;
    let version = semver::Version::parse(version).map_err(|e| format!("{version:?}: {e}"))?;
    if name.is_empty() {
        return Err(format!("expected name@version, got {s:?}"));
    }
    Ok((name.to_string(), version))
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

/// `courier provider ...`
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Serve an example provider over QUIC until Ctrl-C. Its TLS identity (so its pin) and
    /// the proxy component that calls it are kept in --data-dir; prints the pin and the
    /// `courier publish` line for that proxy.
    Run(ProviderRunArgs),
}

/// `courier provider run`
#[derive(Debug, Args)]
pub struct ProviderRunArgs {
    /// The example service.
    pub service: ExampleService,
    /// Address to listen on (default 127.0.0.1:7901 for echo, :7902 for kv, :7903 for patch).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the provider's TLS identity and its proxy are kept (default ./<service>-provider).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// patch: the vendor's catalog folder (patches/*.json, payloads/<id>/...), e.g.
    /// examples/patch-catalog; without it, package upgrades only.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// patch: a folder of apt Packages indexes (plain, .gz, .xz, .lz4) to use instead of
    /// this machine's own apt lists.
    #[arg(long)]
    pub indexes: Option<PathBuf>,
}

/// `courier completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `courier man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write courier.1 and a page per subcommand (courier-publish.1, ...) into this
    /// directory instead of printing courier.1.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The example services `courier provider run` serves.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExampleService {
    /// `courier:echo/echo`: `say(m)` answers `"echo: " + m`.
    Echo,
    /// `courier:kv/store`: get, set, delete and keys over an in-memory store.
    Kv,
    /// `courier:patch/delivery`: upgrades from apt indexes and vendor patches from a catalog.
    Patch,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn pins_parse() {
        let (name, v) = parse_pin("acme/echo@1.2.3-rc.1").unwrap();
        assert_eq!(name, "acme/echo");
        assert_eq!(v, semver::Version::parse("1.2.3-rc.1").unwrap());
        assert!(parse_pin("acme/echo").is_err());
        assert!(parse_pin("@1.0.0").is_err());
        assert!(parse_pin("acme/echo@one").is_err());
    }
}
