//! Admission caps: a flood from one peer (requests over its connection's rate, more
//! connections than one address may hold, requests held in flight) gets typed `Busy`
//! answers, while everyone else goes on being served.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{ContentHash, ErrorKind, Hello, PROTOCOL_VERSION, Request, Response, codec};
use courier_transport::{ClientError, RegistryClient, connect, read_one};
use std::net::SocketAddr;
use std::time::Duration;

fn is_busy(e: &ClientError) -> bool {
    matches!(e, ClientError::Registry(w) if w.kind == ErrorKind::Busy)
}

/// A client endpoint bound to another loopback address: another peer, as the registry sees it.
fn endpoint_at(ip: [u8; 4]) -> quinn::Endpoint {
    quinn::Endpoint::client(SocketAddr::from((ip, 0))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_request_rate_is_told_busy_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.server.request_rate_per_connection = 20;
    let h = start(cfg).await;
    let acme = key(1);
    let v = vendor(&h, &acme).await;
    let lease = v
        .register(echo(&acme, "acme/echo", 60_000))
        .await
        .unwrap()
        .lease;

    // One-shot requests: the burst passes, the rest are refused with a typed Busy.
    let flooder = client(&h).await;
    let (mut ok, mut busy) = (0, 0);
    for _ in 0..100 {
        match flooder.leases().await {
            Ok(_) => ok += 1,
            Err(e) if is_busy(&e) => busy += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(busy > 0, "the flood was refused");
    assert!(
        (20..100).contains(&ok),
        "the burst passed, not the flood ({ok} served)"
    );

    // Renewals on the keep-alive stream count too, and the stream survives a refusal.
    let (mut renewed, mut refused) = (0, 0);
    for _ in 0..60 {
        match v.renew(lease, 60_000).await {
            Ok(_) => renewed += 1,
            Err(e) if is_busy(&e) => refused += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(refused > 0 && renewed > 0);

    // Another connection of the same machine is not held back by the flooder.
    let other = client(&h).await;
    assert_eq!(other.leases().await.unwrap().len(), 1);
    // And the flooder is served again once it slows down.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(flooder.leases().await.is_ok());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.server.max_connections_per_peer = 2;
    let h = start(cfg).await;
    let (addr, pin) = (h.local_addr(), h.pin());

    let ep = endpoint_at([127, 0, 0, 2]);
    let first = RegistryClient::connect_with(ep.clone(), addr, pin, "a")
        .await
        .unwrap();
    let _second = RegistryClient::connect_with(ep.clone(), addr, pin, "b")
        .await
        .unwrap();
    let third = RegistryClient::connect_with(ep.clone(), addr, pin, "c").await;
    assert!(
        third.as_ref().is_err_and(is_busy),
        "a third connection from 127.0.0.2 is told Busy: {third:?}"
    );

    // Another address still gets in.
    let elsewhere = RegistryClient::connect_with(endpoint_at([127, 0, 0, 3]), addr, pin, "d")
        .await
        .unwrap();
    assert!(elsewhere.leases().await.is_ok());

    // A freed slot can be used again.
    first.close();
    assert!(
        eventually(async || {
            match RegistryClient::connect_with(ep.clone(), addr, pin, "e").await {
                Ok(c) => c.leases().await.is_ok(),
                Err(_) => false,
            }
        })
        .await
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_held_in_flight_are_capped_for_the_whole_registry() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.server.max_requests_in_flight = 2;
    let h = start(cfg).await;

    // A slow peer holds two requests open: half a frame header each.
    let ep = endpoint_at([127, 0, 0, 2]);
    let conn = connect(&ep, h.local_addr(), h.pin(), Duration::from_secs(5))
        .await
        .unwrap();
    let hello = Request::Hello(Hello {
        version: PROTOCOL_VERSION,
        agent: "slow".into(),
    });
    let welcome: Response = courier_transport::call(&conn, &hello, 1 << 20)
        .await
        .unwrap();
    assert!(matches!(welcome, Response::Welcome(_)));
    let mut held = Vec::new();
    for _ in 0..2 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0]).await.unwrap();
        held.push((send, recv));
    }

    // Everyone's next request is refused at once with a typed Busy, not queued ...
    let c = client(&h).await;
    assert!(
        eventually(async || c.leases().await.as_ref().is_err_and(is_busy)).await,
        "the in-flight cap was not reached"
    );

    // ... until the slow requests complete (here: badly, with a typed error).
    for (mut send, mut recv) in held {
        send.write_all(&[0, 1, 0xff]).await.unwrap();
        send.finish().unwrap();
        let resp: Response = read_one(&mut recv, 1 << 20).await.unwrap();
        assert!(matches!(resp, Response::Error(e) if e.kind == ErrorKind::BadFrame));
    }
    assert!(eventually(async || c.leases().await.is_ok()).await);
    h.shutdown().await;
}

/// `component` with a custom section of about `extra` bytes appended: still a valid
/// component with the same exports, only bigger.
fn padded(component: &[u8], extra: usize) -> Vec<u8> {
    fn leb(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut section = Vec::new();
    leb(&mut section, b"padding".len());
    section.extend_from_slice(b"padding");
    section.resize(section.len() + extra, 0xab);
    let mut out = component.to_vec();
    out.push(0);
    leb(&mut out, section.len());
    out.extend_from_slice(&section);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_holds_no_more_than_its_room_and_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.server.response_timeout = Duration::from_secs(2);
    cfg.server.large_response_budget = 16 << 20;
    cfg.server.large_response_budget_per_peer = 8 << 20;
    let h = start(cfg).await;
    let acme = key(1);
    let big = padded(courier_proxy_artifacts::ECHO, 3 << 20);
    let m = manifest(&acme, "acme/big", &big, &[(ECHO_IFACE, &["say"])]);
    let v = vendor(&h, &acme).await;
    v.register(signed(&m, &acme, &big, 60_000)).await.unwrap();
    let (hash, size) = (ContentHash::of(&big), big.len() as u64);
    let at = |ip: [u8; 4]| {
        let ep = endpoint_at(ip);
        let (addr, pin) = (h.local_addr(), h.pin());
        async move {
            RegistryClient::connect_with(ep, addr, pin, "test")
                .await
                .unwrap()
        }
    };

    // A peer at 127.0.0.2 asks for the 3 MiB component and never reads: its answer holds
    // 3 MiB of its address's 8 MiB until it is cut off.
    let slow = at([127, 0, 0, 2]).await;
    let (mut send, mut recv) = slow.connection().open_bi().await.unwrap();
    send.write_all(&codec::encode_frame(&Request::Fetch { hash, lease: None }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Another fetch from the same address (which needs 6 MiB while it is built) does not
    // fit: told busy after a short wait; small requests are served as ever.
    let same = at([127, 0, 0, 2]).await;
    let err = same
        .fetch(hash, size, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(is_busy(&err), "{err}");
    assert_eq!(same.leases().await.unwrap().len(), 1);
    // Another address has room of its own.
    let other = at([127, 0, 0, 3]).await;
    assert_eq!(
        other
            .fetch(hash, size, Duration::from_secs(10))
            .await
            .unwrap(),
        big
    );

    // The peer that did not read has its stream reset once the response timeout has
    // passed; the room it held is free again.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut buf = vec![0u8; 64 << 10];
    let reset = loop {
        match recv.read(&mut buf).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the slow peer's answer was finished, not reset"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(reset, quinn::ReadError::Reset(code) if code.into_inner() == 4),
        "{reset}"
    );
    assert_eq!(
        same.fetch(hash, size, Duration::from_secs(10))
            .await
            .unwrap(),
        big
    );
    h.shutdown().await;
}
