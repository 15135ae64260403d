//! The operators' side of `courier registry serve` (the HTTP listener with `/metrics` and
//! the dashboard, webhooks), and `courier admin token`.

use crate::cli::{OperatorArgs, OpsArgs, TokenArgs};
use anyhow::Context;
use courier_provider::load_key;
use courier_registry::{DashboardToken, HttpConfig, NotifyConfig, RegistryHandle, ServerConfig};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Sets the HTTP listener and the webhooks the flags ask for.
pub fn configure(args: &OpsArgs, server: &mut ServerConfig) {
    server.http = args.http.map(HttpConfig::new);
    if !args.webhooks.is_empty() {
        let mut n = NotifyConfig::new(args.webhooks.clone());
        n.on = args.webhook_on.clone();
        n.watch_services = args.watch_services.clone();
        n.failure_spike = args.failure_spike.count;
        n.failure_window = args.failure_spike.window;
        n.refusal_rate = args.refusal_rate;
        server.notify = Some(n);
    }
}

/// The lines of the start banner about the HTTP listener and the webhooks.
pub fn print_banner(handle: &RegistryHandle, args: &OpsArgs) {
    if let (Some(addr), Some(token)) = (handle.http_addr(), handle.dashboard_token()) {
        println!("  metrics:  http://{addr}/metrics");
        println!("  dashboard: http://{addr}/?token={token}");
        println!(
            "            (this token lasts until the registry stops; `courier admin token` signs others)"
        );
    }
    if !args.webhooks.is_empty() {
        let targets: Vec<String> = args.webhooks.iter().map(ToString::to_string).collect();
        let on: Vec<&str> = args.webhook_on.iter().map(|k| k.name()).collect();
        println!("  webhooks: {} ({})", targets.join(", "), on.join(", "));
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
    // Bound to the registry's current key: the given pin, as moved by a rotation seen.
    let pin = operator.registry.pins()?.follow(operator.registry.pin()?);
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
