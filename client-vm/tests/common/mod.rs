//! Test helpers: a tiny provider speaking the provider protocol over pinned QUIC (echo and
//! key-value services), and sandbox shortcuts.
#![allow(clippy::unwrap_used, dead_code)]

pub mod hostile;

use courier_client::{
    CallSpec, Compiled, Invocation, Policy, ProviderTarget, RunFailure, RunOutput, Sandbox,
    SandboxConfig,
};
use courier_protocol::PROTOCOL_VERSION;
use courier_protocol::provider::{Call, ProviderHello, Reply};
use courier_transport::{Identity, ServerLimits, read_one, server_endpoint, write_frame};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Which service the test provider offers.
#[derive(Clone, Copy)]
pub enum Service {
    Echo,
    Kv,
}

/// A provider on loopback.
pub struct TestProvider {
    pub addr: SocketAddr,
    pub identity: Identity,
    endpoint: quinn::Endpoint,
}

impl TestProvider {
    pub async fn start(service: Service) -> Self {
        let identity = Identity::generate().unwrap();
        let endpoint = server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            &ServerLimits::default(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let kv: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let server = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let kv = kv.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    // Handshake on the first stream.
                    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                        return;
                    };
                    let Ok(hello) = read_one::<ProviderHello>(&mut recv, 1024).await else {
                        return;
                    };
                    let _ = write_frame(
                        &mut send,
                        &ProviderHello {
                            version: hello.version.min(PROTOCOL_VERSION),
                        },
                    )
                    .await;
                    let _ = send.finish();
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let kv = kv.clone();
                        tokio::spawn(async move {
                            let Ok(call) = read_one::<Call>(&mut recv, 1 << 20).await else {
                                return;
                            };
                            let reply = handle(service, &kv, call);
                            let _ = write_frame(&mut send, &reply).await;
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
        Self {
            addr,
            identity,
            endpoint,
        }
    }

    pub fn target(&self) -> ProviderTarget {
        ProviderTarget {
            endpoints: vec![self.addr.to_string()],
            pin: self.identity.pin(),
        }
    }

    pub fn stop(&self) {
        self.endpoint.close(0u32.into(), b"stop");
    }
}

fn handle(service: Service, kv: &Mutex<BTreeMap<String, String>>, call: Call) -> Reply {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match (service, call.method.as_str()) {
        (Service::Echo, "say") => Reply::Ok(format!("echo: {}", text(&call.payload)).into_bytes()),
        (Service::Kv, "get") => match kv.lock().unwrap().get(&text(&call.payload)) {
            None => Reply::Ok(vec![]),
            Some(v) => {
                let mut out = vec![1];
                out.extend_from_slice(v.as_bytes());
                Reply::Ok(out)
            }
        },
        (Service::Kv, "set") => {
            let p = &call.payload;
            if p.len() < 4 {
                return Reply::Err("short payload".into());
            }
            let n = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
            if p.len() < 4 + n {
                return Reply::Err("short key".into());
            }
            kv.lock()
                .unwrap()
                .insert(text(&p[4..4 + n]), text(&p[4 + n..]));
            Reply::Ok(vec![])
        }
        (Service::Kv, "delete") => {
            let had = kv.lock().unwrap().remove(&text(&call.payload)).is_some();
            Reply::Ok(vec![u8::from(had)])
        }
        (Service::Kv, "keys") => {
            let keys: Vec<String> = kv.lock().unwrap().keys().cloned().collect();
            Reply::Ok(keys.join("\n").into_bytes())
        }
        (_, m) => Reply::Err(format!("unknown method {m}")),
    }
}

pub fn sandbox(policy: Policy) -> Sandbox {
    Sandbox::new(policy, SandboxConfig::default()).unwrap()
}

pub async fn compile(sandbox: &Sandbox, bytes: &[u8]) -> Arc<Compiled> {
    sandbox.compile(Arc::from(bytes)).await.unwrap().0
}

/// Compiles (or reuses) `bytes` and runs `call` once.
pub async fn run(
    sandbox: &Sandbox,
    bytes: &[u8],
    target: ProviderTarget,
    call: &str,
) -> Result<RunOutput, RunFailure> {
    let compiled = compile(sandbox, bytes).await;
    let spec: CallSpec = call.parse().unwrap();
    let invocation =
        Invocation::prepare(compiled.component(), &compiled.interfaces().exports, &spec).unwrap();
    sandbox.run(&compiled, target, &invocation).await
}

/// A target nobody listens on.
pub fn nowhere() -> ProviderTarget {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    drop(sock);
    ProviderTarget {
        endpoints: vec![addr.to_string()],
        pin: Identity::generate().unwrap().pin(),
    }
}

/// Resident set size of this process, in bytes.
pub fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// ---------------------------------------------------------------------------------------
// A fake registry: it serves whatever candidates and payloads a test gives it, so tests can
// play a registry that lies (tampered bytes, expired or untrusted manifests, false claims).

use courier_protocol::{
    Candidate, ContentHash, Export, LeaseId, Manifest, Outcome, Request, Response, SignedFreshness,
    SignedManifest, SigningKey, VendorKey, Welcome,
};

#[derive(Default)]
pub struct FakeState {
    pub candidates: Vec<Candidate>,
    pub payloads: BTreeMap<ContentHash, Vec<u8>>,
    pub fetches: usize,
    pub finds: usize,
    pub reports: Vec<Outcome>,
    /// Key statements served as they are, valid or not (a lying registry).
    pub statements: Vec<courier_protocol::SignedKeyStatement>,
    /// Payloads are dripped a byte every 50 ms (an endless download for any real size).
    pub drip_payloads: bool,
    /// Directives served as they are (a lying registry's, if the test says so).
    pub directives: Vec<courier_protocol::Directive>,
    /// The undo reports received.
    pub undo_reports: Vec<courier_protocol::UndoReport>,
}

pub struct FakeRegistry {
    pub addr: SocketAddr,
    pub identity: Identity,
    pub state: Arc<Mutex<FakeState>>,
    _endpoint: quinn::Endpoint,
}

impl FakeRegistry {
    pub async fn start() -> Self {
        let identity = Identity::generate().unwrap();
        let endpoint = server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            &ServerLimits::default(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let state: Arc<Mutex<FakeState>> = Arc::default();
        let (server, st) = (endpoint.clone(), state.clone());
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let st = st.clone();
                        tokio::spawn(async move {
                            let Ok(req) = read_one::<Request>(&mut recv, 1 << 20).await else {
                                return;
                            };
                            let drip = matches!(req, Request::Fetch { .. })
                                && st.lock().unwrap().drip_payloads;
                            let resp = fake_answer(&st, req);
                            if drip {
                                let frame = courier_protocol::codec::encode_frame(&resp);
                                for b in frame {
                                    if send.write_all(&[b]).await.is_err() {
                                        return;
                                    }
                                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                }
                            }
                            let _ = write_frame(&mut send, &resp).await;
                            let _ = send.finish();
                        });
                    }
                });
            }
        });
        Self {
            addr,
            identity,
            state,
            _endpoint: endpoint,
        }
    }

    pub fn pin(&self) -> courier_protocol::SpkiPin {
        self.identity.pin()
    }

    /// A client's connection to this registry.
    pub async fn connect(&self) -> courier_transport::RegistryClient {
        courier_transport::RegistryClient::connect(self.addr, self.pin(), "test-client")
            .await
            .unwrap()
    }

    /// Offers `manifest` under a lease numbered `n`, with `payload` as its bytes, and the
    /// freshness statement its vendor would publish now (when the vendor is one of the
    /// tests' seeded keys: its version is current, for ten minutes).
    pub fn offer(&self, n: u8, manifest: SignedManifest, interface: &str, payload: &[u8]) {
        let m = manifest.peek().unwrap();
        let freshness = (0..=u8::MAX)
            .map(key)
            .find(|k| VendorKey::of(k) == m.vendor_key)
            .map(|k| courier_test_support::fresh_now(&k, &m.name, &m.version));
        self.offer_with(n, manifest, interface, payload, freshness);
    }

    /// Offers `manifest` like [`FakeRegistry::offer`], with `freshness` as its statement.
    pub fn offer_with(
        &self,
        n: u8,
        manifest: SignedManifest,
        interface: &str,
        payload: &[u8],
        freshness: Option<SignedFreshness>,
    ) {
        let hash = manifest.peek().unwrap().component_hash;
        let mut st = self.state.lock().unwrap();
        st.candidates.push(Candidate {
            lease: LeaseId([n; 16]),
            manifest,
            interface: interface.to_string(),
            remaining_ms: 60_000,
            freshness,
        });
        st.payloads.insert(hash, payload.to_vec());
    }

    pub fn fetches(&self) -> usize {
        self.state.lock().unwrap().fetches
    }

    pub fn reports(&self) -> Vec<Outcome> {
        self.state.lock().unwrap().reports.clone()
    }
}

