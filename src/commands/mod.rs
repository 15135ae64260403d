//! One module per command; each parses its arguments into library calls and prints.

mod call;
mod client;
mod cluster;
mod completions;
mod console;
mod demo;
mod demo_patch;
mod find;
mod hierarchy;
mod history;
mod keys;
mod leases;
mod man;
mod notify;
mod operator;
mod ops;
mod policy;
mod provider;
mod publish;
mod registry;
mod rollout;
mod root;
mod updates;
mod usage;

use crate::cli::{Cli, Command};

/// Runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Registry(cmd) => registry::run(cmd).await,
        Command::Keys(cmd) => keys::run(cmd).await,
        Command::Root(cmd) => root::run(cmd).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Find(args) => find::run(args).await,
        Command::Leases(args) => leases::run(args).await,
        Command::Usage(args) => usage::run(args).await,
        Command::Notify(args) => notify::run(args).await,
        Command::Call(args) => call::run(args).await,
        Command::Updates(args) => updates::run(args).await,
        Command::History(args) => history::run(args).await,
        Command::Client(cmd) => client::run(cmd).await,
        Command::Clients(args) => operator::clients(args).await,
        Command::Admin(args) => operator::admin(args).await,
        Command::Rollout(args) => rollout::run(args).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Provider(cmd) => provider::run(cmd).await,
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

/// Parses `key=value`, `key` or `!key` into an attribute constraint.
pub fn parse_constraint(s: &str) -> courier_protocol::AttributeConstraint {
    use courier_protocol::AttributeConstraint;
    if let Some(k) = s.strip_prefix('!') {
        AttributeConstraint::Absent(k.to_string())
    } else if let Some((k, v)) = s.split_once('=') {
        AttributeConstraint::Equals(k.to_string(), v.to_string())
    } else {
        AttributeConstraint::Present(s.to_string())
    }
}

/// Splits `ns:pkg/iface@req` into the interface and an optional version requirement.
pub fn split_interface(s: &str) -> anyhow::Result<(String, Option<String>)> {
    let (name, req) = match s.split_once('@') {
        Some((n, r)) => (n, Some(r.to_string())),
        None => (s, None),
    };
    let parsed: courier_protocol::InterfaceName = name.parse()?;
    if let Some(r) = &req {
        semver::VersionReq::parse(r)
            .map_err(|e| anyhow::anyhow!("version requirement {r:?}: {e}"))?;
    }
    Ok((parsed.unversioned(), req))
}
