//! The grammar of the operators' side of a registry: its HTTP listener (`/metrics`, the
//! dashboard) and dashboard tokens.

use super::parse_duration;
use clap::Args;
use std::net::SocketAddr;
use std::time::Duration;

/// `courier registry serve`'s HTTP listener.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Serve /metrics (Prometheus) and the dashboard over HTTP on this address; without a
    /// value, 127.0.0.1:7880. Off unless given. Keep it on loopback, or behind a proxy.
    #[arg(long = "http", value_name = "ADDR", num_args = 0..=1,
          default_missing_value = "127.0.0.1:7880")]
    pub http: Option<SocketAddr>,
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