fn fake_answer(st: &Mutex<FakeState>, req: Request) -> Response {
    let mut st = st.lock().unwrap();
    match req {
        Request::Hello(h) => Response::Welcome(Welcome {
            version: h.version,
            challenge: [9; 32],
        }),
        Request::Find(q) => {
            st.finds += 1;
            Response::Candidates(
                st.candidates
                    .iter()
                    .filter(|c| c.interface.starts_with(&q.interface))
                    .cloned()
                    .collect(),
            )
        }
        Request::Fetch { hash, .. } => {
            st.fetches += 1;
            match st.payloads.get(&hash) {
                Some(p) => Response::Payload(p.clone()),
                None => Response::Error(courier_protocol::WireError::new(
                    courier_protocol::ErrorKind::NotFound,
                    "no such component",
                )),
            }
        }
        Request::Report(o) => {
            st.reports.push(o);
            Response::Reported
        }
        Request::KeyStatements { .. } => Response::KeyStatements(st.statements.clone()),
        Request::Directives => Response::Directives(st.directives.clone()),
        Request::UndoReport(r) => {
            st.undo_reports.push(r);
            Response::UndoReported
        }
        // The fake takes any key at its word: it tests the client, not authentication.
        Request::Authenticate { .. } => Response::Authenticated,
        _ => Response::Error(courier_protocol::WireError::new(
            courier_protocol::ErrorKind::BadQuery,
            "not in the fake",
        )),
    }
}

