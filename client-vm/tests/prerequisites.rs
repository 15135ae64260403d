//! Self-installing prerequisites end to end over loopback, every part real: signed
//! `echo-needs` and `installer` proxies registered at a real registry, each with its own
//! provider (`InstallService`); the client runs their predicates and installers in the
//! sandbox against a real managed directory. A three-deep chain installs deepest first
//! and is recorded in the ledger; a cycle and a chain past the depth cap install nothing;
//! a failure at depth 2 undoes the chain in reverse; a predicate that still names what was
//! installed (a lying installer) is caught by the second check; a "no" installs nothing;
//! a missing package goes through the lent command; updates are offered and applied.
#![allow(clippy::unwrap_used)]

mod common;

use common::key;
use courier_client::{
    Answer, CallError, Client, ClientConfig, ExtraArgs, FactSources, HostFacts, LentCommand,
    OperatorAnswer, OperatorMode, Policy, Preopen, PrerequisiteError, ReportMode, Requirement,
    TrustStore,
};
use courier_example_services::install::InstallService;
use courier_install_api::{File, Need, Plan};
use courier_protocol::{SigningKey, VendorKey};
use courier_provider::{BundleBuilder, ServiceHandle};
use courier_registry::RegistryHandle;
use courier_transport::{Identity, RegistryClient};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SAY: &str = r#"courier:echo/echo.say("hi")"#;

/// A registry, a vendor, and the providers it started.
struct World {
    _dir: tempfile::TempDir,
    registry: RegistryHandle,
    vendor: SigningKey,
    at_vendor: RegistryClient,
    providers: Vec<ServiceHandle>,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let registry = common::registry(dir.path()).await;
        let vendor = key(1);
        let at_vendor = RegistryClient::connect(registry.local_addr(), registry.pin(), "vendor")
            .await
            .unwrap();
        at_vendor.authenticate(&vendor).await.unwrap();
        World {
            _dir: dir,
            registry,
            vendor,
            at_vendor,
            providers: Vec::new(),
        }
    }

    /// Serves `service` and registers its proxy as `name@version` (an installer with
    /// `provides` set from its plan).
    async fn publish(&mut self, name: &str, version: &str, service: InstallService) {
        self.publish_with(name, version, service, false).await;
    }

    async fn publish_with(
        &mut self,
        name: &str,
        version: &str,
        service: InstallService,
        staged: bool,
    ) {
        let proxy = service.proxy();
        let provides = service.plan.as_ref().map(|p| p.provides.clone());
        let handle = service
            .service()
            .serve(
                "127.0.0.1:0".parse().unwrap(),
                &Identity::generate().unwrap(),
            )
            .await
            .unwrap();
        let mut bundle = BundleBuilder::new(proxy).name(name).version(version);
        if let Some(p) = provides {
            bundle = bundle.attribute("provides", p);
        }
        let signed = bundle
            .endpoint(handle.local_addr().to_string())
            .provider_pin(handle.pin())
            .sign(&self.vendor)
            .unwrap();
        if staged {
            let mut request = signed.register_request(Duration::from_secs(60));
            request.staged = true;
            self.at_vendor.register(request).await.unwrap();
        } else {
            signed
                .register_once(&self.at_vendor, &self.vendor, Duration::from_secs(60))
                .await
                .unwrap();
        }
        self.providers.push(handle);
    }

    /// A client lending `machine`'s managed directory, answering `answer`, keeping its
    /// state in `machine`.
    async fn client(&self, machine: &Machine, answer: OperatorAnswer, depth: usize) -> Client {
        let mut trust = TrustStore::new();
        trust.add(VendorKey::of(&self.vendor)).unwrap();
        let mut config = ClientConfig::new(trust);
        config.policy = machine.policy(answer);
        config.facts = Some(machine.facts());
        config.report = ReportMode::Inline;
        config.lookup_ttl = Duration::ZERO;
        config.state_dir = Some(machine.state());
        config.prerequisite_depth = depth;
        let registry = RegistryClient::connect(
            self.registry.local_addr(),
            self.registry.pin(),
            "prerequisites-test",
        )
        .await
        .unwrap();
        Client::new(registry, config).unwrap()
    }
}

