//! `courier rollout`: an operator starts, watches, pauses, resumes and aborts staged
//! rollouts on a running registry.

use super::client::at;
use super::operator::connect_as_operator;
use crate::cli::{RolloutArgs, RolloutCommand, RolloutStartArgs};
use crate::output::table;
use courier_protocol::{AdminAction, RolloutSpec, RolloutStatus, WaveSelector};

pub async fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let (registry, _) = connect_as_operator(&args.operator).await?;
    let action = match args.command {
        RolloutCommand::Start(start) => AdminAction::StartRollout(spec(start)),
        RolloutCommand::Pause { name } => AdminAction::PauseRollout { name },
        RolloutCommand::Resume { name } => AdminAction::ResumeRollout { name },
        RolloutCommand::Abort { name } => AdminAction::AbortRollout { name },
        RolloutCommand::Staged { json } => {
            let staged = registry.staged().await?;
            let rollouts = registry.rollouts().await?;
            registry.close();
            return print_staged(&staged, &rollouts, json);
        }
        RolloutCommand::Status { name, json } => {
            let mut all = registry.rollouts().await?;
            registry.close();
            all.retain(|r| name.as_ref().is_none_or(|n| *n == r.spec.name));
            return print_status(&all, json);
        }
    };
    let entry = registry.admin(action).await?;
    let name = match &entry.action {
        AdminAction::StartRollout(s) => s.name.clone(),
        AdminAction::PauseRollout { name }
        | AdminAction::ResumeRollout { name }
        | AdminAction::AbortRollout { name } => name.clone(),
        _ => String::new(),
    };
    println!("done (audit #{}): {}", entry.seq, entry.action);
    let all = registry.rollouts().await?;
    registry.close();
    if let Some(r) = all.iter().find(|r| r.spec.name == name) {
        print_status(std::slice::from_ref(r), false)?;
    }
    Ok(())
}

fn spec(args: RolloutStartArgs) -> RolloutSpec {
    let (name, version) = args.version;
    RolloutSpec {
        name,
        version: version.to_string(),
        waves: args.waves,
        delay_ms: u64::try_from(args.delay.as_millis()).unwrap_or(u64::MAX),
        max_failure_ppm: args.max_failures,
        min_reports: args.min_reports,
    }
}

fn percent(ppm: u32) -> String {
    if ppm == 0 {
        "0%".into()
    } else {
        WaveSelector::Share { ppm }.to_string()
    }
}

fn print_status(all: &[RolloutStatus], json: bool) -> anyhow::Result<()> {
    if json {
        let rows: Vec<_> = all.iter().map(status_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no rollouts");
        return Ok(());
    }
    for r in all {
        println!(
            "rollout {}: {}@{} by {}: {}",
            r.id, r.spec.name, r.spec.version, r.vendor, r.state
        );
        println!(
            "  started {}, {} between waves, halts past {} failures, {} report(s) per wave",
            at(r.started_at_ms),
            humantime::format_duration(std::time::Duration::from_millis(r.spec.delay_ms)),
            percent(r.spec.max_failure_ppm),
            r.spec.min_reports,
        );
        if let Some(next) = r.next_at_ms {
            println!("  next wave due {}", at(next));
        }
        let rows: Vec<Vec<String>> = r
            .waves
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let unknown = w.clients.saturating_sub(w.succeeded + w.failed);
                vec![
                    (i + 1).to_string(),
                    w.selector.to_string(),
                    w.opened_at_ms.map_or("-".into(), at),
                    w.clients.to_string(),
                    w.succeeded.to_string(),
                    w.failed.to_string(),
                    unknown.to_string(),
                    w.undone.to_string(),
                    w.undo_failed.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "WAVE",
                    "TAKES",
                    "OPENED (UTC)",
                    "CLIENTS",
                    "OK",
                    "FAILED",
                    "NO REPORT",
                    "UNDONE",
                    "UNDO FAILED",
                ],
                &rows
            )
        );
    }
    Ok(())
}

fn status_json(r: &RolloutStatus) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "name": r.spec.name,
        "version": r.spec.version,
        "vendor": r.vendor.to_string(),
        "lease": r.lease.to_string(),
        "state": match &r.state {
            courier_protocol::RolloutState::Halted { .. } => "halted".to_string(),
            s => s.to_string(),
        },
        "halted_because": match &r.state {
            courier_protocol::RolloutState::Halted { reason } => Some(reason.clone()),
            _ => None,
        },
        "started_at_ms": r.started_at_ms,
        "next_at_ms": r.next_at_ms,
        "delay_ms": r.spec.delay_ms,
        "max_failures": percent(r.spec.max_failure_ppm),
        "min_reports": r.spec.min_reports,
        "waves": r.waves.iter().map(|w| serde_json::json!({
            "selector": w.selector.to_string(),
            "opened_at_ms": w.opened_at_ms,
            "clients": w.clients,
            "succeeded": w.succeeded,
            "failed": w.failed,
            "undone": w.undone,
            "undo_failed": w.undo_failed,
        })).collect::<Vec<_>>(),
    })
}

fn print_staged(
    staged: &[courier_protocol::LeaseInfo],
    rollouts: &[RolloutStatus],
    json: bool,
) -> anyhow::Result<()> {
    // The latest rollout of each staged lease, if any.
    let rollout_of = |l: &courier_protocol::LeaseInfo| rollouts.iter().find(|r| r.lease == l.lease);
    if json {
        let rows: Vec<_> = staged
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name,
                    "version": l.version,
                    "vendor": l.vendor.to_string(),
                    "lease": l.lease.to_string(),
                    "remaining_ms": l.remaining_ms,
                    "rollout": rollout_of(l).map(|r| r.id),
                    "state": rollout_of(l).map(|r| r.state.to_string()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if staged.is_empty() {
        println!("no staged registrations");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = staged
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.version.clone(),
                crate::output::short(&l.vendor.to_string(), 16),
                crate::output::millis(l.remaining_ms),
                rollout_of(l).map_or("- (courier rollout start)".into(), |r| {
                    format!("{}: {}", r.id, r.state)
                }),
                l.lease.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["SERVICE", "VERSION", "VENDOR", "LEFT", "ROLLOUT", "LEASE"],
            &rows
        )
    );
    Ok(())
}
