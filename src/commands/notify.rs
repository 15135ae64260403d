//! `courier notify`: registers interest in services appearing, changing or going (or in
//! recommendations), keeps that registration's lease renewed, and prints what arrives.
//! Ctrl-C cancels the registration.

use super::client::{client_key, connect_as_client};
use super::{parse_constraint, split_interface};
use crate::cli::NotifyArgs;
use anyhow::Context;
use courier_protocol::{Interest, InterestGrant, Notification, Transition};
use courier_provider::load_key;
use courier_transport::RegistryClient;
use std::time::Duration;

fn interest(args: &NotifyArgs) -> anyhow::Result<Interest> {
    let (interface, version_req) = match &args.interface {
        Some(i) => {
            let (name, req) = split_interface(i)?;
            (Some(name), req)
        }
        None => (None, None),
    };
    let transitions: Vec<Transition> = args.transitions.iter().map(|&t| t.into()).collect();
    Ok(Interest {
        interface,
        version_req,
        attributes: args
            .attributes
            .iter()
            .map(|a| parse_constraint(a))
            .collect(),
        transitions,
        recommendations: args.recommendations,
        ttl_ms: args.ttl.as_millis() as u64,
    })
}

async fn connect(args: &NotifyArgs) -> anyhow::Result<RegistryClient> {
    let key = match &args.operator_key {
        Some(path) => load_key(path)
            .with_context(|| format!("reading the operator key {}", path.display()))?,
        None => client_key(&args.state_dir)?.with_context(|| {
            format!(
                "registrations of interest are made under a key: run courier client init \
                 --state-dir {} (or pass --operator-key)",
                args.state_dir.display()
            )
        })?,
    };
    connect_as_client(&args.registry, &key).await
}

fn notification_json(n: &Notification) -> serde_json::Value {
    serde_json::json!({
        "seq": n.seq,
        "transition": n.transition.to_string(),
        "recommended": n.recommended,
        "lease": n.lease.to_string(),
        "name": n.name,
        "interfaces": n.interfaces,
        "at_ms": n.at_ms,
    })
}

fn print(n: &Notification, json: bool) {
    if json {
        println!("{}", notification_json(n));
    } else {
        let why = if n.recommended { "  (recommended)" } else { "" };
        println!(
            "#{:<6} {:<9} {:<20} {}  lease {}{why}",
            n.seq,
            n.transition.to_string(),
            n.name,
            n.interfaces.join(","),
            n.lease
        );
    }
}

pub async fn run(args: NotifyArgs) -> anyhow::Result<()> {
    let interest = interest(&args)?;
    let registry = connect(&args).await?;
    let grant = registry.register_interest(interest).await?;
    if !args.json {
        eprintln!(
            "registered interest {} for {} (renewed while this runs; Ctrl-C to stop)",
            grant.id,
            humantime::format_duration(Duration::from_millis(grant.ttl_ms))
        );
    }
    let result = listen(&registry, &grant, &args).await;
    // Cancelling is a courtesy: the registration lapses anyway when no longer renewed.
    let _ = registry.cancel_interest(grant.id).await;
    registry.close();
    result
}

async fn listen(
    registry: &RegistryClient,
    grant: &InterestGrant,
    args: &NotifyArgs,
) -> anyhow::Result<()> {
    let mut listener = registry
        .listen(grant.id, args.from.unwrap_or(u64::MAX))
        .await?;
    let mut ttl_ms = grant.ttl_ms;
    let mut renew = tokio::time::interval(Duration::from_millis((ttl_ms / 2).max(100)));
    renew.tick().await;
    let mut seen = 0u64;
    loop {
        tokio::select! {
            batch = listener.next() => {
                let Some(batch) = batch? else {
                    anyhow::bail!("the registry ended the registration");
                };
                crate::output::print_missed(batch.missed, args.json, "notifications");
                for n in &batch.notifications {
                    print(n, args.json);
                    seen += 1;
                    if args.count.is_some_and(|c| seen >= c) {
                        return Ok(());
                    }
                }
            }
            _ = renew.tick() => {
                let granted = registry
                    .renew_interest(grant.id, args.ttl.as_millis() as u64)
                    .await
                    .context("renewing the registration of interest")?;
                if granted.ttl_ms != ttl_ms {
                    ttl_ms = granted.ttl_ms;
                    renew = tokio::time::interval(Duration::from_millis((ttl_ms / 2).max(100)));
                    renew.tick().await;
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
