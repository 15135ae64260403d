//! Patch delivery end to end over loopback, every part real: the signed `patch` proxy
//! registered at a real registry, run by the client's sandbox with the facts, the managed
//! directory and the health command its policy lends, talking to the real patch provider
//! (the example catalog, and a `Packages` index written here), installing with the engine
//! of `courier-patch-api` inside WASI. One patch installs, the other fails its health check
//! and is rolled back, the upgrades are reported as not run, the provider keeps the report,
//! a second run finds nothing to do, a "no" changes nothing, and `remove` restores the tree.
#![allow(clippy::unwrap_used)]

use courier_client::{
    Answer, Client, ClientConfig, ExtraArgs, FactSources, HostFacts, LentCommand, OperatorAnswer,
    OperatorMode, Policy, Preopen, ReportMode, TrustStore,
};
use courier_example_services::patch::{IndexSource, PatchConfig, PatchProvider};
use courier_patch_api::{Engine, Stage, tree};
use courier_protocol::{ClientProfile, SigningKey, VendorKey};
use courier_provider::{BundleBuilder, ServiceHandle};
use courier_registry::RegistryHandle;
use courier_transport::{Identity, RegistryClient};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::wasm_wave::{
    self,
    value::{Type, Value},
    wasm::WasmValue,
};

/// The installed packages the `packages` fact reads (dpkg's status file).
const DPKG_STATUS: &str = "\
Package: courier-hello
Status: install ok installed
Architecture: all
Version: 1.0-1
Description: a package with an upgrade

Package: libgreet1
Status: install ok installed
Architecture: amd64
Version: 2:3.0-1
Description: an upgrade within the epoch

Package: zlib-steady
Status: install ok installed
Architecture: amd64
Version: 1.3-1
Description: up to date

Package: removed-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 0.1-1
";

/// The provider's package index.
const PACKAGES: &str = "\
Package: courier-hello
Version: 1.0-2
Architecture: all

Package: libgreet1
Version: 2:3.1-1
Architecture: amd64

Package: libgreet1
Version: 2:2.9-1
Architecture: amd64

Package: zlib-steady
Version: 1.3-1
Architecture: amd64

Package: removed-tool
Version: 0.2-1
Architecture: amd64
";

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n\
                          VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";

const FACTS: &[&str] = &[
    "os",
    "arch",
    "kernel",
    "hostname",
    "os-release",
    "os-id",
    "os-version",
    "os-codename",
    "package-manager",
    "packages",
    "managed-dir",
];

