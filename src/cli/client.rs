//! The grammar of a client's commands: finding, calling, history, its own registration.

use crate::connect::RegistryArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
    /// Send the proxy's answer (its first 200 characters) with the outcome this client
    /// reports to its service history (off: only whether the call succeeded, and its time).
    #[arg(long)]
    pub report_answer: bool,
    /// Print the phase timings.
    #[arg(long)]
    pub timings: bool,
    /// Accept exactly this version of a service, even older than one accepted before
    /// (rollback protection refuses older versions otherwise): `name@version`, e.g.
    /// `acme/echo@1.0.0`; repeat for several.
    #[arg(long = "pin-version", value_parser = parse_pin)]
    pub pins: Vec<(String, semver::Version)>,
    /// Where this client keeps its key (`courier client init`), the highest proxy versions
    /// it accepted and the key rotations and revocations it learned. With a key there,
    /// outcomes are reported to the registry's service history under it.
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
    /// The client's key (ed25519:...); default: this client's own, from --state-dir. Another
    /// client's history needs --operator-key.
    pub client: Option<String>,
    /// Where this client keeps its key.
    #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
    pub state_dir: PathBuf,
    /// Read as the operator with this key file (for any client's history).
    #[arg(long, env = "COURIER_OPERATOR_KEY")]
    pub operator_key: Option<PathBuf>,
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

/// The file a client keeps its key in, inside its state directory.
pub const CLIENT_KEY_FILE: &str = "client.key";

/// `courier client ...`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Make this client's key (file mode 0600) in its state directory and print it.
    Init {
        /// The state directory.
        #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
        state_dir: PathBuf,
        /// Replace an existing key (the registry then knows this client as a new one).
        #[arg(long)]
        force: bool,
    },
    /// Register this client with the registry as a recipient of services, with its
    /// attributes, and share the system data chosen with --share.
    Register(ClientRegisterArgs),
    /// Share this client's system data with the registry again (the latest snapshot
    /// replaces the last).
    Share(ClientShareArgs),
    /// What the registry knows of this client.
    Show(ClientShowArgs),
}

/// What a client shares: the facts named (by default the OS, architecture and kernel).
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// System facts to share: os, arch, family, hostname, kernel, os-release, cpus,
    /// package-manager, packages.
    #[arg(
        long = "share",
        value_delimiter = ',',
        default_value = "os,arch,kernel"
    )]
    pub facts: Vec<String>,
}

/// `courier client register`
#[derive(Debug, Args)]
pub struct ClientRegisterArgs {
    /// The state directory with the client's key.
    #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
    pub state_dir: PathBuf,
    /// Attribute key=value; repeat for several.
    #[arg(long = "attr", value_parser = super::parse_key_value)]
    pub attributes: Vec<(String, String)>,
    /// What to share.
    #[command(flatten)]
    pub share: ShareArgs,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier client share`
#[derive(Debug, Args)]
pub struct ClientShareArgs {
    /// The state directory with the client's key.
    #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
    pub state_dir: PathBuf,
    /// What to share.
    #[command(flatten)]
    pub share: ShareArgs,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier client show`
#[derive(Debug, Args)]
pub struct ClientShowArgs {
    /// The state directory with the client's key.
    #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
    pub state_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}
