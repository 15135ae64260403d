//! `courier client init|register|share|show`: this client's key and its registration with
//! the registry as a recipient of services.

use crate::cli::{
    CLIENT_KEY_FILE, ClientCommand, ClientRegisterArgs, ClientShareArgs, ClientShowArgs, ShareArgs,
};
use crate::connect::RegistryArgs;
use anyhow::Context;
use courier_client::HostFacts;
use courier_protocol::{ClientInfo, ClientProfile, SigningKey, SystemData, VendorKey};
use courier_provider::{generate_key, load_key, public_key, save_key};
use courier_transport::RegistryClient;
use std::path::Path;

pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Init { state_dir, force } => init(&state_dir, force),
        ClientCommand::Register(args) => register(args).await,
        ClientCommand::Share(args) => share(args).await,
        ClientCommand::Show(args) => show(args).await,
    }
}

fn init(state_dir: &Path, force: bool) -> anyhow::Result<()> {
    let path = state_dir.join(CLIENT_KEY_FILE);
    let key = generate_key();
    save_key(&path, &key, force)?;
    println!(
        "client key {} written to {}",
        public_key(&key),
        path.display()
    );
    println!(
        "register it with: courier client register --state-dir {}",
        state_dir.display()
    );
    Ok(())
}

/// This client's key, if it made one (`courier client init`).
pub fn client_key(state_dir: &Path) -> anyhow::Result<Option<SigningKey>> {
    let path = state_dir.join(CLIENT_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(load_key(&path)?))
}

/// This client's key, or a one-line explanation of how to make it.
fn required_key(state_dir: &Path) -> anyhow::Result<SigningKey> {
    client_key(state_dir)?.with_context(|| {
        format!(
            "no client key in {}: run courier client init --state-dir {}",
            state_dir.display(),
            state_dir.display()
        )
    })
}

/// A connection authenticated as this client.
pub async fn connect_as_client(
    registry: &RegistryArgs,
    key: &SigningKey,
) -> anyhow::Result<RegistryClient> {
    let client = registry.connect("courier-cli/client").await?;
    client
        .authenticate(key)
        .await
        .context("authenticating with the client key")?;
    Ok(client)
}

/// The facts to share (`--share`, or the policy file's list, or the default), read from
/// this machine.
fn system_data(share: &ShareArgs, state_dir: &Path) -> anyhow::Result<SystemData> {
    let allowed = super::policy::shared_facts(share, state_dir)?
        .into_iter()
        .collect();
    Ok(SystemData {
        facts: HostFacts::gather_allowed(&allowed)
            .all()
            .iter()
            .cloned()
            .collect(),
    })
}

async fn register(args: ClientRegisterArgs) -> anyhow::Result<()> {
    let key = required_key(&args.state_dir)?;
    let client = connect_as_client(&args.registry, &key).await?;
    let profile = ClientProfile {
        attributes: args.attributes.into_iter().collect(),
    };
    let data = system_data(&args.share, &args.state_dir)?;
    client.register_client(profile).await?;
    let shared: Vec<&str> = data.facts.keys().map(String::as_str).collect();
    client.share_system_data(data.clone()).await?;
    client.close();
    println!(
        "registered client {} and shared: {}",
        public_key(&key),
        shared.join(", ")
    );
    Ok(())
}

async fn share(args: ClientShareArgs) -> anyhow::Result<()> {
    let key = required_key(&args.state_dir)?;
    let data = system_data(&args.share, &args.state_dir)?;
    let client = connect_as_client(&args.registry, &key).await?;
    let shared: Vec<String> = data.facts.keys().cloned().collect();
    client.share_system_data(data).await?;
    client.close();
    println!("shared: {}", shared.join(", "));
    Ok(())
}

async fn show(args: ClientShowArgs) -> anyhow::Result<()> {
    let key = required_key(&args.state_dir)?;
    let client = connect_as_client(&args.registry, &key).await?;
    let info = client.client(VendorKey::of(&key)).await?;
    client.close();
    print_client(&info, args.json)
}

/// Prints what the registry knows of one client.
pub fn print_client(info: &ClientInfo, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&client_json(info))?);
        return Ok(());
    }
    println!("client      {}", info.key);
    println!("registered  {}", at(info.registered_at_ms));
    println!("last seen   {}", at(info.last_contact_ms));
    for (k, v) in &info.attributes {
        println!("attribute   {k}={v}");
    }
    match &info.system {
        None => println!("system data none shared"),
        Some(s) => {
            println!("system data shared {}", at(s.at_ms));
            for (k, v) in &s.facts {
                match v.lines().count() {
                    0 | 1 => println!("  {k}: {v}"),
                    n => println!("  {k}: {n} lines"),
                }
            }
        }
    }
    if let Some(last) = &info.last_outcome {
        let o = &last.outcome;
        let result = if o.ok { "ok" } else { "failed" };
        println!(
            "last call   {} {} {} {result}",
            at(last.at_ms),
            o.name,
            o.function
        );
    }
    Ok(())
}

/// One client as JSON.
pub fn client_json(info: &ClientInfo) -> serde_json::Value {
    serde_json::json!({
        "key": info.key.to_string(),
        "attributes": info.attributes,
        "registered_at_ms": info.registered_at_ms,
        "last_contact_ms": info.last_contact_ms,
        "os": info.os(),
        "packages": info.package_count(),
        "system": info.system.as_ref().map(|s| serde_json::json!({"at_ms": s.at_ms, "facts": s.facts})),
        "last_outcome": info.last_outcome.as_ref().map(|e| serde_json::json!({
            "at_ms": e.at_ms,
            "name": e.outcome.name,
            "function": e.outcome.function,
            "ok": e.outcome.ok,
        })),
    })
}

/// A wall-clock time (ms since the epoch) as UTC RFC 3339 seconds.
pub fn at(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
