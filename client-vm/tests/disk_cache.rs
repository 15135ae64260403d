//! The compiled-code directory, with real wasmtime, real files and a real registry and
//! provider on loopback: a fresh client (as a new process would have) loads what an earlier
//! one compiled instead of compiling it; a file altered, written with another key or
//! renamed to another component's name is refused before it is deserialized, deleted and
//! compiled again; a revoked vendor's files are deleted.
#![allow(clippy::unwrap_used)]

mod common;

use common::{echo_provider, key, registry};
use courier_client::{
    CallReport, CallSpec, Client, ClientConfig, CompiledCodeKey, DiskCacheConfig, DiskCacheStats,
    ReportMode, TrustStore,
};
use courier_protocol::{
    AttributeConstraint, ContentHash, KeyStatement, SignedKeyStatement, SigningKey, VendorKey,
};
use courier_provider::{BundleBuilder, ServiceHandle};
use courier_proxy_artifacts as artifacts;
use courier_registry::RegistryHandle;
use courier_transport::RegistryClient;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;

struct Setup {
    registry: RegistryHandle,
    _provider: ServiceHandle,
    vendor: RegistryClient,
    acme: SigningKey,
    dir: tempfile::TempDir,
}

/// A registry, the echo provider, and `acme`'s echo and echo-digest proxies registered
/// (attribute `proxy` naming each).
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(&dir.path().join("registry")).await;
    let provider = echo_provider().await;
    let acme = key(1);
    let vendor = RegistryClient::connect(registry.local_addr(), registry.pin(), "vendor")
        .await
        .unwrap();
    vendor.authenticate(&acme).await.unwrap();
    for (name, bytes) in [
        ("acme/echo", artifacts::ECHO),
        ("acme/digest", artifacts::ECHO_DIGEST),
    ] {
        BundleBuilder::new(bytes)
            .name(name)
            .version("1.0.0")
            .attribute("proxy", name)
            .endpoint(provider.local_addr().to_string())
            .provider_pin(provider.pin())
            .sign(&acme)
            .unwrap()
            .register_once(&vendor, &acme, Duration::from_secs(30))
            .await
            .unwrap();
    }
    Setup {
        registry,
        _provider: provider,
        vendor,
        acme,
        dir,
    }
}

impl Setup {
    /// The compiled-code directory all the clients of a test share.
    fn compiled(&self) -> PathBuf {
        self.dir.path().join("state").join("compiled")
    }

    /// A fresh client, as a new `courier call` process would have, keeping compiled code
    /// in [`Setup::compiled`] under `key`.
    async fn client(&self, key: &CompiledCodeKey) -> Client {
        let mut config = ClientConfig::new(TrustStore::from_keys([VendorKey::of(&self.acme)]));
        config.report = ReportMode::Off;
        config.lookup_ttl = Duration::ZERO;
        config.key_refresh = Duration::from_secs(3600);
        config.sandbox.disk_cache = Some(DiskCacheConfig {
            dir: self.compiled(),
            key: key.clone(),
            max_bytes: courier_client::DEFAULT_DISK_CACHE_BYTES,
        });
        let registry =
            RegistryClient::connect(self.registry.local_addr(), self.registry.pin(), "client")
                .await
                .unwrap();
        Client::new(registry, config).unwrap()
    }
}

/// Calls `say("hi")` on proxy `name` (`acme/echo` or `acme/digest`).
async fn call(c: &Client, name: &str) -> CallReport {
    let spec: CallSpec = SAY.parse().unwrap();
    let only = vec![AttributeConstraint::Equals("proxy".into(), name.into())];
    let report = c.call_spec(&spec, only).await.unwrap();
    assert!(report.answer.is_ok(), "{:?}", report.answer);
    report
}

fn stats(c: &Client) -> DiskCacheStats {
    c.sandbox().disk_cache_stats().unwrap()
}

/// The compiled-code files in `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    found.sort();
    found
}

/// The file holding `bytes`' compiled code.
fn file_of(dir: &Path, bytes: &[u8]) -> PathBuf {
    let prefix = format!("{}-", ContentHash::of(bytes).to_hex());
    files(dir)
        .into_iter()
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .unwrap()
}

