//! The grammar of the operators' side of a registry: its HTTP listener (`/metrics`, the
//! dashboard), its webhooks, and dashboard tokens.

use super::parse_duration;
use clap::Args;
use courier_registry::{AlertKind, WebhookTarget};
use std::net::SocketAddr;
use std::time::Duration;

/// `courier registry serve`'s HTTP listener and webhooks.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Serve /metrics (Prometheus) and the dashboard over HTTP on this address; without a
    /// value, 127.0.0.1:7880. Off unless given. Keep it on loopback, or behind a proxy.
    #[arg(long = "http", value_name = "ADDR", num_args = 0..=1,
          default_missing_value = "127.0.0.1:7880")]
    pub http: Option<SocketAddr>,
    /// POST alerts as JSON to this http(s) URL; repeat for several.
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<WebhookTarget>,
    /// What webhooks are told of, comma-separated: lease-lost, revocation, failure-spike,
    /// refusals, rollout-halted.
    #[arg(
        long = "webhook-on",
        value_name = "ALERTS",
        value_delimiter = ',',
        default_value = "lease-lost,revocation,failure-spike,refusals,rollout-halted"
    )]
    pub webhook_on: Vec<AlertKind>,
    /// A service whose lost leases and failure spikes are alerted; repeat for several
    /// (default: every service).
    #[arg(long = "watch-service", value_name = "NAME")]
    pub watch_services: Vec<String>,
    /// Failed outcomes of one service within a window that make a spike.
    #[arg(long, value_name = "COUNT/WINDOW", default_value = "5/60s", value_parser = parse_spike)]
    pub failure_spike: FailureSpike,
    /// Admission refusals per second that alert (once, until the rate falls below).
    #[arg(long, value_name = "PER_SECOND", default_value_t = 100)]
    pub refusal_rate: u64,
}

/// `COUNT/WINDOW`: failures within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureSpike {
    /// Failures...
    pub count: u32,
    /// ...within this window.
    pub window: Duration,
}

/// Parses `5/60s`.
fn parse_spike(s: &str) -> Result<FailureSpike, String> {
    let (count, window) = s
        .split_once('/')
        .ok_or_else(|| format!("expected COUNT/WINDOW like 5/60s, got {s:?}"))?;
    let count: u32 = count
        .parse()
        .map_err(|_| format!("{count:?} is not a count"))?;
    if count == 0 {
        return Err("a spike needs at least one failure".into());
    }
    Ok(FailureSpike {
        count,
        window: parse_duration(window)?,
    })
}

/// `courier admin token`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// How long the token is valid.
    #[arg(long, value_parser = parse_duration, default_value = "12h")]
    pub valid: Duration,
    /// The registry's HTTP address, for the dashboard link printed.
    #[arg(long = "http", value_name = "ADDR", default_value_t = courier_registry::DEFAULT_HTTP_LISTEN)]
    pub http: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_parse() {
        assert_eq!(
            parse_spike("3/90s"),
            Ok(FailureSpike {
                count: 3,
                window: Duration::from_secs(90)
            })
        );
        for bad in ["3", "x/60s", "0/60s", "3/soon"] {
            assert!(parse_spike(bad).is_err(), "{bad}");
        }
    }
}
