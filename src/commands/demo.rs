//! `courier demo`: the whole flow in one process on loopback, each step with its timing.
//!
//! An embedded registry in a temporary directory; a vendor key; the echo and key-value
//! providers; their signed proxies published under short leases; a client that finds,
//! downloads, verifies and runs each proxy once in the sandbox (the proxy calls its provider
//! directly over QUIC); the patch flow (`demo_patch.rs`: upgrades for this machine, one
//! patch installed, one rolled back, a second run with nothing to do); then the echo
//! provider stops, its lease runs out, and its proxy no longer matches.

use crate::cli::DemoArgs;
use crate::output::{millis, short};
use anyhow::Context;
use courier_client::{CallError, Client, ClientConfig, ReportMode, TrustStore};
use courier_example_services::{echo_service, kv_service};
use courier_protocol::{EventKind, ServiceQuery};
use courier_provider::{BundleBuilder, LeaseKeeper, generate_key, public_key};
use courier_registry::{Registry, RegistryConfig, ServerConfig};
use courier_transport::{Identity, RegistryClient};
use std::time::{Duration, Instant};

/// Lease the demo's vendors ask for: short, so the expiry shows within seconds.
const DEMO_TTL: Duration = Duration::from_secs(2);

/// Prints one step with the time it took since `t0`.
fn step(t0: Instant, what: impl AsRef<str>) {
    println!("[{:>9}] {}", fmt_dur(t0.elapsed()), what.as_ref());
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("courier-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    println!("courier demo: registry, providers, proxies and a client on loopback");
    println!("             data in {}", dir.path().display());
    println!();

    // 1. The registry.
    let t = Instant::now();
    let mut config = RegistryConfig::new(dir.path().join("registry"));
    config.min_ttl = Duration::from_millis(500);
    config.flush_interval = Duration::from_millis(200);
    let server = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        ..ServerConfig::default()
    };
    let registry = tokio::task::spawn_blocking(move || Registry::open(config)).await??;
    let registry = courier_registry::serve(std::sync::Arc::new(registry), server)
        .await
        .context("starting the registry")?;
    let (reg_addr, reg_pin) = (registry.local_addr(), registry.pin());
    step(
        t,
        format!("registry listening on {reg_addr} (QUIC, ALPN courier/1), pin {reg_pin}"),
    );

    // 2. A vendor key.
    let t = Instant::now();
    let key = generate_key();
    let vendor = public_key(&key);
    step(t, format!("vendor key generated: {vendor}"));

    // 3. The providers, each with its own TLS identity.
    let t = Instant::now();
    let echo_id = Identity::generate()?;
    let kv_id = Identity::generate()?;
    let local = "127.0.0.1:0".parse()?;
    let echo_provider = echo_service().serve(local, &echo_id).await?;
    let kv_provider = kv_service().serve(local, &kv_id).await?;
    step(
        t,
        format!(
            "providers up: echo at {} (pin {}), kv at {} (pin {})",
            echo_provider.local_addr(),
            short(&echo_provider.pin().to_string(), 19),
            kv_provider.local_addr(),
            short(&kv_provider.pin().to_string(), 19),
        ),
    );

    // 4. Sign and publish the proxies under leases.
    let mut keepers = Vec::new();
    for (name, component, provider) in [
        (
            "example/echo",
            courier_proxy_artifacts::ECHO,
            &echo_provider,
        ),
        ("example/kv", courier_proxy_artifacts::KV, &kv_provider),
    ] {
        let t = Instant::now();
        let bundle = BundleBuilder::new(component.to_vec())
            .name(name)
            .version("0.1.0")
            .endpoint(provider.local_addr().to_string())
            .provider_pin(provider.pin())
            .attribute("demo", "true")
            .sign(&key)?;
        let manifest = bundle.manifest.peek()?;
        let keeper = LeaseKeeper::start(reg_addr, reg_pin, key.clone(), bundle, DEMO_TTL);
        let lease = keeper.wait_active().await?;
        let exports: Vec<_> = manifest
            .exports
            .iter()
            .map(|e| e.interface.as_str())
            .collect();
        step(
            t,
            format!(
                "published {name} 0.1.0 ({} KB, exports {}) under lease {}",
                manifest.component_size.div_ceil(1024),
                exports.join(", "),
                short(&lease.to_string(), 12)
            ),
        );
        keepers.push(keeper);
    }

    // 5. A client that trusts the vendor, registered with the registry under its own key
    // (its history and system data are its own).
    let t = Instant::now();
    let client_key = generate_key();
    let mut cfg = ClientConfig::new(TrustStore::from_keys([vendor]));
    cfg.report = ReportMode::Inline;
    cfg.report_detail = true;
    cfg.key = Some(client_key.clone());
    let connection = RegistryClient::connect(reg_addr, reg_pin, "courier-demo").await?;
    connection.authenticate(&client_key).await?;
    connection
        .register_client(courier_protocol::ClientProfile::default())
        .await?;
    let client = Client::new(connection, cfg)?;
    step(
        t,
        format!(
            "client {} registered; it trusts the vendor key only",
            short(&public_key(&client_key).to_string(), 20)
        ),
    );

    let t = Instant::now();
    let found = client
        .registry()
        .find(ServiceQuery {
            interface: "courier:echo/echo".into(),
            functions: vec!["say".into()],
            limit: 10,
            ..ServiceQuery::default()
        })
        .await?;
    step(
        t,
        format!(
            "find courier:echo/echo with say → {} candidate(s){}",
            found.len(),
            found
                .first()
                .map(|c| format!(
                    ", best: lease {} with {} left",
                    short(&c.lease.to_string(), 12),
                    millis(c.remaining_ms)
                ))
                .unwrap_or_default()
        ),
    );

    // 6. Calls: each proxy is fetched, verified, compiled (or taken from the cache), run
    //    once in a fresh store, and discarded.
    let calls = [
        r#"courier:echo/echo.say("hello from courier")"#,
        r#"courier:echo/echo.say("again, from the compiled cache")"#,
        r#"courier:kv/store.set("greeting", "hello")"#,
        r#"courier:kv/store.get("greeting")"#,
        r#"courier:kv/store.keys()"#,
    ];
    for call in calls {
        let t = Instant::now();
        let report = client
            .call_str(call)
            .await
            .with_context(|| format!("calling {call}"))?;
        step(t, format!("call {call} → {}", report.answer));
        println!("            {}", report.timings);
    }

    // 7. Patch delivery, in a temporary copy of the example app.
    println!();
    let patch = super::demo_patch::run(
        (reg_addr, reg_pin),
        &key,
        &client_key,
        dir.path(),
        step,
        DEMO_TTL,
    )
    .await
    .context("the patch flow")?;

    // 8. The lease table, as an operator sees it.
    let leases = client.registry().leases().await?;
    println!();
    println!("lease table:");
    for l in &leases {
        println!(
            "  {:<14} {:<30} left {:>6}  renewals {}",
            l.name,
            l.interfaces.join(","),
            millis(l.remaining_ms),
            l.renewals
        );
    }
    println!();

    // 9. The echo provider goes away without cancelling: its lease runs out.
    let mut events = client
        .registry()
        .subscribe(Some("courier:echo/echo".into()), u64::MAX)
        .await?;
    let t = Instant::now();
    drop(keepers.remove(0)); // stops renewing without cancelling
    echo_provider.shutdown().await;
    step(t, "echo provider stopped; its lease is no longer renewed");
    let t = Instant::now();
    let expired = tokio::time::timeout(DEMO_TTL * 5, async {
        loop {
            match events.next().await? {
                Some(batch) => {
                    if let Some(e) = batch
                        .events
                        .iter()
                        .find(|e| e.kind == EventKind::Expired && e.name == "example/echo")
                    {
                        return Ok::<_, anyhow::Error>(e.clone());
                    }
                }
                None => anyhow::bail!("event stream closed"),
            }
        }
    })
    .await
    .context("the echo lease did not expire in time")??;
    step(
        t,
        format!(
            "event #{}: {} {} (lease ran out)",
            expired.seq, expired.kind, expired.name
        ),
    );
    let t = Instant::now();
    match client
        .call_str(r#"courier:echo/echo.say("anyone there?")"#)
        .await
    {
        Err(CallError::NoCandidates(what)) => step(
            t,
            format!("call courier:echo/echo.say → no proxy offers {what} any more"),
        ),
        Err(e) => anyhow::bail!("expected no candidates after expiry, got: {e}"),
        Ok(r) => anyhow::bail!("the expired proxy still matched: {}", r.answer),
    }

    // 10. The registry kept the client's service history.
    let me = public_key(&client_key).to_string();
    let history = client.registry().history(&me, 20).await?;
    println!();
    println!(
        "service history of client {} ({} runs):",
        short(&me, 20),
        history.len()
    );
    for h in history.iter().rev() {
        println!(
            "  {:<14} {:<32} {:<7} {}",
            h.outcome.name,
            short(&h.outcome.function, 32),
            if h.outcome.ok { "ok" } else { "failed" },
            short(&h.outcome.detail, 40)
        );
    }

    // 11. Tidy up: cancel the remaining leases, stop everything.
    for k in keepers {
        let _ = k.shutdown().await;
    }
    if let Some(patch) = patch {
        patch.shutdown().await;
    }
    kv_provider.shutdown().await;
    client.registry().close();
    registry.shutdown().await;
    println!();
    println!("demo finished in {}", fmt_dur(started.elapsed()));
    if args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}
