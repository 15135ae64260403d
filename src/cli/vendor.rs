//! The grammar of a vendor's commands: keys, publishing, example providers.

use super::{parse_duration, parse_key_value};
use crate::connect::RegistryArgs;
use clap::{Args, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Register it staged: kept, but seen by no client and replacing nothing until an
    /// operator rolls it out (`courier rollout start NAME@VERSION`).
    #[arg(long)]
    pub staged: bool,
    /// The vendor key file.
    #[arg(long, env = "COURIER_KEY", default_value = "vendor.key")]
    pub key: PathBuf,
    /// The registry (and the other nodes of its cluster, where the lease is renewed when
    /// the registry cannot be reached).
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    /// Address to listen on (default 127.0.0.1:7901 for echo, :7902 for kv, :7903 for patch, any
    /// free port for install).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// install: the service's catalog folder (`install.toml`, and `files/` for an
    /// installer), e.g. examples/install-catalog/glyphs.
    #[arg(long)]
    pub from: Option<PathBuf>,
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

/// The example services `courier provider run` serves.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExampleService {
    /// `courier:echo/echo`: `say(m)` answers `"echo: " + m`.
    Echo,
    /// `courier:kv/store`: get, set, delete and keys over an in-memory store.
    Kv,
    /// `courier:patch/delivery`: upgrades from apt indexes and vendor patches from a catalog.
    Patch,
    /// A service with prerequisites, or an installer (`courier:proxy/installer`), read from
    /// a catalog folder (--from).
    Install,
}
