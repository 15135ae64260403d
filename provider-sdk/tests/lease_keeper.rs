//! The lease keeper against a real registry on loopback with short leases: it registers,
//! renews, registers again when the registry forgets the lease, reconnects after a registry
//! restart, reports a refused bundle, stops when an operator revokes its lease, cancels
//! on shutdown, and follows a rotation of the registry's TLS identity (as a client does).
#![allow(clippy::unwrap_used)]

use courier_protocol::{AdminAction, LeaseId, SigningKey, SpkiPin, VendorKey};
use courier_provider::{Bundle, BundleBuilder, KeeperConfig, LeaseKeeper, LeaseState, WaitError};
use courier_registry::{Registry, RegistryHandle, ServerConfig};
use courier_transport::{
    ClientError, Identity, PinBook, RegistryClient, RotationRefused, TransportError,
    client_endpoint, rotation_statement,
};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

async fn start_registry(dir: &Path, listen: SocketAddr) -> RegistryHandle {
    init_logs();
    // After a restart the previous socket and store lock may take a moment to go away.
    let mut last = None;
    for _ in 0..50 {
        let server = ServerConfig {
            listen,
            ..ServerConfig::default()
        };
        match Registry::open(courier_test_support::short_leases(dir)) {
            Ok(r) => match courier_registry::serve(Arc::new(r), server).await {
                Ok(h) => return h,
                Err(e) => last = Some(e.to_string()),
            },
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("registry did not start: {last:?}");
}

fn bundle(key: &SigningKey) -> Bundle {
    BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name("acme/echo")
        .version("0.1.0")
        .endpoint("127.0.0.1:7901")
        .provider_pin(SpkiPin([7; 32]))
        .sign(key)
        .unwrap()
}

fn fast(ttl: Duration) -> KeeperConfig {
    KeeperConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        request_timeout: Duration::from_millis(500),
        ..KeeperConfig::new(ttl)
    }
}

fn start_keeper(h: &RegistryHandle, key: &SigningKey, ttl: Duration) -> LeaseKeeper {
    LeaseKeeper::start_with(h.local_addr(), h.pin(), key.clone(), bundle(key), fast(ttl))
}

/// Waits (at most 10 s) for a state matching `f`.
async fn state_where(
    rx: &mut watch::Receiver<LeaseState>,
    f: impl FnMut(&LeaseState) -> bool,
) -> LeaseState {
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(f))
        .await
        .expect("state not reached in time")
        .unwrap()
        .clone()
}

async fn live_leases(h: &RegistryHandle) -> Vec<LeaseId> {
    let c = RegistryClient::connect(h.local_addr(), h.pin(), "test")
        .await
        .unwrap();
    let leases = c
        .leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.lease)
        .collect();
    c.close();
    leases
}

