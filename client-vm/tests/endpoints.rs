//! Where a proxy may send its provider calls: an endpoint the client's policy refuses is a
//! typed error naming the endpoint and the rule, and no packet reaches it (a UDP listener in
//! its place counts what arrives). A proxy from a remote registry may not reach this
//! machine's loopback addresses by default; from a registry on loopback it may.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Service, TestProvider, run};
use courier_client::{
    EndpointRule, EndpointRules, Policy, ProviderError, ProviderPool, ProviderTarget, ProxyOrigin,
    Sandbox, SandboxConfig,
};
use courier_proxy_artifacts as artifacts;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A UDP socket on loopback counting the datagrams it receives (a QUIC client's first
/// packet would be one).
struct Counter {
    target: ProviderTarget,
    received: Arc<AtomicUsize>,
}

impl Counter {
    async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while socket.recv_from(&mut buf).await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            target: ProviderTarget {
                endpoints: vec![addr.to_string()],
                pin: courier_protocol::SpkiPin([5; 32]),
            },
            received,
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

async fn call(pool: &ProviderPool, target: &ProviderTarget) -> Result<(), ProviderError> {
    pool.call(
        target,
        "say",
        b"hi".to_vec(),
        Duration::from_millis(300),
        1024,
    )
    .await
    .map(|_| ())
}

fn refused_by(err: ProviderError, endpoint: &str) -> EndpointRule {
    let ProviderError::Refused(refusal) = err else {
        panic!("expected a refusal, got {err}")
    };
    assert!(refusal.endpoint.starts_with(endpoint), "{refusal}");
    assert!(refusal.to_string().contains(endpoint), "{refusal}");
    refusal.rule
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_endpoint_is_a_typed_error_and_no_packet_reaches_it() {
    let counter = Counter::start().await;
    let endpoint = counter.target.endpoints[0].clone();
    let only = |rules: EndpointRules, origin| ProviderPool::with_rules(false, rules, origin);
    let cases = [
        (
            EndpointRules::default(),
            ProxyOrigin::Remote,
            EndpointRule::LocalFromRemote,
        ),
        (
            EndpointRules {
                hosts: vec!["provider.example".into()],
                ..EndpointRules::default()
            },
            ProxyOrigin::Local,
            EndpointRule::Hosts,
        ),
        (
            EndpointRules {
                networks: vec!["10.0.0.0/8".parse().unwrap()],
                ..EndpointRules::default()
            },
            ProxyOrigin::Local,
            EndpointRule::Networks,
        ),
        (
            EndpointRules {
                ports: vec![4433],
                ..EndpointRules::default()
            },
            ProxyOrigin::Local,
            EndpointRule::Ports,
        ),
    ];
    for (rules, origin, rule) in cases {
        let err = call(&only(rules, origin), &counter.target)
            .await
            .unwrap_err();
        assert_eq!(refused_by(err, &endpoint), rule);
    }
    // Give a stray packet time to land: none did.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counter.received(), 0);

    // The counter does see a client that is allowed to try (it answers nothing, so the
    // attempt times out): the loopback rule bends for a registry on loopback, or for a
    // policy that allows it.
    let allowed = EndpointRules {
        local_from_remote: true,
        ..EndpointRules::default()
    };
    for pool in [
        only(EndpointRules::default(), ProxyOrigin::Local),
        only(allowed, ProxyOrigin::Remote),
    ] {
        let before = counter.received();
        let err = call(&pool, &counter.target).await.unwrap_err();
        assert!(matches!(err, ProviderError::Timeout(_)), "{err}");
        assert!(counter.received() > before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_registrys_proxy_cannot_reach_a_provider_on_loopback() {
    let provider = TestProvider::start(Service::Echo).await;
    let say = r#"courier:echo/echo.say("hi")"#;
    // From a registry on loopback (every test, the demo), the proxy reaches its provider.
    let local = Sandbox::new(Policy::default(), SandboxConfig::default()).unwrap();
    let out = run(&local, artifacts::ECHO, provider.target(), say)
        .await
        .unwrap();
    assert!(out.answer.is_ok(), "{}", out.answer);
    // From a remote one, the same proxy is refused its provider: it sees the refusal as
    // its provider call's error, and the run records it.
    let remote = Sandbox::new(
        Policy::default(),
        SandboxConfig {
            proxy_origin: ProxyOrigin::Remote,
            ..SandboxConfig::default()
        },
    )
    .unwrap();
    let out = run(&remote, artifacts::ECHO, provider.target(), say)
        .await
        .unwrap();
    assert!(!out.answer.is_ok());
    assert!(
        out.answer.text().contains("refused by the policy"),
        "{}",
        out.answer
    );
    let [failure] = &out.logs.provider_failures[..] else {
        panic!("{:?}", out.logs.provider_failures)
    };
    assert!(matches!(
        failure,
        ProviderError::Refused(r) if r.rule == EndpointRule::LocalFromRemote
    ));
}
