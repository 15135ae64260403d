//! `courier history`: the service history a registry keeps for a client.

use crate::cli::HistoryArgs;
use crate::output::{short, table};

/// The default client identifier: this host's name.
pub fn default_client_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "courier-client".to_string())
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let client_id = args.client.clone().unwrap_or_else(default_client_id);
    let client = args.registry.connect("courier-cli/history").await?;
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
