//! The patch flow of `courier demo`: the patch provider (the example catalog and this
//! machine's own apt lists) and its signed proxy published at the demo's registry; a client
//! whose policy lends a temporary copy of the example app as `/managed`, the app's health
//! check, and a "yes" to every question. `recommend` lists this machine's upgrades and the
//! catalog's patches; `apply` installs one patch and rolls back the one that fails its
//! health check; a second `apply` finds nothing to do.

use anyhow::Context;
use courier_client::{
    Client, ClientConfig, ExtraArgs, LentCommand, OperatorAnswer, OperatorMode, Policy, Preopen,
    ReportMode, TrustStore, Val,
};
use courier_example_services::patch::{PatchConfig, PatchProvider};
use courier_protocol::{SigningKey, SpkiPin};
use courier_provider::{BundleBuilder, LeaseKeeper, ServiceHandle, public_key};
use courier_transport::{Identity, RegistryClient};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The example catalog shipped with the sources.
fn catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/patch-catalog")
}

/// What the patch part of the demo keeps running until the end.
pub struct PatchDemo {
    keeper: LeaseKeeper,
    provider: ServiceHandle,
}

impl PatchDemo {
    /// Stops the provider and cancels the proxy's lease.
    pub async fn shutdown(self) {
        let _ = self.keeper.shutdown().await;
        self.provider.shutdown().await;
    }
}

/// Runs the patch flow against the registry at `registry` as `vendor`, in `dir`; `step`
/// prints a line with its timing. Returns `None` (and says why) when the example catalog
/// is not where the sources put it (a binary installed without them).
pub async fn run(
    registry: (SocketAddr, SpkiPin),
    vendor: &SigningKey,
    client_key: &SigningKey,
    dir: &Path,
    step: impl Fn(Instant, String),
    ttl: Duration,
) -> anyhow::Result<Option<PatchDemo>> {
    let catalog = catalog();
    if !catalog.join("managed-1.0").is_dir() {
        println!(
            "patch flow skipped: the example catalog is not at {}",
            catalog.display()
        );
        return Ok(None);
    }
    // The provider: the catalog's patches, and upgrades from this machine's apt lists.
    let t = Instant::now();
    let config = PatchConfig {
        catalog: Some(catalog.clone()),
        ..PatchConfig::default()
    };
    let provider = tokio::task::spawn_blocking(move || PatchProvider::open(&config))
        .await?
        .context("opening the patch provider")?;
    let serving = Arc::new(provider)
        .service()
        .serve("127.0.0.1:0".parse()?, &Identity::generate()?)
        .await?;
    let bundle = BundleBuilder::new(courier_proxy_artifacts::PATCH.to_vec())
        .name("example/patch")
        .version("0.1.0")
        .endpoint(serving.local_addr().to_string())
        .provider_pin(serving.pin())
        .sign(vendor)?;
    let keeper = LeaseKeeper::start(registry.0, registry.1, vendor.clone(), bundle, ttl);
    keeper.wait_active().await?;
    step(
        t,
        format!(
            "patch provider up at {} (catalog {}, this machine's apt lists); example/patch published",
            serving.local_addr(),
            catalog.display()
        ),
    );

    // The machine: a copy of the example app, lent at /managed with its health check.
    let managed = dir.join("managed");
    copy_tree(&catalog.join("managed-1.0"), &managed)?;
    let client = patch_client(registry, vendor, client_key, &managed).await?;

    let t = Instant::now();
    let report = client
        .call_str("courier:patch/delivery.recommend()")
        .await
        .context("calling recommend")?;
    let answer = ok_value(&report.values)?;
    let upgrades = list(answer, "upgrades");
    let patches = list(answer, "patches");
    step(
        t,
        format!(
            "recommend → {} upgrade(s) for this machine's packages, {} patch(es) for the app",
            upgrades.len(),
            patches.len()
        ),
    );
    for u in upgrades.iter().take(5) {
        println!(
            "            upgrade {} {} → {}",
            text(u, "name"),
            text(u, "installed"),
            text(u, "candidate")
        );
    }
    if upgrades.len() > 5 {
        println!("            … and {} more", upgrades.len() - 5);
    }
    for p in patches {
        println!(
            "            patch {} ({}): {}",
            text(p, "id"),
            text(p, "severity"),
            text(p, "title")
        );
    }

    for round in ["apply", "apply again"] {
        let t = Instant::now();
        let report = client
            .call_str("courier:patch/delivery.apply([])")
            .await
            .with_context(|| format!("calling {round}"))?;
        let outcomes = ok_value(&report.values)?;
        let Val::List(outcomes) = outcomes else {
            anyhow::bail!("apply answered {}", report.answer);
        };
        step(t, format!("{round} → {} outcome(s)", outcomes.len()));
        for o in outcomes {
            let ok = matches!(field(o, "ok"), Some(Val::Bool(true)));
            println!(
                "            {:<16} {:<6} {}",
                text(o, "id"),
                if ok { "ok" } else { "failed" },
                text(o, "detail")
            );
        }
    }
    client.registry().close();
    Ok(Some(PatchDemo {
        keeper,
        provider: serving,
    }))
}

