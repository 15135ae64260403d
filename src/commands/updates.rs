//! `courier updates check|apply`: what this client installed to meet proxies'
//! prerequisites (its ledger), the newer versions the registry offers it, and installing
//! them through the same checked and confirmed path as a first install.

use super::call::client_for;
use crate::cli::{UpdatesAction, UpdatesApplyArgs, UpdatesArgs, UpdatesCheckArgs};
use courier_client::{LedgerEntry, UpdateCheck, UpdateError};

pub async fn run(args: UpdatesArgs) -> anyhow::Result<()> {
    match args.action {
        UpdatesAction::Check(args) => check(args).await,
        UpdatesAction::Apply(args) => apply(args).await,
    }
}

async fn check(args: UpdatesCheckArgs) -> anyhow::Result<()> {
    let (client, console) = client_for(&args.client, "courier-cli/updates").await?;
    let installed = client.installed();
    let found = client.check_updates().await;
    console.finish();
    client.registry().close();
    let found = found?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json(&installed, &found))?
        );
        return Ok(());
    }
    if installed.is_empty() {
        println!(
            "nothing installed (the ledger in {} is empty)",
            args.client.state_dir.display()
        );
        return Ok(());
    }
    println!(
        "{:<28} {:<10} {:<10} {:<24} REQUIRED BY",
        "INSTALLED", "VERSION", "OFFERED", "INSTALLER"
    );
    for entry in &installed {
        match entry {
            LedgerEntry::Service {
                provides,
                installer,
                version,
                required_by,
                ..
            } => {
                let offered = found
                    .offers
                    .iter()
                    .find(|o| &o.provides == provides)
                    .map_or("-".to_string(), |o| o.offered.to_string());
                println!(
                    "{provides:<28} {:<10} {offered:<10} {installer:<24} {required_by}",
                    version.to_string()
                );
            }
            LedgerEntry::Package {
                name, required_by, ..
            } => println!(
                "{:<28} {:<10} {:<10} {:<24} {required_by}",
                format!("package {name}"),
                "-",
                "-",
                "install-package"
            ),
        }
    }
    for skipped in &found.skipped {
        eprintln!("skipped {skipped}");
    }
    match found.offers.len() {
        0 => println!("everything is up to date"),
        n => println!("{n} update(s): courier updates apply"),
    }
    Ok(())
}

async fn apply(args: UpdatesApplyArgs) -> anyhow::Result<()> {
    let (client, console) = client_for(&args.client, "courier-cli/updates").await?;
    let found = client.check_updates().await;
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            client.registry().close();
            return Err(e.into());
        }
    };
    let offers: Vec<_> = found
        .offers
        .into_iter()
        .filter(|o| args.only.is_empty() || args.only.contains(&o.provides))
        .collect();
    if offers.is_empty() {
        client.registry().close();
        println!("everything is up to date");
        return Ok(());
    }
    let applied = client.apply_updates(offers).await;
    console.finish();
    client.registry().close();
    let mut failed = 0;
    for a in &applied {
        let o = &a.offer;
        for p in &a.prerequisites {
            println!(
                "  installed {} with {} first: {}",
                p.requirement, p.by, p.detail
            );
        }
        match &a.result {
            Ok(line) => println!(
                "updated {} {} -> {}: {line}",
                o.provides, o.installed, o.offered
            ),
            Err(e @ UpdateError::Ledger(_)) => {
                failed += 1;
                println!("{} {} -> {}: {e}", o.provides, o.installed, o.offered);
            }
            Err(e) => {
                failed += 1;
                println!(
                    "{} stays at {}: the update to {} failed: {e}",
                    o.provides, o.installed, o.offered
                );
            }
        }
        for u in &a.unwound {
            println!("  undone {u}");
        }
    }
    anyhow::ensure!(failed == 0, "{failed} update(s) failed");
    Ok(())
}

fn json(installed: &[LedgerEntry], found: &UpdateCheck) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = installed
        .iter()
        .map(|entry| match entry {
            LedgerEntry::Service {
                provides,
                installer,
                version,
                vendor,
                requirement,
                required_by,
                installed_at_ms,
            } => serde_json::json!({
                "requirement": requirement,
                "provides": provides,
                "installer": installer,
                "version": version.to_string(),
                "vendor": vendor.to_string(),
                "required_by": required_by,
                "installed_at_ms": installed_at_ms,
                "offered": found.offers.iter().find(|o| &o.provides == provides)
                    .map(|o| o.offered.to_string()),
            }),
            LedgerEntry::Package {
                name,
                required_by,
                installed_at_ms,
            } => serde_json::json!({
                "package": name,
                "required_by": required_by,
                "installed_at_ms": installed_at_ms,
            }),
        })
        .collect();
    serde_json::json!({ "installed": rows, "skipped": found.skipped.iter().map(ToString::to_string).collect::<Vec<_>>() })
}