fn secret(n: u8) -> CompiledCodeKey {
    CompiledCodeKey::from_bytes([n; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_loads_what_an_earlier_one_compiled_without_compiling() {
    let s = setup().await;
    let first = s.client(&secret(1)).await;
    let report = call(&first, "acme/digest").await;
    assert!(!report.timings.from_disk && !report.timings.cache_hit);
    assert_eq!(stats(&first).stored, 1);
    assert_eq!(files(&s.compiled()).len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.compiled()), 0o700);
        assert_eq!(mode(&file_of(&s.compiled(), artifacts::ECHO_DIGEST)), 0o600);
    }

    // A new client: nothing in memory, the file on disk. Loaded, not compiled or fetched.
    let second = s.client(&secret(1)).await;
    let report = call(&second, "acme/digest").await;
    assert!(report.timings.from_disk, "{}", report.timings);
    assert_eq!(report.timings.fetch, Duration::ZERO);
    let st = stats(&second);
    assert_eq!(
        (st.loaded, st.deserialized, st.refused, st.stored),
        (1, 1, 0, 0)
    );
    let compiled = second
        .sandbox()
        .cached(&ContentHash::of(artifacts::ECHO_DIGEST))
        .unwrap();
    assert!(compiled.from_disk());
    // The next call of the same client takes it from memory.
    assert!(call(&second, "acme/digest").await.timings.cache_hit);
    s.registry.shutdown().await;
}

/// A second client with `key` calls `name`: the file there is refused without being
/// deserialized, deleted, and the component compiled and written again; a third client
/// then loads the new file.
async fn refused_then_recompiled(s: &Setup, key: &CompiledCodeKey, name: &str, bytes: &[u8]) {
    let second = s.client(key).await;
    let report = call(&second, name).await;
    assert!(!report.timings.from_disk, "{}", report.timings);
    let st = stats(&second);
    assert_eq!(
        (st.refused, st.deserialized, st.loaded),
        (1, 0, 0),
        "{st:?}"
    );
    assert_eq!(st.stored, 1, "compiled again and kept");
    assert!(file_of(&s.compiled(), bytes).exists());
    let third = s.client(key).await;
    assert!(call(&third, name).await.timings.from_disk);
    assert_eq!(stats(&third).refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_file_is_refused_before_deserializing_and_compiled_again() {
    let s = setup().await;
    call(&s.client(&secret(1)).await, "acme/echo").await;
    let path = file_of(&s.compiled(), artifacts::ECHO);
    // One bit of the machine code, then one bit of the header.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    refused_then_recompiled(&s, &secret(1), "acme/echo", artifacts::ECHO).await;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    refused_then_recompiled(&s, &secret(1), "acme/echo", artifacts::ECHO).await;
    // Cut short.
    std::fs::write(&path, &std::fs::read(&path).unwrap()[..30]).unwrap();
    refused_then_recompiled(&s, &secret(1), "acme/echo", artifacts::ECHO).await;
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_with_another_key_is_refused_before_deserializing() {
    let s = setup().await;
    // Written by a client with another key: its key id tells it apart.
    call(&s.client(&secret(2)).await, "acme/echo").await;
    refused_then_recompiled(&s, &secret(1), "acme/echo", artifacts::ECHO).await;

    // Written with another key but claiming this client's key id: the tag does not match.
    call(&s.client(&secret(3)).await, "acme/digest").await;
    let path = file_of(&s.compiled(), artifacts::ECHO_DIGEST);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..16].copy_from_slice(&secret(1).id());
    std::fs::write(&path, &bytes).unwrap();
    refused_then_recompiled(&s, &secret(1), "acme/digest", artifacts::ECHO_DIGEST).await;
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_to_another_components_name_is_refused_before_deserializing() {
    let s = setup().await;
    let first = s.client(&secret(1)).await;
    call(&first, "acme/echo").await;
    call(&first, "acme/digest").await;
    // The echo proxy's code, genuine and tagged by this client, under the digest's name.
    let echo = file_of(&s.compiled(), artifacts::ECHO);
    let digest = file_of(&s.compiled(), artifacts::ECHO_DIGEST);
    std::fs::rename(&echo, &digest).unwrap();
    let second = s.client(&secret(1)).await;
    let report = call(&second, "acme/digest").await;
    assert!(!report.timings.from_disk);
    let st = stats(&second);
    assert_eq!((st.refused, st.deserialized), (1, 0), "{st:?}");
    // What ran is the digest proxy, compiled again: its answer is not the echo's.
    let echo_answer = call(&s.client(&secret(9)).await, "acme/echo").await.answer;
    assert_ne!(report.answer.text(), echo_answer.text());
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_vendors_files_are_deleted_by_the_next_client_that_learns_it() {
    let s = setup().await;
    let first = s.client(&secret(1)).await;
    call(&first, "acme/echo").await;
    call(&first, "acme/digest").await;
    assert_eq!(files(&s.compiled()).len(), 2);
    let revocation =
        SignedKeyStatement::sign(&KeyStatement::revoke(VendorKey::of(&s.acme), 1), &s.acme);
    s.vendor.publish_statement(revocation).await.unwrap();
    // A later process: it never ran these proxies, but learns the revocation.
    let later = s.client(&secret(1)).await;
    assert_eq!(later.sync_keys().await.unwrap(), 1);
    assert!(files(&s.compiled()).is_empty());
    assert_eq!(stats(&later).evicted, 2);
    s.registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_component_loses_its_file() {
    let s = setup().await;
    let c = s.client(&secret(1)).await;
    call(&c, "acme/echo").await;
    assert!(c.untrust(&VendorKey::of(&s.acme)));
    assert!(files(&s.compiled()).is_empty());
    call(&s.client(&secret(1)).await, "acme/digest").await;
    assert!(
        c.sandbox()
            .discard_compiled(&ContentHash::of(artifacts::ECHO_DIGEST))
    );
    assert!(files(&s.compiled()).is_empty());
    s.registry.shutdown().await;
}
