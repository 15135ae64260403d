//! `courier registry serve`, `grant`, `revoke` and `rotate-identity`.

use crate::cli::{
    GrantArgs, OPERATOR_KEY_FILE, OperatorRevokeArgs, REGISTRY_KEY_FILE, RegistryCommand,
    RotateIdentityArgs, ServeArgs,
};
use anyhow::Context;
use courier_protocol::VendorKey;
use courier_provider::{generate_key, load_key, public_key, save_key};
use courier_registry::{OfflineRegistry, Registry, RegistryConfig, ServerConfig};
use std::sync::Arc;

pub async fn run(cmd: RegistryCommand) -> anyhow::Result<()> {
    match cmd {
        RegistryCommand::Serve(args) => serve(*args).await,
        RegistryCommand::Grant(args) => grant(args),
        RegistryCommand::Revoke(args) => revoke(args),
        RegistryCommand::RotateIdentity(args) => rotate_identity(args),
        RegistryCommand::Children(args) => super::hierarchy::children(args).await,
        RegistryCommand::Rules(args) => super::hierarchy::rules(args).await,
        RegistryCommand::Approvals(args) => super::hierarchy::approvals(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.min_ttl <= args.max_ttl,
        "--min-ttl ({:?}) is longer than --max-ttl ({:?})",
        args.min_ttl,
        args.max_ttl
    );
    anyhow::ensure!(
        args.parent.mirror_grace <= std::time::Duration::from_secs(30 * 24 * 3600),
        "--mirror-grace is at most 30 days"
    );
    anyhow::ensure!(
        args.parent.report_every >= std::time::Duration::from_millis(100),
        "--report-every is at least 100ms"
    );
    let mut config = RegistryConfig::new(&args.data_dir);
    config.min_ttl = args.min_ttl;
    config.max_ttl = args.max_ttl;
    config.grace = args.grace;
    config.mirror_grace = args.parent.mirror_grace;
    let (operator, made) = data_key(&args.data_dir, OPERATOR_KEY_FILE, "operator key")?;
    config.operators.push(operator);
    let (own, _) = data_key(&args.data_dir, REGISTRY_KEY_FILE, "registry key")?;
    for k in &args.operators {
        config
            .operators
            .push(k.parse().with_context(|| format!("--operator {k}"))?);
    }
    let mut server = ServerConfig {
        listen: args.listen,
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        ..ServerConfig::default()
    };
    super::ops::configure(&args.ops, &mut server);
    if !args.cluster.etcd.is_empty() {
        anyhow::ensure!(
            args.parent.parent.is_none(),
            "--parent is for a single registry: a cluster does not mirror a parent yet"
        );
        return super::cluster::serve_node(args, config, server, (operator, made)).await;
    }
    let parent = parent_config(&args)?;
    let data_dir = args.data_dir.clone();
    let registry = tokio::task::spawn_blocking(move || Registry::open(config))
        .await?
        .with_context(|| format!("cannot open the registry in {}", data_dir.display()))?;
    // Its own key; a child learns its ancestors at its parent's welcome.
    registry.place_in_hierarchy(own, Vec::new());
    let registry = Arc::new(registry);
    let handle = courier_registry::serve(registry.clone(), server)
        .await
        .with_context(|| format!("cannot serve on {}", args.listen))?;
    print_banner(&handle, &args, (operator, made));
    let link = match parent {
        Some(parent) => {
            println!(
                "Child of {} (its operator allows this registry with `courier registry \
                 children allow {own} --name NAME`).",
                parent.addr
            );
            Some(courier_registry::follow_parent(registry, parent))
        }
        None => None,
    };
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("stopping: closing connections and flushing leases");
    if let Some(link) = link {
        link.stop();
    }
    handle.shutdown().await;
    Ok(())
}

/// The link to the parent `--parent` names, with this registry's own key.
fn parent_config(args: &ServeArgs) -> anyhow::Result<Option<courier_registry::ParentConfig>> {
    let (Some(addr), Some(pin)) = (args.parent.parent, &args.parent.parent_pin) else {
        return Ok(None);
    };
    let pin = pin.parse().with_context(|| format!("--parent-pin {pin}"))?;
    let path = args.data_dir.join(REGISTRY_KEY_FILE);
    let key = load_key(&path).with_context(|| format!("the registry key {}", path.display()))?;
    Ok(Some(courier_registry::ParentConfig {
        addr,
        pin,
        key,
        report_every: args.parent.report_every,
        refresh_every: courier_registry::DEFAULT_REFRESH_EVERY,
        fetch_deadline: courier_registry::DEFAULT_FETCH_DEADLINE,
        prefetch: args.parent.prefetch,
    }))
}

/// What a started registry prints: where it listens, its pin, its operator key, and the
/// line that points clients and vendors at it.
pub(super) fn print_banner(
    handle: &courier_registry::RegistryHandle,
    args: &ServeArgs,
    (operator, made): (VendorKey, bool),
) {
    let (live, ..) = handle.registry().counts();
    println!("courier registry listening on {}", handle.local_addr());
    println!("  data dir: {}", args.data_dir.display());
    println!("  pin:      {}", handle.pin());
    println!(
        "  operator: {operator} ({}{})",
        args.data_dir.join(OPERATOR_KEY_FILE).display(),
        if made { ", made now" } else { "" }
    );
    if let Some(own) = handle.registry().above().first() {
        println!("  registry: {own} (its key as a child or a parent of registries)");
    }
    println!("  leases:   {live} live after start");
    super::ops::print_banner(handle, &args.ops);
    println!();
    println!("Point clients and vendors at it:");
    println!(
        "  export COURIER_REGISTRY={} COURIER_REGISTRY_PIN={}",
        handle.local_addr(),
        handle.pin()
    );
    println!();
}

fn grant(args: GrantArgs) -> anyhow::Result<()> {
    let key: VendorKey = args.key.parse().context("vendor key")?;
    key.verifying_key().context("vendor key")?;
    let registry = open_offline(&args.data_dir, "grant")?;
    registry.grant(&args.name, &key)?;
    println!("granted {} to {key}", args.name);
    Ok(())
}

fn revoke(args: OperatorRevokeArgs) -> anyhow::Result<()> {
    let key: VendorKey = args.key.parse().context("vendor key")?;
    let registry = open_offline(&args.data_dir, "revoke")?;
    if registry.revoke(&key)? {
        println!("revoked {key}: its proxies no longer match and it cannot register");
    } else {
        println!("{key} was already revoked");
    }
    Ok(())
}

fn rotate_identity(args: RotateIdentityArgs) -> anyhow::Result<()> {
    // Held open only to be sure the registry is stopped: the overlap counts from now.
    let registry = open_offline(&args.data_dir, "rotate-identity")?;
    let rotation = courier_transport::Identity::rotate(&args.data_dir, args.overlap)
        .with_context(|| format!("cannot rotate the identity in {}", args.data_dir.display()))?;
    drop(registry);
    let ends = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(rotation.overlap_ends),
    );
    println!("rotated the registry's TLS identity (takes effect at the next start)");
    println!("  old pin: {}", rotation.from);
    println!("  new pin: {}", rotation.to);
    println!("  overlap: until {ends}; clients and vendors pinned to the old key move on contact");
    Ok(())
}

/// The public key of a key kept in the data directory (`file`: the operator's, or the
/// registry's own), made (file mode 0600) on first start; and whether it was made now.
pub(super) fn data_key(
    data_dir: &std::path::Path,
    file: &str,
    what: &str,
) -> anyhow::Result<(VendorKey, bool)> {
    let path = data_dir.join(file);
    if path.exists() {
        let key = load_key(&path).with_context(|| format!("the {what} {}", path.display()))?;
        return Ok((public_key(&key), false));
    }
    let key = generate_key();
    save_key(&path, &key, false)
        .with_context(|| format!("writing the {what} {}", path.display()))?;
    Ok((public_key(&key), true))
}

/// Opens a stopped registry for an operator's command (`what`).
fn open_offline(data_dir: &std::path::Path, what: &str) -> anyhow::Result<OfflineRegistry> {
    OfflineRegistry::open(RegistryConfig::new(data_dir)).with_context(|| {
        format!(
            "cannot open the registry in {} (is it running? {what} while it is stopped)",
            data_dir.display()
        )
    })
}
