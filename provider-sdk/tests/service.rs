//! Providers served over loopback QUIC: the example services, concurrency, the request cap,
//! unknown methods, handler panics, pinning, protocol versions and graceful shutdown.
#![allow(clippy::unwrap_used)]

use courier_example_services::{KvStore, echo_service, kv, kv_service_with};
use courier_protocol::provider::ProviderHello;
use courier_protocol::{PROTOCOL_VERSION, SpkiPin};
use courier_provider::service::close_code;
use courier_provider::{
    ProviderCallError, ProviderClient, ProviderConnectError, ServiceBuilder, ServiceHandle,
};
use courier_transport::{Identity, TransportError};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

async fn start(service: ServiceBuilder) -> ServiceHandle {
    let identity = Identity::generate().unwrap();
    service
        .serve("127.0.0.1:0".parse().unwrap(), &identity)
        .await
        .unwrap()
}

async fn client(handle: &ServiceHandle) -> ProviderClient {
    ProviderClient::connect(handle.local_addr(), handle.pin())
        .await
        .unwrap()
}

fn provider_error(r: Result<Vec<u8>, ProviderCallError>) -> String {
    match r {
        Err(ProviderCallError::Provider(message)) => message,
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn echo_answers_many_concurrent_calls() {
    let handle = start(echo_service()).await;
    let a = client(&handle).await;
    let b = client(&handle).await;
    assert_eq!(a.call("say", "hi").await.unwrap(), b"echo: hi");
    let mut calls = JoinSet::new();
    for i in 0..200 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        calls.spawn(async move {
            let reply = c.call("say", format!("m{i}")).await.unwrap();
            assert_eq!(String::from_utf8(reply).unwrap(), format!("echo: m{i}"));
        });
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap();
    }
    assert!(provider_error(a.call("say", vec![0xff, 0xfe]).await).contains("UTF-8"));
    handle.shutdown().await;
}

#[tokio::test]
async fn kv_keeps_real_state_across_connections() {
    let store = KvStore::default();
    let handle = start(kv_service_with(store.clone())).await;
    let c = client(&handle).await;
    assert_eq!(c.call("get", "a").await.unwrap(), b"");
    assert_eq!(c.call("set", kv::encode_set("a", "1")).await.unwrap(), b"");
    assert_eq!(c.call("get", "a").await.unwrap(), b"\x011");

    let mut calls = JoinSet::new();
    for i in 0..100 {
        let c = c.clone();
        calls.spawn(async move {
            c.call("set", kv::encode_set(&format!("k{i:03}"), &format!("v{i}")))
                .await
        });
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap().unwrap();
    }
    // A second connection sees the same state.
    let other = client(&handle).await;
    let keys = kv::decode_keys_reply(&other.call("keys", Vec::new()).await.unwrap()).unwrap();
    assert_eq!(keys.len(), 101);
    assert_eq!(keys[0], "a");
    assert_eq!(keys[1], "k000");
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        kv::decode_get_reply(&other.call("get", "k042").await.unwrap())
            .unwrap()
            .as_deref(),
        Some("v42")
    );
    assert_eq!(other.call("delete", "a").await.unwrap(), [1]);
    assert_eq!(other.call("delete", "a").await.unwrap(), [0]);
    assert_eq!(store.len(), 100);
    assert!(provider_error(c.call("set", vec![0, 0]).await).contains("shorter"));
    assert!(provider_error(c.call("keys", "x").await).contains("no payload"));
    handle.shutdown().await;
}

#[tokio::test]
async fn unknown_method_is_an_error_reply() {
    let handle = start(echo_service()).await;
    let c = client(&handle).await;
    let message = provider_error(c.call("shout", "hi").await);
    assert_eq!(message, "unknown method \"shout\"");
    // The connection is still good.
    assert_eq!(c.call("say", "x").await.unwrap(), b"echo: x");
    handle.shutdown().await;
}

#[tokio::test]
async fn oversized_requests_are_refused_and_the_provider_keeps_serving() {
    let handle = start(echo_service().max_request_size(1024)).await;
    let c = client(&handle).await;
    assert_eq!(
        c.call("say", "a".repeat(1024)).await.unwrap().len(),
        1024 + 6
    );
    // Just over the cap, and far over it (the provider stops reading).
    for size in [1025, 4 * 1024 * 1024] {
        let message = provider_error(c.call("say", "a".repeat(size)).await);
        assert!(
            message.contains("exceeds the provider's cap of 1024 bytes"),
            "{message}"
        );
    }
    assert_eq!(
        c.call("say", "still here").await.unwrap(),
        b"echo: still here"
    );
    let fresh = client(&handle).await;
    assert_eq!(fresh.call("say", "new").await.unwrap(), b"echo: new");
    handle.shutdown().await;
}