/// One machine: its files, the managed directory, and its facts as the client reads them.
struct Machine {
    dir: tempfile::TempDir,
    facts: HostFacts,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let managed = dir.path().join("managed");
        std::fs::create_dir(&managed).unwrap();
        copy_tree(&catalog().join("managed-1.0"), &managed);
        std::fs::write(dir.path().join("status"), DPKG_STATUS).unwrap();
        std::fs::write(dir.path().join("os-release"), OS_RELEASE).unwrap();
        let sources = FactSources {
            dpkg_status: dir.path().join("status"),
            apk_installed: dir.path().join("no-apk"),
            os_release: vec![dir.path().join("os-release")],
        };
        let facts =
            HostFacts::gather_from(&sources, &FACTS.iter().map(|f| f.to_string()).collect());
        Machine { dir, facts }
    }

    fn managed(&self) -> PathBuf {
        self.dir.path().join("managed")
    }

    /// The id the proxy gives its provider: the hostname fact.
    fn client_id(&self) -> String {
        self.facts.get("hostname").unwrap_or("anonymous").to_owned()
    }

    /// What the policy lends: the facts, the managed directory at `/managed`, the example
    /// app's health check, and `answer` to every question.
    fn policy(&self, answer: OperatorAnswer) -> Policy {
        let hello = self.managed().join("app/bin/hello.sh");
        let health = LentCommand {
            name: "example-app-health".into(),
            argv: vec![
                "sh".into(),
                hello.display().to_string(),
                "--self-test".into(),
            ],
            extra_args: ExtraArgs::None,
            timeout: Duration::from_secs(10),
            confirm: false,
        };
        Policy {
            grant_host_info: true,
            grant_operator: true,
            allowed_facts: FACTS.iter().map(|f| f.to_string()).collect(),
            operator: OperatorMode::Unattended(answer),
            preopen: Some(Preopen {
                host: self.managed(),
                guest: "/managed".into(),
                writable: true,
            }),
            commands: vec![health],
            ..Policy::default()
        }
    }

    fn listing(&self) -> Vec<String> {
        tree::listing(&self.managed()).unwrap()
    }

    fn applied(&self) -> Vec<String> {
        let engine = Engine::open(self.managed()).unwrap();
        engine
            .applied()
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect()
    }

    /// What `sh app/bin/hello.sh` prints.
    fn hello(&self) -> String {
        let out = Command::new("sh")
            .arg(self.managed().join("app/bin/hello.sh"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/patch-catalog")
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The managed tree as `before` with `id`'s payloads in place, files without their modes
/// (see [`contents`]).
fn with_patch(provider: &PatchProvider, before: &Path, id: &str) -> Vec<String> {
    let expected = tempfile::tempdir().unwrap();
    copy_tree(before, expected.path());
    for file in &provider.record(id).unwrap().files {
        let target = expected.path().join(&file.path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(
            catalog().join("payloads").join(id).join(&file.path),
            &target,
        )
        .unwrap();
    }
    contents(&tree::listing(expected.path()).unwrap())
}

/// A listing without the engine's state directory and without file modes: WASI has no
/// call that sets permission bits, so a file the engine writes inside the sandbox gets the
/// host's default mode, not the record's (files it restores keep theirs).
fn contents(listing: &[String]) -> Vec<String> {
    let state = courier_patch_api::STATE_DIR;
    listing
        .iter()
        .filter(|l| !l.split(' ').nth(1).is_some_and(|p| p.starts_with(state)))
        .map(|l| match l.split(' ').collect::<Vec<_>>()[..] {
            ["f", path, _mode, sha] => format!("f {path} {sha}"),
            _ => l.clone(),
        })
        .collect()
}

/// A recommendation as the WIT declares it.
#[derive(Debug, PartialEq)]
struct Recommended {
    upgrades: Vec<[String; 4]>,
    patches: Vec<[String; 3]>,
    notes: Vec<String>,
}

/// One `outcome`: id, ok, detail.
type Outcome = (String, bool, String);

fn record(fields: &[&str]) -> Type {
    Type::record(fields.iter().map(|f| (*f, Type::STRING))).unwrap()
}

/// Parses a WAVE answer `ok(...)` of type `ok`, or fails with the proxy's error.
fn parse_ok(answer: &Answer, ok: Type) -> Value {
    let Answer::Ok(text) = answer else {
        panic!("not an answer: {answer:?}")
    };
    let ty = Type::result(Some(ok), Some(Type::STRING));
    let value: Value = wasm_wave::from_str(&ty, text).unwrap();
    match value.unwrap_result() {
        Ok(Some(inner)) => inner.into_owned(),
        other => panic!("{other:?}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .unwrap_list()
        .map(|v| v.unwrap_string().into_owned())
        .collect()
}

fn fields<const N: usize>(value: &Value, names: [&str; N]) -> [String; N] {
    let all: Vec<(String, String)> = value
        .unwrap_record()
        .map(|(k, v)| (k.into_owned(), v.unwrap_string().into_owned()))
        .collect();
    names.map(|n| all.iter().find(|(k, _)| k == n).unwrap().1.clone())
}

fn recommended(answer: &Answer) -> Recommended {
    let upgrade = ["name", "arch", "installed", "candidate"];
    let patch = ["id", "severity", "reason"];
    let ty = Type::record([
        ("upgrades", Type::list(record(&upgrade))),
        (
            "patches",
            Type::list(record(&["id", "title", "severity", "reason"])),
        ),
        ("notes", Type::list(Type::STRING)),
    ])
    .unwrap();
    let value = parse_ok(answer, ty);
    let part = |name: &str| {
        value
            .unwrap_record()
            .find(|(k, _)| k == name)
            .unwrap()
            .1
            .into_owned()
    };
    Recommended {
        upgrades: part("upgrades")
            .unwrap_list()
            .map(|u| fields(&u, upgrade))
            .collect(),
        patches: part("patches")
            .unwrap_list()
            .map(|p| fields(&p, patch))
            .collect(),
        notes: strings(&part("notes")),
    }
}

fn outcome_type() -> Type {
    Type::record([
        ("id", Type::STRING),
        ("ok", Type::BOOL),
        ("detail", Type::STRING),
    ])
    .unwrap()
}

fn outcome(value: &Value) -> Outcome {
    let mut id = String::new();
    let mut ok = false;
    let mut detail = String::new();
    for (name, v) in value.unwrap_record() {
        match name.as_ref() {
            "id" => id = v.unwrap_string().into_owned(),
            "ok" => ok = v.unwrap_bool(),
            _ => detail = v.unwrap_string().into_owned(),
        }
    }
    (id, ok, detail)
}

fn outcomes(answer: &Answer) -> Vec<Outcome> {
    let value = parse_ok(answer, Type::list(outcome_type()));
    value.unwrap_list().map(|o| outcome(&o)).collect()
}

/// The registry, the provider and the published proxy.
struct Service {
    _dir: tempfile::TempDir,
    registry: RegistryHandle,
    provider: Arc<PatchProvider>,
    _serving: ServiceHandle,
    vendor: SigningKey,
}

impl Service {
    async fn start() -> Service {
        let dir = tempfile::tempdir().unwrap();
        let indexes = dir.path().join("indexes");
        std::fs::create_dir(&indexes).unwrap();
        let list = "example.org_debian_dists_stable_main_binary-amd64_Packages";
        std::fs::write(indexes.join(list), PACKAGES).unwrap();
        let provider = Arc::new(
            PatchProvider::open(&PatchConfig {
                catalog: Some(catalog()),
                indexes: IndexSource::Folder(indexes),
                ..PatchConfig::default()
            })
            .unwrap(),
        );
        let serving = provider
            .clone()
            .service()
            .serve(
                "127.0.0.1:0".parse().unwrap(),
                &Identity::generate().unwrap(),
            )
            .await
            .unwrap();
        let registry = courier_test_support::start_registry(courier_test_support::short_leases(
            &dir.path().join("registry"),
        ))
        .await;
        let vendor = SigningKey::from_bytes(&[7; 32]);
        let bundle = BundleBuilder::new(courier_proxy_artifacts::PATCH)
            .name("acme/patch")
            .version("1.0.0")
            .endpoint(serving.local_addr().to_string())
            .provider_pin(serving.pin())
            .sign(&vendor)
            .unwrap();
        let link = RegistryClient::connect(registry.local_addr(), registry.pin(), "vendor")
            .await
            .unwrap();
        link.authenticate(&vendor).await.unwrap();
        bundle
            .register_once(&link, &vendor, Duration::from_secs(60))
            .await
            .unwrap();
        link.close();
        Service {
            _dir: dir,
            registry,
            provider,
            _serving: serving,
            vendor,
        }
    }

    /// A client of `machine` whose questions get `answer`.
    async fn client(&self, machine: &Machine, answer: OperatorAnswer) -> Client {
        let key = SigningKey::from_bytes(&[100; 32]);
        let mut config = ClientConfig::new(TrustStore::from_keys([VendorKey::of(&self.vendor)]));
        config.key = Some(key.clone());
        config.policy = machine.policy(answer);
        config.facts = Some(machine.facts.clone());
        config.report = ReportMode::Inline;
        let h = &self.registry;
        let link = RegistryClient::connect(h.local_addr(), h.pin(), "patch-client")
            .await
            .unwrap();
        link.authenticate(&key).await.unwrap();
        link.register_client(ClientProfile::default())
            .await
            .unwrap();
        Client::new(link, config).unwrap()
    }
}

async fn call(client: &Client, call: &str) -> Answer {
    let report = client
        .call_str(&format!("courier:patch/delivery.{call}"))
        .await
        .unwrap();
    report.answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_install_roll_back_report_and_come_off_through_the_sandbox() {
    let service = tokio::time::timeout(Duration::from_secs(30), Service::start())
        .await
        .unwrap();
    let machine = Machine::new();
    let original = machine.listing();
    let yes = service.client(&machine, OperatorAnswer::ApproveAll).await;
    let no = service.client(&machine, OperatorAnswer::DenyAll).await;
    let limit = Duration::from_secs(60);

    // What applies: the two catalog patches and the two upgrades the index has for the
    // installed packages (not for the one removed, nor the one up to date).
    let answer = tokio::time::timeout(limit, call(&yes, "recommend()"))
        .await
        .unwrap();
    let recommended = recommended(&answer);
    let upgrades = [
        ["courier-hello", "all", "1.0-1", "1.0-2"],
        ["libgreet1", "amd64", "2:3.0-1", "2:3.1-1"],
    ]
    .map(|u| u.map(str::to_owned));
    assert_eq!(recommended.upgrades, upgrades);
    let offered: Vec<(&str, &str)> = recommended
        .patches
        .iter()
        .map(|[id, severity, _]| (id.as_str(), severity.as_str()))
        .collect();
    assert_eq!(
        offered,
        [("hello-1.1", "important"), ("hello-config-2", "low")]
    );
    assert!(
        recommended
            .patches
            .iter()
            .all(|[.., reason]| !reason.is_empty())
    );
    let kept = service
        .provider
        .store()
        .inventory(&machine.client_id())
        .unwrap()
        .unwrap();
    assert_eq!(kept.inventory.os_release, "Debian GNU/Linux 12 (bookworm)");
    assert_eq!(
        kept.inventory.packages.len(),
        3,
        "{:?}",
        kept.inventory.packages
    );

    // Declined: nothing changes, and the provider hears so.
    let declined = outcomes(
        &tokio::time::timeout(limit, call(&no, "apply([])"))
            .await
            .unwrap(),
    );
    let ids: Vec<(&str, bool)> = declined
        .iter()
        .map(|(id, ok, _)| (id.as_str(), *ok))
        .collect();
    assert_eq!(ids, [("hello-1.1", false), ("hello-config-2", false)]);
    assert!(
        declined.iter().all(|(.., d)| d.starts_with("declined")),
        "{declined:?}"
    );
    assert_eq!(machine.listing(), original);
    let reports = service
        .provider
        .store()
        .reports(&machine.client_id())
        .unwrap();
    let stages: Vec<Stage> = reports[0].report.entries.iter().map(|e| e.stage).collect();
    assert_eq!(stages, [Stage::Declined, Stage::Declined]);

    // Everything: hello-1.1 in place and healthy, hello-config-2 rolled back, the upgrades
    // said and not run (no apt-upgrade command is lent).
    let applied = outcomes(
        &tokio::time::timeout(limit, call(&yes, "apply([])"))
            .await
            .unwrap(),
    );
    let ids: Vec<(&str, bool)> = applied
        .iter()
        .map(|(id, ok, _)| (id.as_str(), *ok))
        .collect();
    assert_eq!(
        ids,
        [
            ("hello-1.1", true),
            ("hello-config-2", false),
            ("packages", false)
        ],
        "{applied:?}"
    );
    assert!(applied[1].2.contains("GREETING is empty"), "{applied:?}");
    assert!(
        applied[2]
            .2
            .starts_with("would upgrade 2 packages (courier-hello, libgreet1)"),
        "{applied:?}"
    );
    assert_eq!(machine.hello(), "Hello, world\n");
    assert_eq!(machine.applied(), ["hello-1.1"]);
    let before = tempfile::tempdir().unwrap();
    copy_tree(&catalog().join("managed-1.0"), before.path());
    assert_eq!(
        contents(&machine.listing()),
        with_patch(&service.provider, before.path(), "hello-1.1"),
        "hello-1.1's files in place, hello-config-2's rolled back byte for byte"
    );
    let reports = service
        .provider
        .store()
        .reports(&machine.client_id())
        .unwrap();
    let last = &reports.last().unwrap().report;
    let stages: Vec<(&str, Stage)> = last
        .entries
        .iter()
        .map(|e| (e.id.as_str(), e.stage))
        .collect();
    assert_eq!(
        stages,
        [
            ("hello-1.1", Stage::Applied),
            ("hello-config-2", Stage::Failed),
            ("packages", Stage::NotUpgraded),
        ]
    );

    // The second run: nothing to do but say the upgrades again.
    let after_first = machine.listing();
    let again = outcomes(
        &tokio::time::timeout(limit, call(&yes, "apply([])"))
            .await
            .unwrap(),
    );
    let ids: Vec<&str> = again.iter().map(|(id, ..)| id.as_str()).collect();
    assert_eq!(ids, ["packages"], "{again:?}");
    let asked = outcomes(
        &tokio::time::timeout(limit, call(&yes, r#"apply(["hello-1.1"])"#))
            .await
            .unwrap(),
    );
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        !asked[0].1 && asked[0].2.contains("already applied"),
        "{asked:?}"
    );
    assert_eq!(machine.listing(), after_first);

    // Removal: a "no" changes nothing; a "yes" restores the tree as it was.
    let kept = tokio::time::timeout(limit, call(&no, r#"remove("hello-1.1")"#))
        .await
        .unwrap();
    let kept = outcome(&parse_ok(&kept, outcome_type()));
    assert!(!kept.1 && kept.2.starts_with("declined"), "{kept:?}");
    assert_eq!(machine.listing(), after_first);
    let removed = tokio::time::timeout(limit, call(&yes, r#"remove("hello-1.1")"#))
        .await
        .unwrap();
    let removed = outcome(&parse_ok(&removed, outcome_type()));
    assert_eq!(
        (removed.0.as_str(), removed.1),
        ("hello-1.1", true),
        "{removed:?}"
    );
    assert_eq!(machine.listing(), original);
    assert_eq!(machine.hello(), "Hello, wrold\n");
    assert!(machine.applied().is_empty());
}
