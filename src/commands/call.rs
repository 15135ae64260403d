//! `courier call`: find a proxy, verify it, run it once in the sandbox under the client's
//! policy (file and flags), print the answer.

use super::console::CliConsole;
use crate::cli::{CallArgs, ClientRunArgs};
use anyhow::Context;
use courier_client::{
    Answer, CallError, CallSpec, Client, ClientConfig, DiskCacheConfig, FreshnessRefusal,
    PrerequisiteError, RejectReason, ReportMode,
};
use std::sync::Arc;

pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    let spec: CallSpec = args.expression.parse().context("call expression")?;
    let (client, console) = client_for(&args.client, "courier-cli/call").await?;
    if client.key().is_some() {
        undo_first(&client).await;
    }
    let attributes = args
        .attributes
        .iter()
        .map(|a| super::parse_constraint(a))
        .collect();
    let result = client.call_spec(&spec, attributes).await;
    console.finish();
    if let Ok(report) = &result {
        for installed in &report.installed {
            eprintln!(
                "installed {} with {} first: {}",
                installed.requirement, installed.by, installed.detail
            );
        }
    }
    client.registry().close();
    if let Err(e) = &result
        && let Some((name, offered)) = e.rejections().iter().find_map(|r| match &r.reason {
            RejectReason::Rollback { offered, .. }
            | RejectReason::Freshness(FreshnessRefusal::Outdated { offered, .. }) => {
                Some((&r.name, offered))
            }
            _ => None,
        })
    {
        anyhow::bail!(
            "{e} (to run the older version deliberately: --pin-version {name}@{offered})"
        );
    }
    if let Err(e @ CallError::Prerequisites { error, .. }) = &result
        && matches!(**error, PrerequisiteError::Declined { .. })
    {
        anyhow::bail!("{e} (to approve the install: --yes, or run in a terminal to be asked)");
    }
    let report = result?;
    // The operator's record was shown as it came (the console); only what did not fit is
    // told now.
    if report.logs.dropped_transcript > 0 {
        eprintln!(
            "[operator] {} more lines not shown (the transcript is full)",
            report.logs.dropped_transcript
        );
    }
    for rejected in &report.rejected {
        eprintln!("skipped {rejected}");
    }
    if args.timings {
        eprintln!(
            "ran {} {} ({}) from lease {}",
            report.chosen.name, report.chosen.version, report.chosen.component, report.chosen.lease
        );
        eprintln!("{}", report.timings);
    }
    match &report.answer {
        Answer::Ok(text) => {
            println!("{text}");
            Ok(())
        }
        Answer::ProxyError(text) => {
            println!("{text}");
            anyhow::bail!("the proxy answered with an error: {text}")
        }
    }
}

/// A client set up as the command line says (policy file and flags, trust, the state
/// directory, its compiled-code directory, the registry and its pins), with the console
/// that shows its operator's record.
pub async fn client_for(
    args: &ClientRunArgs,
    agent: &str,
) -> anyhow::Result<(Client, Arc<CliConsole>)> {
    let setup = super::policy::for_call(args)?;
    let mut config = ClientConfig::new(setup.trust);
    // With a client key, outcomes go to this client's history at the registry.
    config.key = super::client::client_key(&args.state_dir)?;
    config.report_detail = setup.report_answer;
    config.policy = setup.policy;
    let console = Arc::new(CliConsole::new());
    config.sandbox.console = console.clone();
    config.report = ReportMode::Inline;
    // One call per process: a watched lookup cache would cost a subscription, save nothing.
    config.lookup_ttl = std::time::Duration::ZERO;
    config.state_dir = Some(args.state_dir.clone());
    // Every call is a new process: keep the code it compiles for the next one, in the state
    // directory, authenticated with a key derived from the client's (or one made for it).
    match DiskCacheConfig::in_state_dir(&args.state_dir, config.key.as_ref()) {
        Ok(disk) => config.sandbox.disk_cache = Some(disk),
        Err(e) => tracing::warn!("compiled code is not kept between calls: {e}"),
    }
    config.pins = args.pins.iter().cloned().collect();
    config.registry_pins = args.registry.pins()?;
    config.other_nodes = args.registry.other_nodes().await?;
    let registry = args
        .registry
        .connect_with(agent, &config.registry_pins)
        .await?;
    let client = Client::new(registry, config).context("cannot set up the client")?;
    Ok((client, console))
}

/// The client's next contact runs the undos the registry asks of it (versions it ran from
/// rollouts that halted or were aborted), each checked like any candidate, and goes back
/// to the version before, before the call; what each did is printed and reported back.
async fn undo_first(client: &Client) {
    match client.run_undos().await {
        Ok(done) => {
            for u in done {
                let d = &u.directive;
                let what = format!("{}@{} (rollout {})", d.name, d.version, d.rollout);
                let back = u
                    .back_to
                    .as_ref()
                    .map_or(String::new(), |v| format!("; back to {v}"));
                match &u.result {
                    Ok(Some(r)) if u.ok() => eprintln!("undid {what}: {}{back}", r.answer.text()),
                    Ok(Some(r)) => eprintln!("undo of {what} failed: {}{back}", r.answer.text()),
                    Ok(None) => eprintln!("{what} was withdrawn{back}"),
                    Err(e) => eprintln!("undo of {what} failed: {e}{back}"),
                }
                if let Err(e) = &u.reported {
                    eprintln!("  (the registry did not take the report: {e})");
                }
            }
        }
        Err(e) => tracing::warn!("could not ask the registry what to undo: {e}"),
    }
}