/// A client of this machine that trusts `vendor`, lends `managed` and the app's health
/// check, and answers yes.
async fn patch_client(
    registry: (SocketAddr, SpkiPin),
    vendor: &SigningKey,
    key: &SigningKey,
    managed: &Path,
) -> anyhow::Result<Client> {
    let health = LentCommand {
        name: "example-app-health".into(),
        argv: vec![
            "sh".into(),
            managed.join("app/bin/hello.sh").display().to_string(),
            "--self-test".into(),
        ],
        extra_args: ExtraArgs::None,
        timeout: Duration::from_secs(10),
        confirm: false,
    };
    let facts = [
        "os",
        "arch",
        "kernel",
        "hostname",
        "os-id",
        "os-version",
        "os-codename",
        "package-manager",
        "packages",
        "managed-dir",
    ];
    let mut config = ClientConfig::new(TrustStore::from_keys([public_key(vendor)]));
    config.key = Some(key.clone());
    config.report = ReportMode::Inline;
    config.policy = Policy {
        grant_host_info: true,
        grant_operator: true,
        allowed_facts: facts.iter().map(|f| f.to_string()).collect(),
        operator: OperatorMode::Unattended(OperatorAnswer::ApproveAll),
        preopen: Some(Preopen {
            host: managed.to_path_buf(),
            guest: "/managed".into(),
            writable: true,
        }),
        commands: vec![health],
        ..Policy::default()
    };
    let link = RegistryClient::connect(registry.0, registry.1, "courier-demo").await?;
    link.authenticate(key).await?;
    Ok(Client::new(link, config)?)
}

/// The `ok` value of a `result<T, string>` answer, or its error.
fn ok_value(values: &[Val]) -> anyhow::Result<&Val> {
    match values.first() {
        Some(Val::Result(Ok(Some(v)))) => Ok(v),
        Some(Val::Result(Err(Some(e)))) => match e.as_ref() {
            Val::String(s) => anyhow::bail!("the proxy answered an error: {s}"),
            other => anyhow::bail!("the proxy answered an error: {other:?}"),
        },
        other => anyhow::bail!("unexpected answer: {other:?}"),
    }
}

fn field<'a>(record: &'a Val, name: &str) -> Option<&'a Val> {
    match record {
        Val::Record(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, v)| v),
        _ => None,
    }
}

fn list<'a>(record: &'a Val, name: &str) -> &'a [Val] {
    match field(record, name) {
        Some(Val::List(items)) => items,
        _ => &[],
    }
}

fn text<'a>(record: &'a Val, name: &str) -> &'a str {
    match field(record, name) {
        Some(Val::String(s)) => s,
        _ => "",
    }
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