pub const ECHO_IFACE: &str = "courier:echo/echo@0.1.0";
pub const KV_IFACE: &str = "courier:kv/store@0.1.0";

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn wall_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A manifest for `component` with its real exports and imports, pointing at `target`,
/// valid for an hour around now.
pub fn manifest_for(
    key: &SigningKey,
    name: &str,
    component: &[u8],
    target: &ProviderTarget,
) -> Manifest {
    let real = courier_protocol::inspect(component).unwrap();
    let now = wall_now();
    Manifest {
        name: name.into(),
        version: "1.0.0".into(),
        exports: real.exports,
        imports: real.imports,
        attributes: BTreeMap::new(),
        endpoints: target.endpoints.clone(),
        provider_pin: target.pin,
        issued_at_ms: now - 60_000,
        not_after_ms: now + 3_600_000,
        component_hash: ContentHash::of(component),
        component_size: component.len() as u64,
        vendor_key: VendorKey::of(key),
    }
}

pub fn export(interface: &str, functions: &[&str]) -> Export {
    Export {
        interface: interface.into(),
        functions: functions.iter().map(|f| f.to_string()).collect(),
    }
}

/// A registry on loopback with short leases, keeping its data in `dir`.
pub async fn registry(dir: &std::path::Path) -> courier_registry::RegistryHandle {
    courier_test_support::start_registry(courier_test_support::short_leases(dir)).await
}

/// The example echo provider on a loopback port, under an identity of its own.
pub async fn echo_provider() -> courier_provider::ServiceHandle {
    let id = Identity::generate().unwrap();
    courier_example_services::echo_service()
        .serve("127.0.0.1:0".parse().unwrap(), &id)
        .await
        .unwrap()
}

/// Polls `f` every 20 ms for up to 5 s until it is true.
pub async fn eventually<F: AsyncFnMut() -> bool>(mut f: F) -> bool {
    for _ in 0..250 {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
