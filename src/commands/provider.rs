//! `courier provider run`: serve an example provider (echo, key-value, patch) over QUIC
//! until Ctrl-C, with its TLS identity and the proxy component that calls it kept in a data
//! directory, so that the printed `courier publish` line works as it is.

use crate::cli::{ExampleService, ProviderCommand, ProviderRunArgs};
use anyhow::Context;
use courier_example_services::Example;
use courier_example_services::install::InstallService;
use courier_example_services::patch::{IndexSource, PatchConfig, PatchProvider};
use courier_transport::Identity;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub async fn run(cmd: ProviderCommand) -> anyhow::Result<()> {
    match cmd {
        ProviderCommand::Run(args) => serve(args).await,
    }
}

async fn serve(args: ProviderRunArgs) -> anyhow::Result<()> {
    let example = match args.service {
        ExampleService::Echo => Example::Echo,
        ExampleService::Kv => Example::Kv,
        ExampleService::Patch => Example::Patch,
        ExampleService::Install => return serve_install(args).await,
    };
    anyhow::ensure!(args.from.is_none(), "--from is for the install provider");
    let name = example.name();
    if example != Example::Patch && (args.catalog.is_some() || args.indexes.is_some()) {
        anyhow::bail!("--catalog and --indexes are for the patch provider");
    }
    let listen = args.listen.unwrap_or_else(|| default_listen(example));
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./{name}-provider")));
    let (identity, created) = Identity::load_or_generate(&data_dir)
        .with_context(|| format!("TLS identity in {}", data_dir.display()))?;
    let proxy = keep_proxy(&data_dir, example)?;
    let service = match example {
        Example::Patch => patch_service(&args.catalog, &args.indexes, &data_dir)?,
        _ => example.service(),
    };
    let handle = service
        .serve(listen, &identity)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;

    println!("{name} provider listening on {}", handle.local_addr());
    let fresh = if created { "new " } else { "" };
    println!("{fresh}TLS identity in {}", data_dir.display());
    println!("provider pin: {}", handle.pin());
    println!("its proxy: {}", proxy.display());
    println!();
    println!("publish its proxy with:");
    println!(
        "  courier publish {} --name example/{name} --endpoint {} --provider-pin {}",
        proxy.display(),
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

/// `courier provider run install --from DIR`: a service with prerequisites, or an
/// installer, as its catalog folder describes it.
async fn serve_install(args: ProviderRunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.catalog.is_none() && args.indexes.is_none(),
        "--catalog and --indexes are for the patch provider"
    );
    let from = args
        .from
        .as_deref()
        .context("the install provider needs --from DIR (e.g. examples/install-catalog/glyphs)")?;
    let service = InstallService::from_dir(from)
        .with_context(|| format!("cannot read the catalog folder {}", from.display()))?;
    let stem = from
        .file_name()
        .map_or_else(|| "install".into(), |n| n.to_string_lossy().into_owned());
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./{stem}-provider")));
    let (identity, _) = Identity::load_or_generate(&data_dir)
        .with_context(|| format!("TLS identity in {}", data_dir.display()))?;
    let proxy_name = if service.plan.is_some() {
        "installer"
    } else {
        "echo-needs"
    };
    let proxy = keep_bytes(&data_dir, proxy_name, service.proxy())?;
    // An installer is published under the name of what it provides (each version of it
    // from its own folder), so that its versions are one service for `courier updates`.
    let name = service
        .plan
        .as_ref()
        .and_then(|p| p.provides.rsplit('/').next())
        .map_or_else(|| stem.clone(), str::to_owned);
    let attribute = service.plan.as_ref().map(|p| {
        (
            format!(" --attr provides={}", p.provides),
            p.version.clone(),
        )
    });
    for need in &service.needs {
        println!("needs {need}");
    }
    let handle = service
        .service()
        .serve(listen, &identity)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("{stem} provider listening on {}", handle.local_addr());
    println!("publish its proxy with:");
    let (attr, version) = attribute.unwrap_or_default();
    let version = if version.is_empty() {
        String::new()
    } else {
        format!(" --version {version}")
    };
    println!(
        "  courier publish {} --name example/{name}{version}{attr} --endpoint {} --provider-pin {}",
        proxy.display(),
        handle.local_addr(),
        handle.pin()
    );
    println!("serving until Ctrl-C");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(())
}

/// Where an example provider listens unless told otherwise.
fn default_listen(example: Example) -> SocketAddr {
    let port = match example {
        Example::Echo => 7901,
        Example::Kv => 7902,
        Example::Patch => 7903,
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Writes the example's proxy component to `<data_dir>/<name>.wasm` (through a temporary
/// file, so a concurrent `courier publish` never reads half of it), unless it is already
/// there unchanged; returns its path.
fn keep_proxy(data_dir: &Path, example: Example) -> anyhow::Result<PathBuf> {
    keep_bytes(data_dir, example.name(), example.proxy())
}

/// Writes `bytes` to `<data_dir>/<name>.wasm` as [`keep_proxy`] does.
fn keep_bytes(data_dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(format!("{name}.wasm"));
    if std::fs::read(&path).is_ok_and(|kept| kept == bytes) {
        return Ok(path);
    }
    let write = || -> std::io::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(data_dir)?;
        file.write_all(bytes)?;
        file.persist(&path)?;
        Ok(())
    };
    write().with_context(|| format!("cannot write the proxy to {}", path.display()))?;
    Ok(path)
}

/// Loads the patch provider's catalog and indexes, with its store in the data directory,
/// and says what it holds.
fn patch_service(
    catalog: &Option<PathBuf>,
    indexes: &Option<PathBuf>,
    data_dir: &Path,
) -> anyhow::Result<courier_provider::ServiceBuilder> {
    let config = PatchConfig {
        catalog: catalog.clone(),
        indexes: indexes.clone().map_or(
            IndexSource::Machine(PathBuf::from("/")),
            IndexSource::Folder,
        ),
        store: Some(data_dir.join("patch.redb")),
        ..PatchConfig::default()
    };
    let provider = PatchProvider::open(&config).context("cannot start the patch provider")?;
    let (lists, packages) = provider.packages().size();
    println!(
        "patch catalog: {} patches, {lists} package indexes ({packages} packages)",
        provider.catalog().records().len()
    );
    for note in provider
        .catalog()
        .notes()
        .iter()
        .chain(provider.packages().notes())
    {
        println!("  warning: {note}");
    }
    Ok(std::sync::Arc::new(provider).service())
}
