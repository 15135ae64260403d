//! The command-line grammar (clap).

mod client;
mod mirror;
mod operate;
mod ops;
mod registry;
mod rollout;
mod root;
mod vendor;

pub use client::*;
pub use mirror::*;
pub use operate::*;
pub use ops::*;
pub use registry::*;
pub use rollout::*;
pub use root::*;
pub use vendor::*;

use clap::{Args, Parser, Subcommand};
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
    /// Whether the command prints and exits (its output may go to `head` or `less`, and
    /// ends quietly when they stop reading), rather than serving until stopped: a server
    /// must never be killed by a pipe a child or a peer closed.
    pub fn prints_and_exits(&self) -> bool {
        !matches!(
            self.command,
            Command::Registry(RegistryCommand::Serve(_))
                | Command::Provider(_)
                | Command::Demo(_)
                | Command::Publish(_)
        )
    }

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
    /// A vendor root: m of n offline keys delegating service names to online keys.
    #[command(subcommand)]
    Root(RootCommand),
    /// Register a signed proxy component and hold its lease until stopped (Ctrl-C cancels it).
    Publish(PublishArgs),
    /// Find the proxies that match an interface.
    Find(FindArgs),
    /// The lease table: filter, sort, and --watch it live.
    Leases(LeasesArgs),
    /// Proxies handed out, calls, failures and bytes per client or service (operator).
    Usage(UsageArgs),
    /// Register interest in services appearing, changing or going, and print what arrives.
    Notify(NotifyArgs),
    /// Find, verify and run a proxy once in the sandbox: `courier call 'courier:echo/echo.say("hi")'`.
    Call(CallArgs),
    /// What this client installed for proxies' prerequisites, and updates to it: check, apply.
    Updates(UpdatesArgs),
    /// Show a client's service history kept by the registry.
    History(HistoryArgs),
    /// This client's key and registration: init, register, share, show.
    #[command(subcommand)]
    Client(ClientCommand),
    /// The clients the registry knows (operator).
    Clients(ClientsArgs),
    /// Act on a running registry as its operator: revoke, ban, drain, audit.
    Admin(AdminArgs),
    /// Roll a staged version out to clients in waves; halt, pause, resume, abort (operator).
    Rollout(RolloutArgs),
    /// A cluster of registry nodes on etcd (cluster mode).
    #[command(subcommand)]
    Cluster(ClusterCommand),
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

/// A library default duration as `--help` shows it (`5s`, `5m`); made once per flag while
/// the command line is parsed.
pub(crate) fn humantime_of(d: Duration) -> &'static str {
    Box::leak(humantime::format_duration(d).to_string().into_boxed_str())
}

/// Parses durations like `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// `courier demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's temporary directory instead of deleting it.
    #[arg(long)]
    pub keep: bool,
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