/// One client machine: its managed directory and its state directory.
struct Machine {
    dir: tempfile::TempDir,
    commands: Vec<LentCommand>,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("managed")).unwrap();
        std::fs::write(
            dir.path().join("status"),
            "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12\n\n",
        )
        .unwrap();
        Machine {
            dir,
            commands: Vec::new(),
        }
    }

    fn managed(&self) -> PathBuf {
        self.dir.path().join("managed")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The dpkg status file the `packages` fact is read from.
    fn status(&self) -> PathBuf {
        self.dir.path().join("status")
    }

    /// The facts, read from this machine's status file.
    fn facts(&self) -> HostFacts {
        let sources = FactSources {
            dpkg_status: self.status(),
            apk_installed: self.dir.path().join("no-apk"),
            os_release: vec![],
        };
        HostFacts::gather_from(&sources, &allowed_facts())
    }

    fn policy(&self, answer: OperatorAnswer) -> Policy {
        Policy {
            grant_host_info: true,
            allowed_facts: allowed_facts(),
            operator: OperatorMode::Unattended(answer),
            preopen: Some(Preopen {
                host: self.managed(),
                guest: "/managed".into(),
                writable: true,
            }),
            commands: self.commands.clone(),
            ..Policy::default()
        }
    }

    /// Every file under the managed directory, `path=contents`, sorted.
    fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.managed(), &self.managed(), &mut out);
        out.sort();
        out
    }
}

fn allowed_facts() -> std::collections::BTreeSet<String> {
    ["managed-dir".to_string(), "packages".to_string()].into()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            out.push(format!(
                "{name}={}",
                std::fs::read_to_string(&path).unwrap()
            ));
        }
    }
}

fn needs(interfaces: &[&str]) -> Vec<Need> {
    interfaces
        .iter()
        .map(|i| Need::Service {
            interface: (*i).into(),
            version: "^1".into(),
        })
        .collect()
}

/// An installer of `provides` at `version` writing `files`, needing `needs`.
fn installer(
    provides: &str,
    version: &str,
    needs: Vec<Need>,
    files: &[(&str, &str)],
) -> InstallService {
    InstallService {
        needs,
        plan: Some(Plan {
            provides: provides.into(),
            version: version.into(),
            files: files
                .iter()
                .map(|(path, contents)| File {
                    path: (*path).into(),
                    contents: contents.as_bytes().to_vec(),
                })
                .collect(),
        }),
    }
}

fn app(needs: Vec<Need>) -> InstallService {
    InstallService { needs, plan: None }
}

fn prerequisite_error(
    result: Result<courier_client::CallReport, CallError>,
) -> (PrerequisiteError, Vec<courier_client::Unwound>) {
    match result {
        Err(CallError::Prerequisites { error, unwound }) => (*error, unwound),
        other => panic!("expected a prerequisite failure, got {other:?}"),
    }
}

