//! One test per bad input: each gets a typed error back, the registry keeps serving the
//! others, and what was stored before is still there.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{AUTH_DOMAIN, auth_message, sign};
use courier_protocol::{
    ErrorKind, Hello, LeaseId, PROTOCOL_VERSION, Request, Response, ServiceQuery, SignedManifest,
    VendorKey, codec,
};
use courier_registry::RegistryHandle;
use courier_transport::{ClientError, RegistryClient, client_endpoint, connect, read_one};
use std::time::Duration;

/// The first page of the lease table: a small, harmless request.
const LEASES: Request = Request::Leases {
    filter: courier_protocol::LeaseFilter {
        interface: None,
        vendor: None,
        name_prefix: None,
    },
    after: None,
    limit: 100,
};

/// A registry with one echo registration that every test checks survives.
async fn setup() -> (RegistryHandle, tempfile::TempDir, LeaseId) {
    let dir = tempfile::tempdir().unwrap();
    let h = start(config(dir.path())).await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let grant = v.register(echo(&acme, "acme/echo", 60_000)).await.unwrap();
    v.close();
    (h, dir, grant.lease)
}

/// The registry still answers a fresh client, and the stored registration is there.
async fn still_serving(h: &RegistryHandle, lease: LeaseId) {
    let c = client(h).await;
    let found = c
        .find(ServiceQuery {
            interface: "courier:echo/echo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|c| c.lease).collect::<Vec<_>>(),
        vec![lease]
    );
    c.close();
}

/// A connection that has said Hello, without the typed client.
async fn raw(h: &RegistryHandle) -> quinn::Connection {
    let ep = client_endpoint(h.local_addr()).unwrap();
    let conn = connect(&ep, h.local_addr(), h.pin(), Duration::from_secs(5))
        .await
        .unwrap();
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        agent: "raw".into(),
    });
    let resp: Response = courier_transport::call(&conn, &hello, 1 << 20)
        .await
        .unwrap();
    assert!(matches!(resp, Response::Welcome(_)));
    conn
}

/// Sends raw bytes on a new stream and reads the answer.
async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) -> Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    read_one(&mut recv, 1 << 20).await.unwrap()
}

