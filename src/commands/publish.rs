//! `courier publish`: sign a proxy component, register it, and keep its lease until Ctrl-C.

use crate::cli::PublishArgs;
use anyhow::Context;
use courier_protocol::SpkiPin;
use courier_provider::{
    BundleBuilder, KeeperConfig, LeaseKeeper, LeaseState, load_key, public_key,
};

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let key = load_key(&args.key).with_context(|| {
        format!(
            "reading vendor key {} (create one with: courier keys generate)",
            args.key.display()
        )
    })?;
    let component = std::fs::read(&args.component)
        .with_context(|| format!("reading component {}", args.component.display()))?;
    let provider_pin: SpkiPin = args.provider_pin.parse().context("--provider-pin")?;
    let mut builder = BundleBuilder::new(component)
        .name(&args.name)
        .version(&args.version)
        .provider_pin(provider_pin)
        .validity(args.validity);
    for e in &args.endpoints {
        builder = builder.endpoint(e);
    }
    for (k, v) in &args.attributes {
        builder = builder.attribute(k, v);
    }
    let bundle = builder
        .sign(&key)
        .with_context(|| format!("cannot build a bundle from {}", args.component.display()))?;
    let manifest = bundle
        .verify()
        .context("the freshly signed bundle does not verify")?;
    let registry_pin = args.registry.pin()?;
    let addr = courier_transport::resolve(&args.registry.addr)
        .await
        .with_context(|| format!("registry address {}", args.registry.addr))?;

    println!(
        "publishing {} {} by {}",
        manifest.name,
        manifest.version,
        public_key(&key)
    );
    for e in &manifest.exports {
        println!("  exports {} ({})", e.interface, e.functions.join(", "));
    }
    println!(
        "  component {} ({} bytes)",
        manifest.component_hash, manifest.component_size
    );
    let other_nodes = args.registry.other_nodes().await?;
    let config = KeeperConfig {
        registry_pins: args.registry.pins()?,
        other_nodes,
        staged: args.staged,
        ..KeeperConfig::new(args.ttl)
    };
    let keeper = LeaseKeeper::start_with(addr, registry_pin, key, bundle, config);
    let mut state = keeper.state();
    let mut last_lease = None;
    loop {
        let current = state.borrow_and_update().clone();
        match &current {
            LeaseState::Active {
                lease,
                ttl,
                renewals,
                ..
            } => {
                if last_lease != Some(*lease) {
                    println!(
                        "registered{}: lease {lease}, granted {}s; renewing until Ctrl-C",
                        if args.staged {
                            " staged (no client sees it until a rollout)"
                        } else {
                            ""
                        },
                        ttl.as_secs_f64()
                    );
                    last_lease = Some(*lease);
                } else {
                    tracing::info!("renewed lease {lease} ({renewals} renewals)");
                }
            }
            LeaseState::Retrying { error, attempt, .. } => {
                eprintln!("registry unreachable or refused (attempt {attempt}): {error}; retrying");
            }
            LeaseState::Failed { error } => {
                anyhow::bail!("registration refused: {error}");
            }
            LeaseState::Registering | LeaseState::Cancelled => {}
        }
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the lease keeper stopped unexpectedly");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("cancelling the lease");
    match keeper.shutdown().await {
        Ok(Some(lease)) => println!("cancelled lease {lease}"),
        Ok(None) => println!("stopped (no lease was held)"),
        Err(e) => anyhow::bail!("cancelling the lease failed: {e}"),
    }
    Ok(())
}
