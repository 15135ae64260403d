//! The operators' side of `courier registry serve` (the HTTP listener with `/metrics` and
//! the dashboard), and `courier admin token`.

use crate::cli::{OperatorArgs, OpsArgs, TokenArgs};
use anyhow::Context;
use courier_provider::load_key;
use courier_registry::{DashboardToken, HttpConfig, RegistryHandle, ServerConfig};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Sets the HTTP listener the flags ask for.
pub fn configure(args: &OpsArgs, server: &mut ServerConfig) {
    server.http = args.http.map(HttpConfig::new);
}

/// The lines of the start banner about the HTTP listener.
pub fn print_banner(handle: &RegistryHandle) {
    if let (Some(addr), Some(token)) = (handle.http_addr(), handle.dashboard_token()) {
        println!("  metrics:  http://{addr}/metrics");
        println!("  dashboard: http://{addr}/?token={token}");
        println!(
            "            (this token lasts until the registry stops; `courier admin token` signs others)"
        );
    }
}

/// `courier admin token`: a dashboard token signed by the operator key, bound to the
/// registry's pin, on stdout (how to use it on stderr).
pub fn token(args: &TokenArgs, operator: &OperatorArgs) -> anyhow::Result<()> {
    let key = load_key(&operator.operator_key).with_context(|| {
        format!(
            "reading the operator key {} (--operator-key)",
            operator.operator_key.display()
        )
    })?;
    let pin = operator.registry.pin()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let not_after = now.saturating_add(args.valid);
    let not_after_ms = u64::try_from(not_after.as_millis()).unwrap_or(u64::MAX);
    let token = DashboardToken::sign(&key, &pin, not_after_ms);
    println!("{token}");
    eprintln!(
        "valid for {}; open http://{}/?token={token} or send `Authorization: Bearer <token>`",
        humantime::format_duration(args.valid),
        args.http
    );
    Ok(())
}
