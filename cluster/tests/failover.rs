//! Cluster nodes on a real etcd, in one process: a vendor's registration at the writer is
//! served, after the writer goes, by the standby that takes over (same lease, same
//! component bytes, copied beforehand), and the vendor's keeper renews it there; a second
//! node with a live node's name is refused; another cluster's data directory is refused;
//! etcd unreachable at start is an error naming the URLs. The standby's clock runs a minute
//! ahead of the writer's: the leases it takes over keep their time all the same.
#![allow(clippy::unwrap_used)]

mod common;

use common::{etcd, node_config, open_standby};
use courier_cluster::{Advert, ClusterError, Node, NodeConfig, Standby, Writer};
use courier_protocol::{ClusterNodes, ErrorKind, ServiceQuery, SigningKey, SpkiPin};
use courier_provider::{BundleBuilder, KeeperConfig, LeaseKeeper, LeaseState};
use courier_registry::{RegistryConfig, RegistryHandle, ServerConfig};
use courier_test_support::{key, short_leases, wall_now};
use courier_transport::{ClientError, Identity, RegistryClient};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

async fn join(urls: &[String], name: &str) -> Result<Arc<Node>, ClusterError> {
    common::join(urls, "t", name).await
}

/// A free UDP port on loopback, and the pin of the identity made in `dir`.
fn address_and_pin(dir: &Path) -> (SocketAddr, SpkiPin) {
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (identity, _) = Identity::load_or_generate(dir).unwrap();
    (addr, identity.pin())
}

/// Waits to be elected, stops serving as a standby (if it did), then opens the registry on
/// etcd and serves it at `listen`. `skew_ms`: how far this node's clock is ahead of the
/// others'.
async fn lead_and_serve(
    node: Arc<Node>,
    dir: PathBuf,
    listen: SocketAddr,
    skew_ms: u64,
    standby: Option<(Standby, RegistryHandle)>,
) -> (RegistryHandle, Writer) {
    let fence = node.lead().await.unwrap();
    if let Some((standby, handle)) = standby {
        handle.shutdown().await;
        drop(standby);
    }
    let writer = {
        let node = node.clone();
        tokio::task::spawn_blocking(move || {
            // A grace shorter than the quiet lease's 30 s, so that the takeover keeps its
            // time (a lease with less than a grace left would get the grace).
            let config = RegistryConfig {
                grace: Duration::from_secs(5),
                ..short_leases(&dir)
            };
            Writer::open(&node, &dir, fence, config, wall_now() + skew_ms)
        })
        .await
        .unwrap()
        .unwrap()
    };
    let server = ServerConfig {
        listen,
        ..courier_test_support::loopback()
    };
    let handle = courier_registry::serve(writer.registry().clone(), server)
        .await
        .unwrap();
    let advert = Advert {
        addr: handle.local_addr(),
        pin: handle.pin(),
    };
    tokio::task::spawn_blocking(move || node.advertise(&advert))
        .await
        .unwrap()
        .unwrap();
    (handle, writer)
}

fn echo_bundle(key: &SigningKey, name: &str) -> courier_provider::Bundle {
    BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name(name)
        .version("0.1.0")
        .endpoint("127.0.0.1:7901")
        .provider_pin(SpkiPin([7; 32]))
        .sign(key)
        .unwrap()
}

