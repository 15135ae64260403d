//! The grammar of a client's commands: finding, calling, history, its own registration.

use crate::connect::RegistryArgs;
use clap::{Args, Subcommand};
use courier_client::{ExtraArgs, LentCommand};
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
    /// Attribute constraint on the proxy: `key=value`, `key` or `!key`.
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
    /// Print the phase timings.
    #[arg(long)]
    pub timings: bool,
    /// The client.
    #[command(flatten)]
    pub client: ClientRunArgs,
}

/// How a client is set up for one run: whom it trusts, its policy, its state directory and
/// the registry (`courier call`, `courier updates`).
#[derive(Debug, Args)]
pub struct ClientRunArgs {
    /// A trusted vendor key (ed25519:...); repeat for several.
    #[arg(long = "trust", env = "COURIER_TRUST", value_delimiter = ',')]
    pub trust: Vec<String>,
    /// A trusted vendor root, as `courier root init` prints it: `<m>:ed25519:...,ed25519:...`
    /// (its first keys and threshold); repeat for several.
    #[arg(long = "trust-root", env = "COURIER_TRUST_ROOT")]
    pub trust_roots: Vec<String>,
    /// A file of trusted vendor keys, one `ed25519:...` per line (or `root:<m>:<keys>`).
    #[arg(long)]
    pub trust_file: Option<PathBuf>,
    /// An operator key to follow (ed25519:...): vendor keys it revoked are refused; repeat
    /// for several.
    #[arg(
        long = "trust-operator",
        env = "COURIER_TRUST_OPERATOR",
        value_delimiter = ','
    )]
    pub trust_operators: Vec<String>,
    /// The client policy file (what proxies may read, the directory and commands lent,
    /// limits, how questions are answered; see examples/policy.toml). Default:
    /// <state-dir>/policy.toml when it exists. The flags below override or extend it.
    #[arg(long, env = "COURIER_POLICY")]
    pub policy: Option<PathBuf>,
    /// Host facts the proxy may read (added to the policy's): os, arch, family, hostname,
    /// kernel, os-release, os-id, os-version, os-codename, cpus, package-manager, packages
    /// (the installed packages), managed-dir.
    #[arg(long = "allow-fact", value_delimiter = ',')]
    pub allow_facts: Vec<String>,
    /// Answer every question of the proxy (confirmations, commands to confirm) with yes,
    /// without asking: for unattended runs.
    #[arg(long, short = 'y', alias = "approve", conflicts_with = "deny")]
    pub yes: bool,
    /// Answer every question of the proxy with no, without asking.
    #[arg(long)]
    pub deny: bool,
    /// Lend this directory to the proxy, at /managed inside the sandbox (or the policy's
    /// guest path): `PATH` read-write, `PATH:ro` read-only.
    #[arg(long = "dir", value_parser = parse_dir)]
    pub dir: Option<(PathBuf, bool)>,
    /// Lend a command by name: `NAME=PROGRAM ARG...` (split on spaces, no shell). A last
    /// argument `{packages}` lets the proxy append package names. Asked before each run
    /// (unless --yes); repeat for several; replaces a policy command of the same name.
    #[arg(long = "command", value_parser = parse_command)]
    pub commands: Vec<LentCommand>,
    /// The longest a lent command may run (each run).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub command_timeout: std::time::Duration,
    /// The wall-clock time the proxy's run may take, host calls and commands included
    /// (overrides the policy's).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub wall_time: Option<std::time::Duration>,
    /// Send the proxy's answer (its first 200 characters) with the outcome this client
    /// reports to its service history (off: only whether the call succeeded, and its time).
    #[arg(long)]
    pub report_answer: bool,
    /// Accept exactly this version of a service, even older than one accepted before
    /// (rollback protection refuses older versions otherwise): `name@version`, e.g.
    /// `acme/echo@1.0.0`; repeat for several.
    #[arg(long = "pin-version", value_parser = parse_pin)]
    pub pins: Vec<(String, semver::Version)>,
    /// Where this client keeps its key (`courier client init`), the highest proxy versions
    /// it accepted, the key rotations and revocations it learned, and the code it compiled
    /// (`compiled/`, authenticated with a key derived from the client's, or `compiled.key`,
    /// so the next call loads it instead of compiling again). With a key there, outcomes
    /// are reported to the registry's service history under it.
    #[arg(long, env = "COURIER_STATE_DIR", default_value = "courier-client")]
    pub state_dir: PathBuf,
    /// The registry.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Parses `PATH` or `PATH:ro` / `PATH:rw` into the path and whether it is writable.
