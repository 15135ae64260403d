//! `courier history`: the service history a registry keeps for a client.

use super::client::{client_key, connect_as_client};
use crate::cli::HistoryArgs;
use crate::output::{short, table};
use anyhow::Context;
use courier_protocol::VendorKey;

pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    // As the operator, any client's; as this client, its own.
    let (client, client_id) = match &args.operator_key {
        Some(operator_key) => {
            let operator = crate::cli::OperatorArgs {
                operator_key: operator_key.clone(),
                registry: args.registry.clone(),
            };
            let (client, _) = super::operator::connect_as_operator(&operator).await?;
            let id = args
                .client
                .clone()
                .context("whose history? name the client's key")?;
            (client, id)
        }
        None => {
            let key = client_key(&args.state_dir)?.with_context(|| {
                format!(
                    "no client key in {}: run courier client init (or pass --operator-key)",
                    args.state_dir.display()
                )
            })?;
            let id = args
                .client
                .clone()
                .unwrap_or_else(|| VendorKey::of(&key).to_string());
            (connect_as_client(&args.registry, &key).await?, id)
        }
    };
    let entries = client.history(&client_id, args.limit).await?;
    client.close();
    if args.json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "at_ms": e.at_ms,
                    "client": e.outcome.client,
                    "name": e.outcome.name,
                    "version": e.outcome.version,
                    "component": e.outcome.component.to_string(),
                    "function": e.outcome.function,
                    "ok": e.outcome.ok,
                    "detail": e.outcome.detail,
                    "duration_us": e.outcome.duration_us,
                    "facts": e.outcome.facts,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("no history for client {client_id}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at_ms),
                )
                .to_string(),
                e.outcome.name.clone(),
                e.outcome.version.clone(),
                e.outcome.function.clone(),
                if e.outcome.ok { "ok" } else { "failed" }.to_string(),
                format!("{:.1}ms", e.outcome.duration_us as f64 / 1000.0),
                short(&e.outcome.detail, 60),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "AT (UTC)", "NAME", "VERSION", "FUNCTION", "RESULT", "TIME", "DETAIL"
            ],
            &rows
        )
    );
    Ok(())
}
