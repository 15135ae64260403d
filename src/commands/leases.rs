//! `courier leases`: the lease table, or a live stream of events with `--watch`.

use crate::cli::LeasesArgs;
use crate::output::{millis, short, table};
use courier_protocol::{Event, LeaseInfo};

fn lease_json(l: &LeaseInfo) -> serde_json::Value {
    serde_json::json!({
        "lease": l.lease.to_string(),
        "name": l.name,
        "version": l.version,
        "vendor": l.vendor.to_string(),
        "interfaces": l.interfaces,
        "component": l.component.to_string(),
        "endpoints": l.endpoints,
        "remaining_ms": l.remaining_ms,
        "ttl_ms": l.ttl_ms,
        "renewals": l.renewals,
        "in_grace": l.in_grace,
    })
}

fn event_json(e: &Event) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq,
        "kind": e.kind.to_string(),
        "lease": e.lease.to_string(),
        "name": e.name,
        "interfaces": e.interfaces,
        "at_ms": e.at_ms,
    })
}

pub async fn run(args: LeasesArgs) -> anyhow::Result<()> {
    let client = args.registry.connect("courier-cli/leases").await?;
    if args.watch {
        return watch(&client, &args).await;
    }
    let leases = client.leases().await?;
    client.close();
    if args.json {
        let rows: Vec<_> = leases.iter().map(lease_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if leases.is_empty() {
        println!("no live leases");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.version.clone(),
                l.interfaces.join(","),
                short(&l.vendor.to_string(), 20),
                if l.in_grace {
                    format!("{} (grace)", millis(l.remaining_ms))
                } else {
                    millis(l.remaining_ms)
                },
                millis(l.ttl_ms),
                l.renewals.to_string(),
                l.lease.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "NAME",
                "VERSION",
                "INTERFACES",
                "VENDOR",
                "LEFT",
                "TTL",
                "RENEWALS",
                "LEASE"
            ],
            &rows
        )
    );
    Ok(())
}

async fn watch(
    client: &courier_transport::RegistryClient,
    args: &LeasesArgs,
) -> anyhow::Result<()> {
    // Without --from, start after the events already kept: u64::MAX asks for "only new".
    let from = args.from.unwrap_or(u64::MAX);
    let mut stream = client.subscribe(args.interface.clone(), from).await?;
    if !args.json {
        eprintln!("watching registry events (Ctrl-C to stop)");
    }
    loop {
        let batch = tokio::select! {
            b = stream.next() => b?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(batch) = batch else {
            anyhow::bail!("the registry closed the event stream");
        };
        if let Some((from, to)) = batch.missed {
            if args.json {
                println!("{}", serde_json::json!({"missed": [from, to]}));
            } else {
                println!("!! missed events {from}..{to} (no longer kept by the registry)");
            }
        }
        for e in &batch.events {
            if args.json {
                println!("{}", event_json(e));
            } else {
                println!(
                    "#{:<6} {:<10} {:<20} {}  lease {}",
                    e.seq,
                    e.kind.to_string(),
                    e.name,
                    e.interfaces.join(","),
                    e.lease
                );
            }
        }
    }
}
