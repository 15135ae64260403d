//! The grammar of a vendor root's commands: make a root of n keys with a threshold,
//! delegate names to an online key, revoke a delegation, rotate the root, publish.

use super::parse_duration;
use crate::connect::RegistryArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// `courier root ...`
#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Make a root of the given key files' public keys, m of which must sign: writes the
    /// root file and prints the line clients trust it with. Nothing is signed yet.
    Init(RootInitArgs),
    /// Delegate service names (exact, or `prefix/*`) to an online key until an expiry,
    /// in the root's next version, signed by --sign key files (m of the root's keys);
    /// replaces an earlier delegation to the same key. Pushed to the registry.
    Delegate(RootDelegateArgs),
    /// Revoke an online key in the root's next version: its delegation goes, nothing it
    /// signs counts under the root, the registry drops its registrations. Pushed.
    Revoke(RootRevokeArgs),
    /// Rotate the root to new keys and threshold: m of the old keys and m' of the new must
    /// sign (--sign each). Pushed.
    Rotate(RootRotateArgs),
    /// Push every statement of the root file to the registry again (the registry keeps
    /// what it lacks).
    Publish(RootFileArgs),
}

/// The root file and the registry, shared by every command that changes the root.
#[derive(Debug, Args)]
pub struct RootFileArgs {
    /// The root file (its first keys and every statement signed so far).
    #[arg(long, default_value = "root.txt")]
    pub file: PathBuf,
    /// The registry the statement is pushed to.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `courier root init`
#[derive(Debug, Args)]
pub struct RootInitArgs {
    /// A root key file (from `courier keys generate`); repeat for each of the n keys.
    #[arg(long = "root-key", required = true)]
    pub keys: Vec<PathBuf>,
    /// How many of the root keys must sign (m).
    #[arg(long)]
    pub threshold: u8,
    /// Where to write the root file.
    #[arg(long, default_value = "root.txt")]
    pub file: PathBuf,
    /// Overwrite an existing root file.
    #[arg(long)]
    pub force: bool,
}

/// `courier root delegate`
#[derive(Debug, Args)]
pub struct RootDelegateArgs {
    /// The online key: a public key (ed25519:...) or a key file.
    #[arg(long)]
    pub to: String,
    /// A service name or `prefix/*` pattern; repeat for several.
    #[arg(long = "name", required = true)]
    pub names: Vec<String>,
    /// How long the delegation lasts.
    #[arg(long, value_parser = parse_duration, default_value = "90days")]
    pub valid: Duration,
    /// A root key file to sign with; repeat until the threshold is met.
    #[arg(long = "sign", required = true)]
    pub sign: Vec<PathBuf>,
    /// The root file and the registry.
    #[command(flatten)]
    pub root: RootFileArgs,
}

/// `courier root revoke`
#[derive(Debug, Args)]
pub struct RootRevokeArgs {
    /// The online key to revoke: a public key (ed25519:...) or a key file.
    #[arg(long)]
    pub key: String,
    /// A root key file to sign with; repeat until the threshold is met.
    #[arg(long = "sign", required = true)]
    pub sign: Vec<PathBuf>,
    /// The root file and the registry.
    #[command(flatten)]
    pub root: RootFileArgs,
}

/// `courier root rotate`
#[derive(Debug, Args)]
pub struct RootRotateArgs {
    /// A new root key file; repeat for each of the new keys.
    #[arg(long = "new-key", required = true)]
    pub new_keys: Vec<PathBuf>,
    /// How many of the new keys must sign from now on.
    #[arg(long)]
    pub threshold: u8,
    /// An old root key file to sign with; repeat until the old threshold is met (the new
    /// keys sign too, without being named here).
    #[arg(long = "sign", required = true)]
    pub sign: Vec<PathBuf>,
    /// The root file and the registry.
    #[command(flatten)]
    pub root: RootFileArgs,
}
