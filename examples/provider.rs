//! The example providers: the provider side of `courier:echo/echo` (`say` answers
//! `"echo: " + message`) or of `courier:kv/store` (get, set, delete, keys over an in-memory
//! store), served over QUIC with a TLS identity kept in `--data-dir`, so the pin stays the
//! same across restarts. Prints what `courier publish` needs, then serves until Ctrl-C.
//!
//! ```text
//! cargo run --release --example provider -- echo     # listens on 127.0.0.1:7901
//! cargo run --release --example provider -- kv       # listens on 127.0.0.1:7902
//! ```

use anyhow::Context;
use clap::{Parser, ValueEnum};
use courier_transport::Identity;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which example service to serve.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Service {
    /// The echo service.
    Echo,
    /// The key-value service.
    Kv,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Kv => "kv",
        }
    }

    fn default_listen(self) -> SocketAddr {
        match self {
            Service::Echo => SocketAddr::from(([127, 0, 0, 1], 7901)),
            Service::Kv => SocketAddr::from(([127, 0, 0, 1], 7902)),
        }
    }

    fn builder(self) -> courier_provider::ServiceBuilder {
        match self {
            Service::Echo => courier_example_services::echo_service(),
            Service::Kv => courier_example_services::kv_service(),
        }
    }
}

/// Serve an example courier service.
#[derive(Debug, Parser)]
struct Args {
    /// The service.
    service: Service,
    /// Address to listen on (default 127.0.0.1:7901 for echo, 127.0.0.1:7902 for kv).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the provider's TLS identity is kept (default ./<service>-provider).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let service = args.service;
    let listen = args.listen.unwrap_or_else(|| service.default_listen());
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./{}-provider", service.name())));
    let (identity, created) = Identity::load_or_generate(&data_dir)
        .with_context(|| format!("TLS identity in {}", data_dir.display()))?;
    let handle = service
        .builder()
        .serve(listen, &identity)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;

    let name = service.name();
    println!("{name} provider listening on {}", handle.local_addr());
    let fresh = if created { "new " } else { "" };
    println!("{fresh}TLS identity in {}", data_dir.display());
    println!("provider pin: {}", handle.pin());
    println!();
    println!("publish its proxy with:");
    println!(
        "  courier publish {} --name example/{name} --endpoint {} --provider-pin {}",
        courier_proxy_artifacts::path(name).display(),
        handle.local_addr(),
        handle.pin()
    );
    println!("  (with COURIER_REGISTRY and COURIER_REGISTRY_PIN set, and ./vendor.key)");
    println!();
    println!("serving until Ctrl-C");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping (letting calls in flight finish)...");
    handle.shutdown().await;
    Ok(())
}