#[tokio::test]
async fn one_stream_carries_calls_in_order_and_a_stop_ends_idle_streams() {
    use courier_protocol::provider::{Call, Reply};
    use courier_transport::{StreamPool, read_one, write_frame};
    let handle = start(echo_service().shutdown_grace(Duration::from_secs(60))).await;
    let c = client(&handle).await;
    let (mut send, mut recv) = c.connection().open_bi().await.unwrap();
    for i in 0..3 {
        let call = Call {
            method: "say".into(),
            payload: format!("m{i}").into_bytes(),
        };
        write_frame(&mut send, &call).await.unwrap();
        let reply: Reply = read_one(&mut recv, 1024).await.unwrap();
        assert_eq!(reply, Reply::Ok(format!("echo: m{i}").into_bytes()));
    }
    // A pool keeps its stream between calls.
    let pool = StreamPool::new();
    let say = Call {
        method: "say".into(),
        payload: b"again".to_vec(),
    };
    for _ in 0..3 {
        let reply: Reply = pool
            .request(c.connection(), &say, 1024, |_: &Reply| true)
            .await
            .unwrap();
        assert_eq!(reply, Reply::Ok(b"echo: again".to_vec()));
        assert_eq!(pool.len(), 1);
    }
    // Streams left idle do not hold a graceful shutdown for its (60 s) grace period.
    let started = Instant::now();
    handle.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(30));
    let end: Option<Reply> = courier_transport::FrameBuffer::new()
        .read(&mut recv, 1024)
        .await
        .unwrap_or(None);
    assert!(end.is_none());
}

#[tokio::test]
async fn a_panicking_handler_is_an_error_reply() {
    let service = echo_service().method("boom", |_p: Vec<u8>| async move {
        if true {
            panic!("handler bug");
        }
        Ok(Vec::new())
    });
    let handle = start(service).await;
    let c = client(&handle).await;
    assert!(provider_error(c.call("boom", "").await).contains("panicked"));
    assert_eq!(c.call("say", "ok").await.unwrap(), b"echo: ok");
    handle.shutdown().await;
}

#[tokio::test]
async fn wrong_pin_is_refused() {
    let handle = start(echo_service()).await;
    let other = Identity::generate().unwrap().pin();
    match ProviderClient::connect(handle.local_addr(), other).await {
        Err(ProviderConnectError::Transport(TransportError::PinMismatch { expected, got })) => {
            assert_eq!(expected, other);
            assert_eq!(got, handle.pin());
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    assert!(matches!(
        ProviderClient::connect(handle.local_addr(), SpkiPin([0; 32])).await,
        Err(ProviderConnectError::Transport(
            TransportError::PinMismatch { .. }
        ))
    ));
    handle.shutdown().await;
}

#[tokio::test]
async fn another_protocol_version_is_closed() {
    let handle = start(echo_service()).await;
    let endpoint = courier_transport::client_endpoint(handle.local_addr()).unwrap();
    let conn = courier_transport::connect(
        &endpoint,
        handle.local_addr(),
        handle.pin(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let answer: Result<ProviderHello, _> = courier_transport::call(
        &conn,
        &ProviderHello {
            version: PROTOCOL_VERSION + 1,
        },
        64,
    )
    .await;
    assert!(answer.is_err());
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, close_code::UNSUPPORTED_VERSION.into());
            assert!(String::from_utf8_lossy(&close.reason).contains("unsupported version"));
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    // Garbage instead of a Hello closes with BAD_HANDSHAKE; others are unaffected.
    let conn = courier_transport::connect(
        &endpoint,
        handle.local_addr(),
        handle.pin(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let _ =
        courier_transport::call::<_, ProviderHello>(&conn, &"not a hello".to_string(), 64).await;
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, close_code::BAD_HANDSHAKE.into());
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    assert_eq!(
        client(&handle).await.call("say", "ok").await.unwrap(),
        b"echo: ok"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish() {
    let service = echo_service().method("slow", |p: Vec<u8>| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(p)
    });
    let handle = start(service).await;
    let (addr, pin) = (handle.local_addr(), handle.pin());
    let c = client(&handle).await;
    let mut slow = JoinSet::new();
    for i in 0..8u8 {
        let c = c.clone();
        slow.spawn(async move { c.call("slow", vec![i]).await });
    }
    // Let the calls reach the provider, then shut down while they run.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    handle.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut answers = Vec::new();
    while let Some(r) = slow.join_next().await {
        answers.push(r.unwrap().unwrap()[0]);
    }
    answers.sort_unstable();
    assert_eq!(answers, (0..8).collect::<Vec<u8>>());
    // Nothing is served any more.
    assert!(c.call("say", "late").await.is_err());
    let again = ProviderClient::connect_with(
        courier_transport::client_endpoint(addr).unwrap(),
        addr,
        pin,
        courier_provider::ClientOptions {
            connect_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    assert!(again.is_err());
}

#[tokio::test]
async fn shutdown_gives_up_on_stuck_calls_after_the_grace() {
    let service = echo_service()
        .method("stuck", |_p: Vec<u8>| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Vec::new())
        })
        .shutdown_grace(Duration::from_millis(200));
    let handle = start(service).await;
    let c = client(&handle).await;
    let stuck = tokio::spawn({
        let c = c.clone();
        async move { c.call("stuck", "").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    handle.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        stuck.await.unwrap(),
        Err(ProviderCallError::Transport(_))
    ));
}

#[tokio::test]
async fn slow_handlers_time_out() {
    let service = echo_service()
        .method("stuck", |_p: Vec<u8>| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Vec::new())
        })
        .call_timeout(Duration::from_millis(100));
    let handle = start(service).await;
    let c = client(&handle).await;
    assert!(provider_error(c.call("stuck", "").await).contains("timed out"));
    assert_eq!(c.call("say", "ok").await.unwrap(), b"echo: ok");
    handle.shutdown().await;
}