/// The chain acme/app -> a -> b -> c, each installer writing one file.
async fn chain(world: &mut World, b_files: &[(&str, &str)]) {
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:chain/a"])))
        .await;
    let a = installer(
        "acme:chain/a",
        "1.0.0",
        needs(&["acme:chain/b"]),
        &[("a.txt", "A")],
    );
    world.publish("acme/a-installer", "1.0.0", a).await;
    let b = installer("acme:chain/b", "1.2.0", needs(&["acme:chain/c"]), b_files);
    world.publish("acme/b-installer", "1.2.0", b).await;
    let c = installer("acme:chain/c", "1.0.0", vec![], &[("lib/c.txt", "C")]);
    world.publish("acme/c-installer", "1.0.0", c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_deep_chain_installs_deepest_first_and_is_recorded() {
    let mut world = World::new().await;
    chain(&mut world, &[("b.txt", "B")]).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;

    let report = client.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    let installed: Vec<(String, String, usize)> = report
        .installed
        .iter()
        .map(|i| (i.requirement.to_string(), i.by.clone(), i.depth))
        .collect();
    assert_eq!(
        installed,
        [
            (
                "acme:chain/c ^1".to_string(),
                "acme/c-installer 1.0.0".to_string(),
                3
            ),
            ("acme:chain/b ^1".into(), "acme/b-installer 1.2.0".into(), 2),
            ("acme:chain/a ^1".into(), "acme/a-installer 1.0.0".into(), 1),
        ]
    );
    assert_eq!(
        machine.listing(),
        [
            ".installed/acme.chain.a=1.0.0\n",
            ".installed/acme.chain.b=1.2.0\n",
            ".installed/acme.chain.c=1.0.0\n",
            "acme.chain.a/a.txt=A",
            "acme.chain.b/b.txt=B",
            "acme.chain.c/lib/c.txt=C",
        ]
    );
    let ledger: Vec<String> = client.installed().iter().map(|e| e.key()).collect();
    assert_eq!(ledger, ["acme:chain/c", "acme:chain/b", "acme:chain/a"]);

    // In place: the next call installs nothing; a new process reads the same ledger.
    assert!(client.call_str(SAY).await.unwrap().installed.is_empty());
    drop(client);
    let again = world.client(&machine, OperatorAnswer::DenyAll, 4).await;
    assert_eq!(again.installed().len(), 3);
    assert!(again.call_str(SAY).await.unwrap().installed.is_empty());

    // The same chain past a cap of 2 is refused before anything runs.
    let fresh = Machine::new();
    let capped = world.client(&fresh, OperatorAnswer::ApproveAll, 2).await;
    let (error, unwound) = prerequisite_error(capped.call_str(SAY).await);
    match error {
        PrerequisiteError::TooDeep { chain, cap } => {
            assert_eq!(cap, 2);
            assert_eq!(
                chain,
                [
                    "acme/app 1.0.0",
                    "acme:chain/a ^1",
                    "acme:chain/b ^1",
                    "acme:chain/c ^1"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(unwound.is_empty());
    assert!(fresh.listing().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_is_refused_with_its_chain_and_installs_nothing() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:cyc/a"])))
        .await;
    let a = installer("acme:cyc/a", "1.0.0", needs(&["acme:cyc/b"]), &[("a", "A")]);
    world.publish("acme/a-installer", "1.0.0", a).await;
    let b = installer("acme:cyc/b", "1.0.0", needs(&["acme:cyc/a"]), &[("b", "B")]);
    world.publish("acme/b-installer", "1.0.0", b).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 8).await;

    let result = client.call_str(SAY).await;
    let message = format!("{}", result.as_ref().unwrap_err());
    let (error, unwound) = prerequisite_error(result);
    match error {
        PrerequisiteError::Cycle { chain } => assert_eq!(
            chain,
            [
                "acme/app 1.0.0",
                "acme:cyc/a ^1",
                "acme:cyc/b ^1",
                "acme:cyc/a ^1"
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        message,
        "prerequisites in a cycle: acme/app 1.0.0 -> acme:cyc/a ^1 -> acme:cyc/b ^1 -> acme:cyc/a ^1"
    );
    assert!(unwound.is_empty());
    assert!(machine.listing().is_empty());
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_depth_two_undoes_the_chain_in_reverse() {
    let mut world = World::new().await;
    // b writes its first file, then meets a path outside its directory: it fails halfway.
    chain(&mut world, &[("b.txt", "B"), ("../escape.txt", "evil")]).await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;

    let (error, unwound) = prerequisite_error(client.call_str(SAY).await);
    match &error {
        PrerequisiteError::InstallFailed { chain, by, reason } => {
            assert_eq!(
                chain,
                &["acme/app 1.0.0", "acme:chain/a ^1", "acme:chain/b ^1"]
            );
            assert_eq!(by, "acme/b-installer 1.2.0");
            assert!(reason.contains("../escape.txt"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let undone: Vec<(String, bool)> = unwound
        .iter()
        .map(|u| (u.requirement.to_string(), u.result.is_ok()))
        .collect();
    assert_eq!(
        undone,
        [
            ("acme:chain/b ^1".to_string(), true),
            ("acme:chain/c ^1".to_string(), true)
        ]
    );
    assert_eq!(unwound[1].result.as_deref(), Ok("removed acme:chain/c"));
    // Nothing of the chain is left: no file, no marker, no ledger entry; nothing escaped.
    assert!(machine.listing().is_empty(), "{:?}", machine.listing());
    assert!(!machine.dir.path().join("escape.txt").exists());
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_installer_is_caught_by_the_second_check_and_a_no_installs_nothing() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:lie/a"])))
        .await;
    // It claims (signs) that it provides acme:lie/a, but installs something else.
    let mut liar = installer("acme:lie/other", "1.0.0", vec![], &[("x", "X")]);
    liar.plan.as_mut().unwrap().provides = "acme:lie/other".into();
    world
        .publish_liar("acme/a-installer", liar, "acme:lie/a")
        .await;
    let machine = Machine::new();

    let declining = world.client(&machine, OperatorAnswer::DenyAll, 4).await;
    let (error, unwound) = prerequisite_error(declining.call_str(SAY).await);
    assert!(
        matches!(error, PrerequisiteError::Declined { .. }),
        "{error:?}"
    );
    assert!(unwound.is_empty());
    assert!(machine.listing().is_empty());
    drop(declining);

    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let (error, unwound) = prerequisite_error(client.call_str(SAY).await);
    match error {
        PrerequisiteError::StillMissing { proxy, missing } => {
            assert_eq!(proxy, "acme/app 1.0.0");
            assert_eq!(
                missing,
                [Requirement::Service {
                    interface: "acme:lie/a".into(),
                    version: "^1".into()
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(unwound.len(), 1);
    assert!(machine.listing().is_empty(), "{:?}", machine.listing());
    assert!(client.installed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prerequisite_nobody_installs_is_named() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:none/x"])))
        .await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let result = client.call_str(SAY).await;
    assert_eq!(
        result.as_ref().unwrap_err().to_string(),
        "cannot install acme/app 1.0.0 -> acme:none/x ^1: \
         no installer in the registry provides acme:none/x ^1"
    );
    assert!(matches!(
        prerequisite_error(result).0,
        PrerequisiteError::NoInstaller { .. }
    ));
}

impl World {
    /// Registers `service`'s installer claiming to provide `claims`.
    async fn publish_liar(&mut self, name: &str, service: InstallService, claims: &str) {
        let handle = service
            .clone()
            .service()
            .serve(
                "127.0.0.1:0".parse().unwrap(),
                &Identity::generate().unwrap(),
            )
            .await
            .unwrap();
        BundleBuilder::new(service.proxy())
            .name(name)
            .version("1.0.0")
            .attribute("provides", claims)
            .endpoint(handle.local_addr().to_string())
            .provider_pin(handle.pin())
            .sign(&self.vendor)
            .unwrap()
            .register_once(&self.at_vendor, &self.vendor, Duration::from_secs(60))
            .await
            .unwrap();
        self.providers.push(handle);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_package_is_installed_through_the_lent_command() {
    let mut world = World::new().await;
    let mut needs = needs(&[]);
    needs.push(Need::Package("libglyph1".into()));
    world.publish("acme/app", "1.0.0", app(needs)).await;
    let mut machine = Machine::new();
    // The package manager here appends to the status file the packages fact is read from.
    let status = machine.status();
    let paragraph =
        "Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0-1\n\n";
    machine.commands = vec![LentCommand {
        name: "install-package".into(),
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!("printf '{paragraph}' \"$0\" >> {}", status.display()),
        ],
        extra_args: ExtraArgs::PackageNames,
        timeout: Duration::from_secs(10),
        confirm: false,
    }];
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    let report = client.call_str(SAY).await.unwrap();
    assert_eq!(report.answer, Answer::Ok(r#"ok("echo: hi")"#.into()));
    assert_eq!(report.installed.len(), 1);
    assert_eq!(
        report.installed[0].requirement.to_string(),
        "package libglyph1"
    );
    assert_eq!(report.installed[0].by, "install-package");
    assert!(
        std::fs::read_to_string(&status)
            .unwrap()
            .contains("Package: libglyph1")
    );
    let ledger: Vec<String> = client.installed().iter().map(|e| e.key()).collect();
    assert_eq!(ledger, ["package libglyph1"]);
    assert!(client.call_str(SAY).await.unwrap().installed.is_empty());

    // Without the command, the package cannot be installed, and that is said.
    let bare = Machine::new();
    let client = world.client(&bare, OperatorAnswer::ApproveAll, 4).await;
    let (error, _) = prerequisite_error(client.call_str(SAY).await);
    assert!(
        matches!(error, PrerequisiteError::NoPackageCommand { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_offered_from_the_ledger_and_applied() {
    let mut world = World::new().await;
    world
        .publish("acme/app", "1.0.0", app(needs(&["acme:fonts/glyphs"])))
        .await;
    let v = |version: &str, text: &str| {
        installer(
            "acme:fonts/glyphs",
            version,
            vec![],
            &[("glyphs.txt", text)],
        )
    };
    world
        .publish("acme/glyphs", "1.4.0", v("1.4.0", "old"))
        .await;
    let machine = Machine::new();
    let client = world.client(&machine, OperatorAnswer::ApproveAll, 4).await;
    assert_eq!(client.call_str(SAY).await.unwrap().installed.len(), 1);
    assert!(client.check_updates().await.unwrap().offers.is_empty());

    // 1.5.0 is published; 1.6.0 is only staged, so no client sees it yet.
    world
        .publish("acme/glyphs", "1.5.0", v("1.5.0", "new"))
        .await;
    world
        .publish_with("acme/glyphs", "1.6.0", v("1.6.0", "staged"), true)
        .await;
    let check = client.check_updates().await.unwrap();
    let offered: Vec<(String, String, String)> = check
        .offers
        .iter()
        .map(|o| {
            (
                o.provides.clone(),
                o.installed.to_string(),
                o.offered.to_string(),
            )
        })
        .collect();
    assert_eq!(
        offered,
        [(
            "acme:fonts/glyphs".to_string(),
            "1.4.0".to_string(),
            "1.5.0".to_string()
        )]
    );
    let applied = client.apply_updates(check.offers).await;
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0].result.as_deref().unwrap(),
        "installed acme:fonts/glyphs 1.5.0 (1 files)"
    );
    assert_eq!(
        machine.listing(),
        [
            ".installed/acme.fonts.glyphs=1.5.0\n",
            "acme.fonts.glyphs/glyphs.txt=new"
        ]
    );
    match &client.installed()[0] {
        courier_client::LedgerEntry::Service {
            version,
            required_by,
            ..
        } => {
            assert_eq!(version.to_string(), "1.5.0");
            assert_eq!(required_by, "acme/app 1.0.0");
        }
        other => panic!("{other:?}"),
    }
    assert!(client.check_updates().await.unwrap().offers.is_empty());
    // The app still runs, with nothing more to install.
    assert!(client.call_str(SAY).await.unwrap().installed.is_empty());
}
