//! The echo provider: serves `courier:echo/echo`'s provider side (`say` answers
//! `"echo: " + message`) over QUIC with a TLS identity kept in `--data-dir`, so its pin
//! stays the same across restarts. Prints what `courier publish` needs, then serves until
//! Ctrl-C.
//!
//! ```text
//! cargo run --example echo_provider -- --listen 127.0.0.1:7901
//! ```

use anyhow::Context;
use clap::Parser;
use courier_transport::Identity;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve the example echo service.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7901")]
    listen: SocketAddr,
    /// Where the provider's TLS identity is kept (created on first start).
    #[arg(long, default_value = "./echo-provider")]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logs();
    let args = Args::parse();
    let (identity, created) = Identity::load_or_generate(&args.data_dir)
        .with_context(|| format!("TLS identity in {}", args.data_dir.display()))?;
    let handle = courier_provider::examples::echo_service()
        .serve(args.listen, &identity)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    print_banner("echo", "example/echo", &handle, &args.data_dir, created);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("stopping (letting calls in flight finish)...");
    handle.shutdown().await;
    Ok(())
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn print_banner(
    proxy: &str,
    name: &str,
    handle: &courier_provider::ServiceHandle,
    data_dir: &std::path::Path,
    created: bool,
) {
    let identity = if created {
        "new TLS identity"
    } else {
        "TLS identity"
    };
    println!("{proxy} provider listening on {}", handle.local_addr());
    println!("{identity} in {}", data_dir.display());
    println!("provider pin: {}", handle.pin());
    println!();
    println!("publish its proxy with:");
    println!(
        "  courier publish {} --name {name} --endpoint {} --provider-pin {}",
        courier_proxy_artifacts::path(proxy).display(),
        handle.local_addr(),
        handle.pin()
    );
    println!("  (plus --registry ADDR --registry-pin sha256:... --key vendor.key)");
    println!();
    println!("serving until Ctrl-C");
}