async fn echo_at(addr: SocketAddr, pin: SpkiPin) -> Vec<courier_protocol::Candidate> {
    let c = RegistryClient::connect(addr, pin, "test").await.unwrap();
    let found = c
        .find(ServiceQuery {
            interface: "courier:echo/echo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    c.close();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_the_writers_registrations_and_the_keeper_follows() {
    let dir = tempfile::tempdir().unwrap();
    let Some(member) = etcd(dir.path()) else {
        return;
    };
    let urls = vec![member.client_url()];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let (addr_a, pin_a) = address_and_pin(&dir_a);
    let (addr_b, pin_b) = address_and_pin(&dir_b);

    let a = join(&urls, "a").await.unwrap();
    let (handle_a, writer_a) = lead_and_serve(a.clone(), dir_a.clone(), addr_a, 0, None).await;
    assert_eq!(handle_a.pin(), pin_a);

    // B is a standby: it follows the writer's commits, answers lookups and fetches, and
    // copies the writer's components.
    let b = join(&urls, "b").await.unwrap();
    let standby = open_standby(&b, &dir_b).await;
    let standby_handle = courier_registry::serve(
        standby.registry().clone(),
        ServerConfig {
            listen: addr_b,
            ..courier_test_support::loopback()
        },
    )
    .await
    .unwrap();
    assert_eq!(standby_handle.pin(), pin_b);
    // B's clock runs 60 s ahead of A's: the leases it takes over must not lose 60 s.
    let b_serving = tokio::spawn(lead_and_serve(
        b.clone(),
        dir_b.clone(),
        addr_b,
        60_000,
        Some((standby, standby_handle)),
    ));
    let leader = {
        let b = b.clone();
        tokio::task::spawn_blocking(move || b.leader())
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(leader.as_deref(), Some("a"));

    let vendor = key(1);
    let keeper = LeaseKeeper::start_with(
        addr_a,
        pin_a,
        vendor.clone(),
        echo_bundle(&vendor, "acme/echo"),
        KeeperConfig {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            request_timeout: Duration::from_millis(800),
            other_nodes: vec![(addr_b, pin_b)],
            ..KeeperConfig::new(Duration::from_secs(2))
        },
    );
    let lease = tokio::time::timeout(Duration::from_secs(10), keeper.wait_active())
        .await
        .expect("registered at the writer in time")
        .unwrap();
    // A second vendor's 30 s lease, not renewed after the takeover.
    let quiet = key(2);
    let c = RegistryClient::connect(addr_a, pin_a, "test")
        .await
        .unwrap();
    c.authenticate(&quiet).await.unwrap();
    let quiet_lease = c
        .register(echo_bundle(&quiet, "other/echo").register_request(Duration::from_secs(30)))
        .await
        .unwrap()
        .lease;
    c.close();
    let found = echo_at(addr_a, pin_a).await;
    assert_eq!(found.len(), 2);
    let hash = found[0].manifest.peek().unwrap().component_hash;
    let size = courier_proxy_artifacts::ECHO.len() as u64;
    // The standby finds both, and gives the component it copied.
    tokio::time::timeout(Duration::from_secs(10), async {
        while echo_at(addr_b, pin_b).await.len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the standby answers lookups for the writer's registrations");
    let c = RegistryClient::connect(addr_b, pin_b, "test")
        .await
        .unwrap();
    let bytes = c.fetch(hash, size, Duration::from_secs(5)).await.unwrap();
    assert_eq!(bytes, courier_proxy_artifacts::ECHO);
    // Its lease pages say who answered and who holds the leases.
    let table = c.lease_table(&Default::default()).await.unwrap();
    assert_eq!(table.leases.len(), 2);
    assert_eq!(
        table.cluster,
        Some(ClusterNodes {
            answered_by: "b".into(),
            writer: Some("a".into()),
        })
    );
    // Writes go to the writer.
    c.authenticate(&quiet).await.unwrap();
    let refused = c
        .register(echo_bundle(&quiet, "third/echo").register_request(Duration::from_secs(30)))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Registry(w) if w.kind == ErrorKind::Unavailable),
        "{refused}"
    );
    c.close();
    // A keeper given the standby first is sent on to the writer.
    let misdirected = key(4);
    let elsewhere = LeaseKeeper::start_with(
        addr_b,
        pin_b,
        misdirected.clone(),
        echo_bundle(&misdirected, "misdirected/echo"),
        KeeperConfig {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            request_timeout: Duration::from_millis(800),
            other_nodes: vec![(addr_a, pin_a)],
            ..KeeperConfig::new(Duration::from_secs(30))
        },
    );
    tokio::time::timeout(Duration::from_secs(10), elsewhere.wait_active())
        .await
        .expect("registered at the writer after the standby's refusal")
        .unwrap();
    elsewhere.shutdown().await.unwrap();
    // A cancellation at the writer reaches the standby.
    let gone = key(3);
    let c = RegistryClient::connect(addr_a, pin_a, "test")
        .await
        .unwrap();
    c.authenticate(&gone).await.unwrap();
    let gone_lease = c
        .register(echo_bundle(&gone, "gone/echo").register_request(Duration::from_secs(30)))
        .await
        .unwrap()
        .lease;
    tokio::time::timeout(Duration::from_secs(10), async {
        while echo_at(addr_b, pin_b).await.len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a third registration reaches the standby");
    c.cancel(gone_lease).await.unwrap();
    c.close();
    tokio::time::timeout(Duration::from_secs(10), async {
        while echo_at(addr_b, pin_b).await.len() > 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cancellation reaches the standby");

    // The writer goes: its session ends, its server stops without a word to anyone.
    a.leave();
    drop(handle_a);
    drop(writer_a);
    let (handle_b, _writer_b) = tokio::time::timeout(Duration::from_secs(15), b_serving)
        .await
        .expect("the standby took over")
        .unwrap();
    let c = RegistryClient::connect(addr_b, pin_b, "test")
        .await
        .unwrap();
    let leases = c.leases().await.unwrap();
    c.close();
    assert_eq!(
        leases.len(),
        2,
        "both registrations are served by the new writer"
    );
    assert!(
        leases.iter().any(|l| l.lease == lease),
        "under the same lease"
    );
    let q = leases.iter().find(|l| l.lease == quiet_lease).unwrap();
    assert!(
        !q.in_grace && q.remaining_ms > 20_000,
        "a standby whose clock is a minute ahead keeps the lease's time: {q:?}"
    );
    let c = RegistryClient::connect(addr_b, pin_b, "test")
        .await
        .unwrap();
    let bytes = c.fetch(hash, size, Duration::from_secs(5)).await.unwrap();
    assert_eq!(bytes, courier_proxy_artifacts::ECHO);
    // The keeper renews the same lease at the new writer, well past the lease's end.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let found = echo_at(addr_b, pin_b).await;
    assert_eq!(found.len(), 2);
    assert!(
        found.iter().any(|c| c.lease == lease),
        "renewed at the new writer, not registered again"
    );
    assert!(matches!(*keeper.state().borrow(), LeaseState::Active { lease: l, .. } if l == lease));
    keeper.shutdown().await.unwrap();
    handle_b.shutdown().await;
    b.leave();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_clusters_and_unreachable_etcd_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let Some(member) = etcd(dir.path()) else {
        return;
    };
    let urls = vec![member.client_url()];
    let a = join(&urls, "a").await.unwrap();
    let err = join(&urls, "a").await.unwrap_err();
    assert!(
        matches!(err, ClusterError::NameTaken(ref n) if n == "a"),
        "{err}"
    );
    // Once the first is gone, its name is free.
    a.leave();
    let a = join(&urls, "a").await.unwrap();

    // A directory that holds another cluster's data.
    let node_dir = dir.path().join("node");
    let other = {
        let config = node_config(&urls, "other", "x");
        tokio::task::spawn_blocking(move || Node::join(config))
            .await
            .unwrap()
            .unwrap()
    };
    let d = node_dir.clone();
    tokio::task::spawn_blocking(move || other.store(&d, None).map(drop))
        .await
        .unwrap()
        .unwrap();
    let d = node_dir.clone();
    let a2 = a.clone();
    let err = tokio::task::spawn_blocking(move || a2.store(&d, None).map(drop))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ClusterError::OtherCluster { .. }), "{err}");

    // Bad names, and no etcd at all.
    let err = join(&urls, "no/slash").await.unwrap_err();
    assert!(matches!(err, ClusterError::BadName { .. }), "{err}");
    let dead = vec!["http://127.0.0.1:9".to_string()];
    let config = NodeConfig {
        deadline: Duration::from_secs(1),
        ..node_config(&dead, "t", "z")
    };
    let err = tokio::task::spawn_blocking(move || Node::join(config))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("http://127.0.0.1:9"), "{err}");
    a.leave();
}