#[tokio::test]
async fn registers_renews_and_cancels_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_registry(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let key = courier_provider::generate_key();
    let keeper = start_keeper(&h, &key, Duration::from_millis(400));
    let lease = keeper.wait_active().await.unwrap();
    assert_eq!(live_leases(&h).await, [lease]);

    // Renewed at about half of 400 ms: three renewals take well over one lease time.
    let mut rx = keeper.state();
    let state = state_where(
        &mut rx,
        |s| matches!(s, LeaseState::Active { renewals, .. } if *renewals >= 3),
    )
    .await;
    let LeaseState::Active {
        lease: renewed,
        ttl,
        ..
    } = state
    else {
        unreachable!()
    };
    assert_eq!(renewed, lease);
    assert_eq!(ttl, Duration::from_millis(400));
    assert_eq!(live_leases(&h).await, [lease]);

    assert_eq!(keeper.shutdown().await.unwrap(), Some(lease));
    assert_eq!(*rx.borrow(), LeaseState::Cancelled);
    assert!(live_leases(&h).await.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn registers_again_when_the_registry_forgets_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_registry(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let key = courier_provider::generate_key();
    let keeper = start_keeper(&h, &key, Duration::from_millis(300));
    let first = keeper.wait_active().await.unwrap();

    let registry = h.registry().clone();
    registry
        .cancel(registry.now(), &VendorKey::of(&key), first)
        .unwrap();
    assert!(live_leases(&h).await.is_empty());

    let mut rx = keeper.state();
    let state = state_where(&mut rx, |s| s.lease().is_some_and(|l| l != first)).await;
    let second = state.lease().unwrap();
    assert_eq!(live_leases(&h).await, [second]);

    assert_eq!(keeper.shutdown().await.unwrap(), Some(second));
    assert!(live_leases(&h).await.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_registry_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_registry(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let addr = h.local_addr();
    let key = courier_provider::generate_key();
    let keeper = start_keeper(&h, &key, Duration::from_millis(300));
    keeper.wait_active().await.unwrap();

    h.shutdown().await;
    let mut rx = keeper.state();
    let state = state_where(&mut rx, |s| matches!(s, LeaseState::Retrying { .. })).await;
    let LeaseState::Retrying { error, .. } = state else {
        unreachable!()
    };
    assert!(!error.is_empty());

    // The same data directory and address: the same pin, the stored lease comes back.
    let h = start_registry(dir.path(), addr).await;
    let state = state_where(&mut rx, |s| matches!(s, LeaseState::Active { .. })).await;
    let lease = state.lease().unwrap();
    assert_eq!(live_leases(&h).await, [lease]);

    assert_eq!(keeper.shutdown().await.unwrap(), Some(lease));
    assert!(live_leases(&h).await.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn a_refused_bundle_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_registry(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let key = courier_provider::generate_key();
    let expired = BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name("acme/echo")
        .version("0.1.0")
        .endpoint("127.0.0.1:7901")
        .provider_pin(SpkiPin([7; 32]))
        .issued_at(SystemTime::now() - Duration::from_secs(3600))
        .validity(Duration::from_secs(60))
        .sign(&key)
        .unwrap();
    let keeper = LeaseKeeper::start_with(
        h.local_addr(),
        h.pin(),
        key.clone(),
        expired,
        fast(Duration::from_secs(1)),
    );
    match keeper.wait_active().await {
        Err(WaitError::Failed(message)) => assert!(message.contains("expired"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(keeper.shutdown().await.unwrap(), None);

    // A registry presenting another key than the pinned one is never trusted.
    let keeper = LeaseKeeper::start_with(
        h.local_addr(),
        SpkiPin([9; 32]),
        key.clone(),
        bundle(&key),
        fast(Duration::from_secs(1)),
    );
    match keeper.wait_active().await {
        Err(WaitError::Failed(message)) => assert!(message.contains("pinned"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(live_leases(&h).await.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn a_lease_an_operator_revoked_stops_the_keeper_with_the_reason() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let operator = courier_provider::generate_key();
    let mut config = courier_test_support::short_leases(dir.path());
    config.operators = vec![VendorKey::of(&operator)];
    let h = courier_registry::serve(
        Arc::new(Registry::open(config).unwrap()),
        courier_test_support::loopback(),
    )
    .await
    .unwrap();
    let key = courier_provider::generate_key();
    let keeper = start_keeper(&h, &key, Duration::from_millis(400));
    let lease = keeper.wait_active().await.unwrap();

    let admin = RegistryClient::connect(h.local_addr(), h.pin(), "test")
        .await
        .unwrap();
    admin.authenticate(&operator).await.unwrap();
    let reason = "serves stale data".to_string();
    admin
        .admin(AdminAction::RevokeLease { lease, reason })
        .await
        .unwrap();

    // Told why on its next renewal, the keeper stops instead of registering again.
    let mut rx = keeper.state();
    let state = state_where(&mut rx, |s| matches!(s, LeaseState::Failed { .. })).await;
    let LeaseState::Failed { error } = state else {
        unreachable!()
    };
    assert!(error.contains("serves stale data"), "{error}");
    assert!(live_leases(&h).await.is_empty());
    assert_eq!(keeper.shutdown().await.unwrap(), None);
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_while_the_registry_is_down_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_registry(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let (addr, pin) = (h.local_addr(), h.pin());
    h.shutdown().await;
    let key = courier_provider::generate_key();
    let config = KeeperConfig {
        request_timeout: Duration::from_millis(200),
        ..fast(Duration::from_secs(1))
    };
    let keeper = LeaseKeeper::start_with(addr, pin, key.clone(), bundle(&key), config);
    let mut rx = keeper.state();
    state_where(
        &mut rx,
        |s| matches!(s, LeaseState::Retrying { attempt, .. } if *attempt >= 2),
    )
    .await;
    let started = std::time::Instant::now();
    assert_eq!(keeper.shutdown().await.unwrap(), None);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(*rx.borrow(), LeaseState::Cancelled);
}

/// The freshness statement served with the keeper's candidate, decoded and checked.
async fn served_statement(h: &RegistryHandle) -> Option<courier_protocol::FreshnessStatement> {
    let c = RegistryClient::connect(h.local_addr(), h.pin(), "test")
        .await
        .unwrap();
    let found = c
        .find(courier_protocol::ServiceQuery {
            interface: "courier:echo/echo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.close();
    let signed = found.into_iter().next()?.freshness?;
    Some(signed.verify().unwrap().into_inner())
}

#[tokio::test]
async fn the_keeper_publishes_a_fresh_statement_at_registration_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_registry(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let key = courier_provider::generate_key();
    // A lease of a minute (renewed every 30 s) and a statement every 150 ms: the keeper
    // wakes for statements between renewals.
    let config = KeeperConfig {
        freshness_validity: Duration::from_secs(2),
        freshness_interval: Duration::from_millis(150),
        ..fast(Duration::from_secs(60))
    };
    let keeper =
        LeaseKeeper::start_with(h.local_addr(), h.pin(), key.clone(), bundle(&key), config);
    keeper.wait_active().await.unwrap();
    // Published before the lease was reported active.
    let first = served_statement(&h)
        .await
        .expect("a statement at registration");
    assert_eq!(first.vendor, VendorKey::of(&key));
    assert_eq!(
        first.services.get("acme/echo").map(String::as_str),
        Some("0.1.0")
    );
    assert_eq!(first.expires_at_ms - first.issued_at_ms, 2_000);
    let mut later = first.clone();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        later = served_statement(&h).await.unwrap();
        if later.issued_at_ms > first.issued_at_ms {
            break;
        }
    }
    assert!(later.issued_at_ms > first.issued_at_ms, "no new statement");
    assert!(matches!(
        keeper.current(),
        LeaseState::Active { renewals: 0, .. }
    ));
    keeper.shutdown().await.unwrap();
    h.shutdown().await;
}

/// Connects as a client pinned to `pin`, with its pin moves kept in `pins`.
async fn client_with(
    h: &RegistryHandle,
    pin: SpkiPin,
    pins: &PinBook,
) -> Result<RegistryClient, ClientError> {
    let endpoint = client_endpoint(h.local_addr()).unwrap();
    RegistryClient::connect_recording(endpoint, h.local_addr(), pin, "client", pins).await
}

#[tokio::test]
async fn a_client_and_a_vendor_move_their_pin_during_the_overlap_and_keep_working_after() {
    let dir = tempfile::tempdir().unwrap();
    let pins = tempfile::tempdir().unwrap();
    let h = start_registry(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let (addr, old) = (h.local_addr(), h.pin());
    let old_key = std::fs::read(dir.path().join("tls-key.der")).unwrap();
    h.shutdown().await;
    let new = Identity::rotate(dir.path(), Duration::from_secs(3600))
        .unwrap()
        .to;

    // During the overlap: both are pinned to the old key and move to the new one.
    let h = start_registry(dir.path(), addr).await;
    assert_eq!(h.pin(), new);
    let vendor_pins = pins.path().join("vendor-pins");
    let config = KeeperConfig {
        registry_pins: PinBook::open(&vendor_pins).unwrap(),
        ..fast(Duration::from_millis(300))
    };
    let key = courier_provider::generate_key();
    let keeper = LeaseKeeper::start_with(addr, old, key.clone(), bundle(&key), config);
    let lease = keeper.wait_active().await.unwrap();
    let client_pins = pins.path().join("client-pins");
    let client = client_with(&h, old, &PinBook::open(&client_pins).unwrap())
        .await
        .unwrap();
    let moved = client.moved().unwrap();
    assert_eq!((moved.from, moved.to, client.pin()), (old, new, new));
    // Authentication signs over the key presented, which the registry checks.
    client
        .authenticate(&courier_provider::generate_key())
        .await
        .unwrap();
    assert_eq!(live_leases(&h).await, [lease]);
    for path in [&vendor_pins, &client_pins] {
        assert_eq!(PinBook::open(path).unwrap().follow(old), new, "{path:?}");
    }
    client.close();
    h.shutdown().await;
    let mut rx = keeper.state();
    state_where(&mut rx, |s| matches!(s, LeaseState::Retrying { .. })).await;

    // After the overlap: the registry's statement has ended.
    let new_key = std::fs::read(dir.path().join("tls-key.der")).unwrap();
    let ended = rotation_statement(
        &old_key,
        &new_key,
        SystemTime::now() - Duration::from_secs(60),
    );
    std::fs::write(
        dir.path().join("tls-rotations/0001.statement.der"),
        ended.unwrap(),
    )
    .unwrap();
    let h = start_registry(dir.path(), addr).await;
    let renewed = state_where(&mut rx, |s| matches!(s, LeaseState::Active { .. })).await;
    assert_eq!(renewed.lease(), Some(lease));
    assert_eq!(live_leases(&h).await, [lease]);
    // The client, started again with the old pin and its kept moves, reaches the registry.
    let again = client_with(&h, old, &PinBook::open(&client_pins).unwrap())
        .await
        .unwrap();
    assert_eq!((again.pin(), again.moved()), (new, None));
    again.close();
    // A client that never saw the rotation is refused, with both pins named.
    match client_with(&h, old, &PinBook::in_memory()).await {
        Err(ClientError::Transport(TransportError::RotationRefused {
            pinned,
            presented,
            reason,
        })) => {
            assert_eq!((pinned, presented), (old, new));
            assert!(
                matches!(*reason, RotationRefused::Expired { from, to, .. } if (from, to) == (old, new))
            );
        }
        other => panic!("expected an expired rotation, got {other:?}"),
    }
    assert_eq!(keeper.shutdown().await.unwrap(), Some(lease));
    h.shutdown().await;
}