pub fn parse_dir(s: &str) -> Result<(PathBuf, bool), String> {
    let (path, writable) = match s.rsplit_once(':') {
        Some((p, "ro")) => (p, false),
        Some((p, "rw")) => (p, true),
        _ => (s, true),
    };
    if path.is_empty() {
        return Err("expected PATH, PATH:ro or PATH:rw".into());
    }
    Ok((PathBuf::from(path), writable))
}

/// Parses `NAME=PROGRAM ARG...` into a lent command: asked before each run, package names
/// allowed when the last argument is `{packages}`. Its timeout is set from
/// `--command-timeout` afterwards.
pub fn parse_command(s: &str) -> Result<LentCommand, String> {
    let (name, line) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PROGRAM ARG..., got {s:?}"))?;
    let mut argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let extra_args = if argv.last().is_some_and(|a| a == "{packages}") {
        argv.pop();
        ExtraArgs::PackageNames
    } else {
        ExtraArgs::None
    };
    let command = LentCommand {
        name: name.trim().to_owned(),
        argv,
        extra_args,
        timeout: std::time::Duration::from_secs(600),
        confirm: true,
    };
    command.validate().map_err(|e| e.to_string())?;
    Ok(command)
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

/// What a client shares: the facts named, or the policy file's `[facts] share` list, or
/// the OS, architecture and kernel.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// System facts to share: os, arch, family, hostname, kernel, os-release, os-id,
    /// os-version, os-codename, cpus, package-manager, packages. Default: the policy
    /// file's share list, or os,arch,kernel.
    #[arg(long = "share", value_delimiter = ',')]
    pub facts: Vec<String>,
    /// The client policy file. Default: <state-dir>/policy.toml when it exists.
    #[arg(long, env = "COURIER_POLICY")]
    pub policy: Option<PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_and_command_flags_parse() {
        assert_eq!(parse_dir("/srv/m"), Ok(("/srv/m".into(), true)));
        assert_eq!(parse_dir("/srv/m:ro"), Ok(("/srv/m".into(), false)));
        assert_eq!(parse_dir("rel:rw"), Ok(("rel".into(), true)));
        assert!(parse_dir(":ro").is_err());
        let c = parse_command("apt-upgrade=apt-get install --only-upgrade -y {packages}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.name, "apt-upgrade");
        assert_eq!(c.argv, ["apt-get", "install", "--only-upgrade", "-y"]);
        assert_eq!(c.extra_args, ExtraArgs::PackageNames);
        assert!(c.confirm);
        let c = parse_command("health=sh /srv/app/check.sh").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.extra_args, ExtraArgs::None);
        assert!(parse_command("no-program=").is_err());
        assert!(parse_command("Bad Name=true").is_err());
        assert!(parse_command("true").is_err());
    }
}

/// `courier updates`
#[derive(Debug, Args)]
pub struct UpdatesArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: UpdatesAction,
}

/// `courier updates check|apply`
#[derive(Debug, Subcommand)]
pub enum UpdatesAction {
    /// List what this client installed (its ledger) and the newer versions the registry
    /// offers it (its rollout waves and rollback protection respected).
    Check(UpdatesCheckArgs),
    /// Install the newer versions, each checked and confirmed like a first install.
    Apply(UpdatesApplyArgs),
}

/// `courier updates check`
#[derive(Debug, Args)]
pub struct UpdatesCheckArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The client.
    #[command(flatten)]
    pub client: ClientRunArgs,
}

/// `courier updates apply`
#[derive(Debug, Args)]
pub struct UpdatesApplyArgs {
    /// Only these interfaces (e.g. `acme:fonts/glyphs`); repeat for several. Default: all.
    #[arg(long = "only")]
    pub only: Vec<String>,
    /// The client.
    #[command(flatten)]
    pub client: ClientRunArgs,
}