fn error_kind(resp: Response) -> ErrorKind {
    match resp {
        Response::Error(e) => e.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frame() {
    let (h, _dir, lease) = setup().await;
    let conn = raw(&h).await;
    let mut frame = 3u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[250, 1, 2]);
    assert_eq!(
        error_kind(send_raw(&conn, &frame).await),
        ErrorKind::BadFrame
    );
    // Trailing bytes after a valid message are malformed too.
    let mut body = codec::encode(&LEASES);
    body.push(0);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    assert_eq!(
        error_kind(send_raw(&conn, &frame).await),
        ErrorKind::BadFrame
    );
    // The same connection still works.
    let resp = send_raw(&conn, &codec::encode_frame(&LEASES)).await;
    assert!(matches!(resp, Response::Leases(p) if p.leases.len() == 1));
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame() {
    let (h, _dir, lease) = setup().await;
    let conn = raw(&h).await;
    let frame = codec::encode_frame(&LEASES);
    // Header promises 100 bytes, 1 arrives.
    let mut short = 100u32.to_be_bytes().to_vec();
    short.extend_from_slice(&frame[4..]);
    assert_eq!(
        error_kind(send_raw(&conn, &short).await),
        ErrorKind::BadFrame
    );
    // Half a header, and an empty stream.
    assert_eq!(
        error_kind(send_raw(&conn, &[0, 0]).await),
        ErrorKind::BadFrame
    );
    assert_eq!(error_kind(send_raw(&conn, &[]).await), ErrorKind::BadFrame);
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_header() {
    let (h, _dir, lease) = setup().await;
    let conn = raw(&h).await;
    // Refused from the header alone: nothing of that size is allocated or awaited.
    let resp = send_raw(&conn, &u32::MAX.to_be_bytes()).await;
    match resp {
        Response::Error(e) => {
            assert_eq!(e.kind, ErrorKind::BadFrame);
            assert!(e.message.contains("exceeds"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_version() {
    let (h, _dir, lease) = setup().await;
    let ep = client_endpoint(h.local_addr()).unwrap();
    let conn = connect(&ep, h.local_addr(), h.pin(), Duration::from_secs(5))
        .await
        .unwrap();
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION + 41,
        agent: "future".into(),
    });
    let resp: Response = courier_transport::call(&conn, &hello, 1 << 20)
        .await
        .unwrap();
    assert_eq!(error_kind(resp), ErrorKind::UnsupportedVersion);
    // And the registry closes the connection.
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == 1u32.into())
    );
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_not_hello() {
    let (h, _dir, lease) = setup().await;
    let ep = client_endpoint(h.local_addr()).unwrap();
    let conn = connect(&ep, h.local_addr(), h.pin(), Duration::from_secs(5))
        .await
        .unwrap();
    let resp: Response = courier_transport::call(&conn, &LEASES, 1 << 20)
        .await
        .unwrap();
    assert_eq!(error_kind(resp), ErrorKind::BadHandshake);
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == 2u32.into())
    );
    // A second Hello on a good connection is refused too, without closing it.
    let good = raw(&h).await;
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        agent: "again".into(),
    });
    assert_eq!(
        error_kind(send_raw(&good, &codec::encode_frame(&hello)).await),
        ErrorKind::BadHandshake
    );
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature() {
    let (h, _dir, lease) = setup().await;
    let acme = key(1);
    // Authentication with a signature over the wrong challenge.
    let conn = raw(&h).await;
    let req = Request::Authenticate {
        vendor: VendorKey::of(&acme),
        signature: sign(&acme, AUTH_DOMAIN, &auth_message(&[0; 32], &h.pin())),
    };
    assert_eq!(
        error_kind(send_raw(&conn, &codec::encode_frame(&req)).await),
        ErrorKind::BadSignature
    );
    // A manifest whose signature was tampered with.
    let v = vendor(&h, &acme).await;
    let mut reg = echo(&acme, "acme/echo2", 10_000);
    reg.manifest.signature[5] ^= 0x40;
    assert_eq!(
        kind(v.register(reg).await.unwrap_err()),
        ErrorKind::BadSignature
    );
    // A manifest signed by another key than the one it names.
    let mut reg = echo(&acme, "acme/echo2", 10_000);
    reg.manifest = SignedManifest::sign(&echo_manifest(&acme, "acme/echo2"), &key(9));
    assert_eq!(
        kind(v.register(reg).await.unwrap_err()),
        ErrorKind::BadSignature
    );
    // Registering without authenticating.
    let anon = client(&h).await;
    assert_eq!(
        kind(
            anon.register(echo(&acme, "acme/echo2", 10_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );
    // Registering a manifest of another vendor than the connection's.
    let other = vendor(&h, &key(3)).await;
    assert_eq!(
        kind(
            other
                .register(echo(&acme, "acme/echo2", 10_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotAuthenticated
    );
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_component() {
    let (h, _dir, lease) = setup().await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let mut reg = echo(&acme, "acme/echo2", 10_000);
    let mid = reg.component.len() / 2;
    reg.component[mid] ^= 0xff;
    assert_eq!(
        kind(v.register(reg.clone()).await.unwrap_err()),
        ErrorKind::BadComponent
    );
    reg.component.truncate(mid);
    assert_eq!(
        kind(v.register(reg).await.unwrap_err()),
        ErrorKind::BadComponent
    );
    // A correctly signed manifest over bytes that are no component at all.
    let junk = b"definitely not a wasm component".to_vec();
    let m = manifest(&acme, "acme/junk", &junk, &[(ECHO_IFACE, &["say"])]);
    let e = v
        .register(signed(&m, &acme, &junk, 10_000))
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::BadComponent);
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_exports_not_in_component() {
    let (h, _dir, lease) = setup().await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let echo_bytes = courier_proxy_artifacts::ECHO;
    // An interface the echo component does not export.
    let m = manifest(
        &acme,
        "acme/liar",
        echo_bytes,
        &[(ECHO_IFACE, &["say"]), (KV_IFACE, &["get"])],
    );
    match v
        .register(signed(&m, &acme, echo_bytes, 10_000))
        .await
        .unwrap_err()
    {
        ClientError::Registry(e) => {
            assert_eq!(e.kind, ErrorKind::BadComponent);
            assert!(e.message.contains(KV_IFACE), "{}", e.message);
        }
        other => panic!("{other}"),
    }
    // A function the interface does not have.
    let m = manifest(
        &acme,
        "acme/liar",
        echo_bytes,
        &[(ECHO_IFACE, &["say", "shout"])],
    );
    match v
        .register(signed(&m, &acme, echo_bytes, 10_000))
        .await
        .unwrap_err()
    {
        ClientError::Registry(e) => {
            assert_eq!(e.kind, ErrorKind::BadComponent);
            assert!(
                e.message.contains("courier:echo/echo@0.1.0.shout"),
                "{}",
                e.message
            );
        }
        other => panic!("{other}"),
    }
    // A version the component does not export.
    let m = manifest(
        &acme,
        "acme/liar",
        echo_bytes,
        &[("courier:echo/echo@0.2.0", &["say"])],
    );
    assert_eq!(
        kind(
            v.register(signed(&m, &acme, echo_bytes, 10_000))
                .await
                .unwrap_err()
        ),
        ErrorKind::BadComponent
    );
    assert!(
        h.registry().owner("acme/liar").is_none(),
        "a refused registration claims nothing"
    );
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_manifest() {
    let (h, _dir, lease) = setup().await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let mut m = echo_manifest(&acme, "acme/old");
    m.issued_at_ms = wall_now() - 7_200_000;
    m.not_after_ms = wall_now() - 3_600_000;
    let e = v
        .register(signed(&m, &acme, courier_proxy_artifacts::ECHO, 10_000))
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::BadManifest);
    // And one not valid yet.
    let mut m = echo_manifest(&acme, "acme/new");
    m.issued_at_ms = wall_now() + 3_600_000;
    m.not_after_ms = wall_now() + 7_200_000;
    let e = v
        .register(signed(&m, &acme, courier_proxy_artifacts::ECHO, 10_000))
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::BadManifest);
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_lease() {
    let (h, _dir, lease) = setup().await;
    let v = vendor(&h, &key(1)).await;
    let nobody = LeaseId([0xab; 16]);
    assert_eq!(
        kind(v.renew(nobody, 1_000).await.unwrap_err()),
        ErrorKind::UnknownLease
    );
    assert_eq!(
        kind(v.cancel(nobody).await.unwrap_err()),
        ErrorKind::UnknownLease
    );
    // Renewing needs authentication at all.
    let anon = client(&h).await;
    assert_eq!(
        kind(anon.renew(lease, 1_000).await.unwrap_err()),
        ErrorKind::NotAuthenticated
    );
    assert_eq!(
        kind(anon.cancel(lease).await.unwrap_err()),
        ErrorKind::NotAuthenticated
    );
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stream_carries_requests_in_order_until_a_bad_frame() {
    let (h, _dir, lease) = setup().await;
    let conn = raw(&h).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    for _ in 0..3 {
        send.write_all(&codec::encode_frame(&LEASES)).await.unwrap();
        let resp: Response = read_one(&mut recv, 1 << 20).await.unwrap();
        assert!(matches!(resp, Response::Leases(p) if p.leases.len() == 1));
    }
    // A handler's refusal leaves the stream open ...
    let cancel = Request::Cancel {
        lease: LeaseId([0x12; 16]),
    };
    send.write_all(&codec::encode_frame(&cancel)).await.unwrap();
    let resp: Response = read_one(&mut recv, 1 << 20).await.unwrap();
    assert_eq!(error_kind(resp), ErrorKind::NotAuthenticated);
    // ... a frame that does not decode ends it.
    send.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
    let resp: Response = read_one(&mut recv, 1 << 20).await.unwrap();
    assert_eq!(error_kind(resp), ErrorKind::BadFrame);
    let end: Option<Response> = courier_transport::FrameBuffer::new()
        .read(&mut recv, 1 << 20)
        .await
        .unwrap();
    assert!(end.is_none());
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_stream_carries_only_renewals() {
    let (h, _dir, lease) = setup().await;
    let conn = raw(&h).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&codec::encode_frame(&Request::KeepAlive))
        .await
        .unwrap();
    // A refused renewal leaves the stream open for the next one.
    for _ in 0..2 {
        let renew = Request::Renew {
            lease: LeaseId([0xcd; 16]),
            ttl_ms: 1_000,
        };
        send.write_all(&codec::encode_frame(&renew)).await.unwrap();
        let resp: Response = read_one(&mut recv, 1 << 20).await.unwrap();
        assert_eq!(error_kind(resp), ErrorKind::NotAuthenticated);
    }
    // Anything else is a protocol error that ends the stream.
    send.write_all(&codec::encode_frame(&LEASES)).await.unwrap();
    let resp: Response = read_one(&mut recv, 1 << 20).await.unwrap();
    assert_eq!(error_kind(resp), ErrorKind::BadFrame);
    let end: Option<Response> = courier_transport::FrameBuffer::new()
        .read(&mut recv, 1 << 20)
        .await
        .unwrap();
    assert!(end.is_none());
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_renewal_does_not_desynchronise_the_keep_alive_stream() {
    let (h, _dir, lease) = setup().await;
    let v = vendor(&h, &key(1)).await;
    v.renew(lease, 30_000).await.unwrap();
    // A caller that gives up before the answer arrives leaves an answer in flight ...
    let _ = tokio::time::timeout(Duration::from_nanos(1), v.renew(lease, 30_000)).await;
    // ... which the next renewal must not take for its own.
    let e = v.renew(LeaseId([0xef; 16]), 30_000).await.unwrap_err();
    assert_eq!(kind(e), ErrorKind::UnknownLease);
    assert_eq!(v.renew(lease, 40_000).await.unwrap().lease, lease);
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_or_cancel_by_another_key() {
    let (h, _dir, lease) = setup().await;
    let evil = vendor(&h, &key(2)).await;
    assert_eq!(
        kind(evil.renew(lease, 60_000).await.unwrap_err()),
        ErrorKind::NotOwner
    );
    assert_eq!(
        kind(evil.cancel(lease).await.unwrap_err()),
        ErrorKind::NotOwner
    );
    // A connection cannot switch to another key once authenticated.
    let e = evil.authenticate(&key(1)).await.unwrap_err();
    assert_eq!(kind(e), ErrorKind::BadHandshake);
    assert_eq!(
        kind(evil.cancel(lease).await.unwrap_err()),
        ErrorKind::NotOwner
    );
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_a_name_owned_by_another_key() {
    let (h, _dir, lease) = setup().await;
    let evil_key = key(2);
    let evil = vendor(&h, &evil_key).await;
    let e = evil
        .register(echo(&evil_key, "acme/echo", 60_000))
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::NotOwner);
    assert_eq!(
        h.registry().owner("acme/echo"),
        Some(VendorKey::of(&key(1)))
    );
    still_serving(&h, lease).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.server.max_connections = 4;
    let h = start(cfg).await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let lease = v
        .register(echo(&acme, "acme/echo", 60_000))
        .await
        .unwrap()
        .lease;
    // Fill the cap (the vendor holds one slot).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(client(&h).await);
    }
    // A flood beyond it: every one is told Busy (or refused outright), none is served.
    let ep = client_endpoint(h.local_addr()).unwrap();
    let flood =
        (0..24).map(|_| RegistryClient::connect_with(ep.clone(), h.local_addr(), h.pin(), "flood"));
    let results = futures_join(flood).await;
    let mut busy = 0;
    for r in results {
        match r {
            Err(ClientError::Registry(e)) => {
                assert_eq!(e.kind, ErrorKind::Busy);
                busy += 1;
            }
            Err(ClientError::Transport(_)) => {}
            Err(ClientError::Unexpected(u)) => panic!("unexpected answer: {u}"),
            Ok(_) => panic!("a connection over the cap was served"),
        }
    }
    assert!(
        busy > 0,
        "at least the first ones over the cap get a typed Busy"
    );
    // Those inside the cap are still served.
    v.renew(lease, 60_000).await.unwrap();
    for c in &held {
        assert_eq!(c.leases().await.unwrap().len(), 1);
    }
    // When a slot frees, a new client gets in.
    held.pop().unwrap().close();
    let h2 = &h;
    assert!(
        eventually(async || {
            match RegistryClient::connect(h2.local_addr(), h2.pin(), "later").await {
                Ok(c) => c.leases().await.is_ok(),
                Err(_) => false,
            }
        })
        .await
    );
    h.shutdown().await;
}

/// Runs the futures concurrently and collects their results in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
