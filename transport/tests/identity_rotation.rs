//! A registry's TLS identity rotates: peers pinned to the old key follow the statement the
//! old key signed during the overlap, and are refused with a typed error after it or when
//! the statement was not signed by the pinned key.
#![allow(clippy::unwrap_used)]

use courier_protocol::SpkiPin;
use courier_transport::{
    Identity, RotationRefused, ServerLimits, TransportError, client_endpoint, connect,
    connect_following, rotation_statement, server_endpoint,
};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(5);

/// Serves the identity kept in `dir`, accepting handshakes only.
fn serve(dir: &Path) -> (quinn::Endpoint, SocketAddr) {
    let (id, _) = Identity::load_or_generate(dir).unwrap();
    let ep = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &id,
        &ServerLimits::default(),
    )
    .unwrap();
    let addr = ep.local_addr().unwrap();
    let server = ep.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    (ep, addr)
}

/// A data dir with an identity; returns its pin and its key's PKCS#8 bytes.
fn identity_in(dir: &Path) -> (SpkiPin, Vec<u8>) {
    let (id, _) = Identity::load_or_generate(dir).unwrap();
    (id.pin(), std::fs::read(dir.join("tls-key.der")).unwrap())
}

fn statement_path(dir: &Path) -> std::path::PathBuf {
    dir.join("tls-rotations/0001.statement.der")
}

async fn follow(
    addr: SocketAddr,
    pin: SpkiPin,
) -> Result<Option<courier_transport::PinMove>, TransportError> {
    let ep = client_endpoint(addr).unwrap();
    connect_following(&ep, addr, pin, WAIT)
        .await
        .map(|(_, moved)| moved)
}

#[tokio::test]
async fn old_pin_moves_during_the_overlap_and_a_restart_keeps_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = identity_in(dir.path());
    let rotation = Identity::rotate(dir.path(), HOUR).unwrap();
    assert_eq!(rotation.from, old);
    assert_ne!(rotation.to, old);
    // What a restarted registry loads: the new key, presented with the statement.
    let (id, created) = Identity::load_or_generate(dir.path()).unwrap();
    assert!(!created);
    assert_eq!((id.pin(), id.rotations()), (rotation.to, 1));
    let (_server, addr) = serve(dir.path());
    let moved = follow(addr, old).await.unwrap().unwrap();
    assert_eq!((moved.from, moved.to), (old, rotation.to));
    assert_eq!(moved.overlap_ends, rotation.overlap_ends);
    // The new pin reaches it directly; a provider connection never follows rotations.
    assert_eq!(follow(addr, rotation.to).await.unwrap(), None);
    let ep = client_endpoint(addr).unwrap();
    assert!(matches!(
        connect(&ep, addr, old, WAIT).await,
        Err(TransportError::PinMismatch { .. })
    ));
}

#[tokio::test]
async fn a_chain_of_rotations_is_followed_from_any_pin_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = identity_in(dir.path());
    let second = Identity::rotate(dir.path(), HOUR).unwrap().to;
    let third = Identity::rotate(dir.path(), HOUR).unwrap().to;
    let (_server, addr) = serve(dir.path());
    for from in [first, second] {
        let moved = follow(addr, from).await.unwrap().unwrap();
        assert_eq!((moved.from, moved.to), (from, third));
    }
}

#[tokio::test]
async fn old_pin_after_the_overlap_is_refused_naming_the_pins() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_key) = identity_in(dir.path());
    let new = Identity::rotate(dir.path(), HOUR).unwrap().to;
    // The same statement, as it stands once its overlap has ended.
    let new_key = std::fs::read(dir.path().join("tls-key.der")).unwrap();
    let ended = SystemTime::now() - HOUR;
    let expired = rotation_statement(&old_key, &new_key, ended).unwrap();
    std::fs::write(statement_path(dir.path()), expired).unwrap();
    let (_server, addr) = serve(dir.path());
    match follow(addr, old).await {
        Err(TransportError::RotationRefused {
            pinned,
            presented,
            reason,
        }) if matches!(*reason, RotationRefused::Expired { from, to, .. } if (from, to) == (old, new)) =>
        {
            assert_eq!((pinned, presented), (old, new));
        }
        other => panic!("expected an expired rotation, got {other:?}"),
    }
    assert_eq!(follow(addr, new).await.unwrap(), None);
}

#[tokio::test]
async fn a_rotation_not_signed_by_the_pinned_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = identity_in(dir.path());
    let new = Identity::rotate(dir.path(), HOUR).unwrap().to;
    let new_key = std::fs::read(dir.path().join("tls-key.der")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = identity_in(other.path());
    // Presented as the old key's statement, but signed by another key.
    let forged = rotation_statement(&other_key, &new_key, SystemTime::now() + HOUR).unwrap();
    std::fs::write(statement_path(dir.path()), &forged).unwrap();
    let (server, addr) = serve(dir.path());
    match follow(addr, old).await {
        Err(TransportError::RotationRefused {
            reason, presented, ..
        }) => {
            assert_eq!(*reason, RotationRefused::BadSignature { from: old });
            assert_eq!(presented, new);
        }
        other => panic!("expected a bad signature, got {other:?}"),
    }
    server.close(0u32.into(), b"");
    // Signed by the other key and presented as its own: no path from the pin at all.
    std::fs::copy(
        other.path().join("tls-cert.der"),
        dir.path().join("tls-rotations/0001.issuer.der"),
    )
    .unwrap();
    let (_server, addr) = serve(dir.path());
    assert!(matches!(
        follow(addr, old).await,
        Err(TransportError::PinMismatch { expected, got }) if expected == old && got == new
    ));
}

#[test]
fn a_rotation_interrupted_before_its_statement_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = identity_in(dir.path());
    let stray = Identity::generate().unwrap();
    std::fs::write(
        dir.path().join("tls-next-cert.der"),
        stray.cert_chain()[0].as_ref(),
    )
    .unwrap();
    std::fs::write(dir.path().join("tls-next-key.der"), b"key").unwrap();
    let (id, _) = Identity::load_or_generate(dir.path()).unwrap();
    assert_eq!((id.pin(), id.rotations()), (old, 0));
    assert!(!dir.path().join("tls-next-cert.der").exists());
}

#[tokio::test]
async fn a_rotation_interrupted_after_its_statement_completes_at_the_next_start() {
    // Interrupted with the new key still beside the old one, or already in its place.
    for key_moved in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (old, old_key) = identity_in(dir.path());
        let old_cert = std::fs::read(dir.path().join("tls-cert.der")).unwrap();
        let rotation = Identity::rotate(dir.path(), HOUR).unwrap();
        let file = |name: &str| dir.path().join(name);
        std::fs::rename(file("tls-cert.der"), file("tls-next-cert.der")).unwrap();
        std::fs::write(file("tls-cert.der"), &old_cert).unwrap();
        if !key_moved {
            std::fs::rename(file("tls-key.der"), file("tls-next-key.der")).unwrap();
            std::fs::write(file("tls-key.der"), &old_key).unwrap();
        }
        let (id, created) = Identity::load_or_generate(dir.path()).unwrap();
        assert!(!created);
        assert_eq!((id.pin(), id.rotations()), (rotation.to, 1), "{key_moved}");
        assert!(!file("tls-next-cert.der").exists() && !file("tls-next-key.der").exists());
        let (_server, addr) = serve(dir.path());
        let moved = follow(addr, old).await.unwrap().unwrap();
        assert_eq!((moved.from, moved.to), (old, rotation.to));
    }
}
