//! The world the prerequisites tests run in: a registry and a vendor publishing
//! `InstallService`s (each with its own provider), and client machines with a managed
//! directory, a dpkg status file and a state directory.
#![allow(dead_code)]

use crate::common::{key, registry};
use courier_client::{
    CallError, CallReport, Client, ClientConfig, FactSources, HostFacts, LentCommand,
    OperatorAnswer, OperatorMode, Policy, Preopen, PrerequisiteError, ReportMode, TrustStore,
    Unwound,
};
use courier_example_services::install::InstallService;
use courier_install_api::{File, Need, Plan};
use courier_protocol::{SigningKey, VendorKey};
use courier_provider::{BundleBuilder, ServiceHandle};
use courier_registry::RegistryHandle;
use courier_transport::{Identity, RegistryClient};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SAY: &str = r#"courier:echo/echo.say("hi")"#;

/// A registry, a vendor, and the providers it started.
pub struct World {
    _dir: tempfile::TempDir,
    pub registry: RegistryHandle,
    pub vendor: SigningKey,
    pub at_vendor: RegistryClient,
    pub providers: Vec<ServiceHandle>,
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(dir.path()).await;
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
    pub async fn publish(&mut self, name: &str, version: &str, service: InstallService) {
        self.publish_with(name, version, service, How::Live).await;
    }

    pub async fn publish_with(
        &mut self,
        name: &str,
        version: &str,
        service: InstallService,
        how: How,
    ) {
        self.publish_full(name, version, service, how, &[]).await;
    }

    /// As [`World::publish_with`], with more attributes.
    pub async fn publish_full(
        &mut self,
        name: &str,
        version: &str,
        service: InstallService,
        how: How,
        attributes: &[(&str, &str)],
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
        for (k, v) in attributes {
            bundle = bundle.attribute(*k, *v);
        }
        let signed = bundle
            .endpoint(handle.local_addr().to_string())
            .provider_pin(handle.pin())
            .sign(&self.vendor)
            .unwrap();
        match how {
            How::Live => {
                signed
                    .register_once(&self.at_vendor, &self.vendor, Duration::from_secs(60))
                    .await
                    .unwrap();
            }
            How::Staged | How::WithoutStatement => {
                let mut request = signed.register_request(Duration::from_secs(60));
                request.staged = how == How::Staged;
                self.at_vendor.register(request).await.unwrap();
            }
        }
        self.providers.push(handle);
    }

    /// A client lending `machine`'s managed directory, answering `answer`, keeping its
    /// state in `machine`.
    pub async fn client(&self, machine: &Machine, answer: OperatorAnswer, depth: usize) -> Client {
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

/// How a version is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Registered, with the vendor's freshness statement naming it current.
    Live,
    /// Staged: no client sees it until a rollout.
    Staged,
    /// Registered without a new statement (the one before still names the version before).
    WithoutStatement,
}

/// One client machine: its managed directory and its state directory.
pub struct Machine {
    pub dir: tempfile::TempDir,
    pub commands: Vec<LentCommand>,
    /// Facts proxies may see (by default `managed-dir` and `packages`).
    pub facts: std::collections::BTreeSet<String>,
}

impl Machine {
    pub fn new() -> Machine {
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
            facts: allowed_facts(),
        }
    }

    pub fn managed(&self) -> PathBuf {
        self.dir.path().join("managed")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The dpkg status file the `packages` fact is read from.
    pub fn status(&self) -> PathBuf {
        self.dir.path().join("status")
    }

    /// The facts, read from this machine's status file.
    pub fn facts(&self) -> HostFacts {
        let sources = FactSources {
            dpkg_status: self.status(),
            apk_installed: self.dir.path().join("no-apk"),
            os_release: vec![],
        };
        HostFacts::gather_from(&sources, &self.facts)
    }

    pub fn policy(&self, answer: OperatorAnswer) -> Policy {
        Policy {
            grant_host_info: true,
            allowed_facts: self.facts.clone(),
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
    pub fn listing(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.managed(), &self.managed(), &mut out);
        out.sort();
        out
    }
}

pub fn allowed_facts() -> std::collections::BTreeSet<String> {
    ["managed-dir".to_string(), "packages".to_string()].into()
}

pub fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
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

pub fn needs(interfaces: &[&str]) -> Vec<Need> {
    interfaces.iter().map(|i| need(i, "^1")).collect()
}

/// `interface` at `version` (a requirement).
pub fn need(interface: &str, version: &str) -> Need {
    Need::Service {
        interface: interface.into(),
        version: version.into(),
    }
}

/// An installer of `provides` at `version` writing `files`, needing `needs`.
pub fn installer(
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

pub fn app(needs: Vec<Need>) -> InstallService {
    InstallService { needs, plan: None }
}

pub fn prerequisite_error(
    result: Result<CallReport, CallError>,
) -> (PrerequisiteError, Vec<Unwound>) {
    match result {
        Err(CallError::Prerequisites { error, unwound }) => (*error, unwound),
        other => panic!("expected a prerequisite failure, got {other:?}"),
    }
}

/// The chain acme/app -> a -> b -> c, each installer writing one file.
pub async fn chain(world: &mut World, b_files: &[(&str, &str)]) {
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

impl World {
    /// Registers `service`'s installer claiming (signing) to provide `claims`, whatever
    /// its plan says.
    pub async fn publish_liar(&mut self, name: &str, service: InstallService, claims: &str) {
        self.publish_full(name, "1.0.0", service, How::Live, &[("provides", claims)])
            .await;
    }
}
