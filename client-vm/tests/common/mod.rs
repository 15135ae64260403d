//! Test helpers: a tiny provider speaking the provider protocol over pinned QUIC (echo and
//! key-value services), and sandbox shortcuts.
#![allow(clippy::unwrap_used, dead_code)]

use courier_client::invoke::{CallSpec, prepare};
use courier_client::{
    Compiled, Policy, ProviderTarget, RunFailure, RunOutput, Sandbox, SandboxConfig,
};
use courier_protocol::PROTOCOL_VERSION;
use courier_protocol::wire::provider::{Call, ProviderHello, Reply};
use courier_transport::{Identity, ServerLimits, read_frame, server_endpoint, write_frame};
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
                    let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
                    let Ok(hello) = read_frame::<ProviderHello>(&mut recv, 1024).await else {
                        return;
                    };
                    let _ = write_frame(&mut send, &ProviderHello { version: hello.version.min(PROTOCOL_VERSION) }).await;
                    let _ = send.finish();
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let kv = kv.clone();
                        tokio::spawn(async move {
                            let Ok(call) = read_frame::<Call>(&mut recv, 1 << 20).await else {
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
    let invocation = prepare(compiled.component(), &compiled.interfaces().exports, &spec).unwrap();
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
