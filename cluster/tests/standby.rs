//! A standby follows the writer's commits through etcd, in one process on a real etcd: a
//! registration appears at the standby with its component copied, renewals the writer
//! flushes keep it matching past its first lease's end, the writer's expiry removes it,
//! a vendor's freshness statement is handed out by the standby's lookups, a client that
//! registers at the writer is known at the standby with its attributes, and a key
//! revocation (a change the standby answers by reading the store again) takes a
//! registration of the revoked key away.
#![allow(clippy::unwrap_used)]

mod common;

use common::{etcd, open_standby};
use courier_cluster::{Advert, Node};
use courier_protocol::{
    ClientProfile, KeyStatement, ServiceQuery, SignedKeyStatement, SigningKey, SpkiPin, VendorKey,
};
use courier_provider::{Bundle, BundleBuilder};
use courier_registry::{Registry, ServerConfig};
use courier_test_support::{key, short_leases, wall_now};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn join(urls: &[String], name: &str) -> Arc<Node> {
    common::join(urls, "s", name).await.unwrap()
}

fn register(writer: &Registry, vendor: &SigningKey, name: &str, ttl: Duration) -> Bundle {
    let bundle = BundleBuilder::new(courier_proxy_artifacts::ECHO)
        .name(name)
        .version("0.1.0")
        .endpoint("127.0.0.1:7901")
        .provider_pin(SpkiPin([7; 32]))
        .sign(vendor)
        .unwrap();
    writer
        .register(
            writer.now(),
            &VendorKey::of(vendor),
            bundle.register_request(ttl),
        )
        .unwrap();
    bundle
}

fn found(registry: &Registry) -> Vec<String> {
    let query = ServiceQuery {
        interface: "courier:echo/echo".into(),
        ..Default::default()
    };
    let mut names: Vec<String> = registry
        .find(registry.now(), &query)
        .unwrap()
        .into_iter()
        .map(|c| c.manifest.peek().unwrap().name)
        .collect();
    names.sort();
    names
}

/// Waits until `registry` finds exactly `names`.
async fn until_found(registry: &Registry, names: &[&str], what: &str) -> Duration {
    let started = Instant::now();
    let want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    tokio::time::timeout(Duration::from_secs(10), async {
        while found(registry) != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the standby finds {:?}", found(registry)));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_registrations_renewals_expiries_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let Some(member) = etcd(dir.path()) else {
        return;
    };
    let urls = vec![member.client_url()];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));

    // The writer, serving (the standby copies components from it) and advertised.
    let a = join(&urls, "a").await;
    let fence = a.lead().await.unwrap();
    let writer = {
        let (a, dir_a) = (a.clone(), dir_a.clone());
        tokio::task::spawn_blocking(move || {
            let store = a.store(&dir_a, Some(fence)).unwrap();
            Registry::open_with(short_leases(&dir_a), Box::new(store), wall_now()).unwrap()
        })
        .await
        .unwrap()
    };
    let writer = Arc::new(writer);
    let handle = courier_registry::serve(
        writer.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..courier_test_support::loopback()
        },
    )
    .await
    .unwrap();
    let advert = Advert {
        addr: handle.local_addr(),
        pin: handle.pin(),
    };
    {
        let a = a.clone();
        tokio::task::spawn_blocking(move || a.advertise(&advert))
            .await
            .unwrap()
            .unwrap();
    }
    let renewing = key(1);
    register(&writer, &renewing, "acme/renewed", Duration::from_secs(2));

    // The standby loads what is there, then follows.
    let b = join(&urls, "b").await;
    let standby = open_standby(&b, &dir_b).await;
    let sb = standby.registry().clone();
    assert!(sb.is_standby());
    until_found(&sb, &["acme/renewed"], "loaded").await;

    // A registration after the standby opened reaches it, its component with it.
    let revoked = key(2);
    let bundle = register(&writer, &revoked, "acme/revoked", Duration::from_secs(30));
    let took = until_found(&sb, &["acme/renewed", "acme/revoked"], "followed").await;
    // The name's first owner is known there too (applied on its own, not by reading the
    // whole store again).
    tokio::time::timeout(Duration::from_secs(10), async {
        while sb.owner("acme/revoked") != Some(VendorKey::of(&revoked)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the standby knows the name's owner");
    eprintln!("a registration reached the standby {took:?} after the writer acknowledged it");
    // Its vendor's freshness statement reaches the standby's lookups too.
    let fresh = bundle
        .freshness(&revoked, Duration::from_secs(600))
        .unwrap();
    writer
        .freshness(writer.now(), &VendorKey::of(&revoked), fresh.clone())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let query = ServiceQuery {
                interface: "courier:echo/echo".into(),
                ..Default::default()
            };
            let candidates = sb.find(sb.now(), &query).unwrap();
            if candidates
                .iter()
                .any(|c| c.freshness.as_ref() == Some(&fresh))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the standby hands out the vendor's freshness statement");

    // A client that registers at the writer is known at the standby (no full read of the
    // store: its record alone is followed).
    let client = key(9);
    writer
        .register_client(
            writer.now(),
            VendorKey::of(&client),
            ClientProfile {
                attributes: [("site".to_string(), "lab".to_string())].into(),
            },
        )
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let info = sb.client(&VendorKey::of(&client));
            if info.is_some_and(|i| i.attributes.get("site").map(String::as_str) == Some("lab")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the standby knows the client and its attributes");

    // Renewed at the writer for three times its 2 s lease: the flushed rows keep it
    // matching at the standby.
    let lease = writer
        .leases(writer.now())
        .unwrap()
        .into_iter()
        .find(|l| l.name == "acme/renewed")
        .unwrap()
        .lease;
    for _ in 0..12 {
        writer
            .renew(writer.now(), &VendorKey::of(&renewing), lease, 2_000)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        found(&sb),
        ["acme/renewed", "acme/revoked"],
        "renewals followed"
    );

    // Left to run out: the writer expires it, and the standby drops it.
    until_found(&sb, &["acme/revoked"], "expiry followed").await;

    // The vendor revokes its key at the writer: the standby reads the store again.
    let statement = KeyStatement::revoke(VendorKey::of(&revoked), wall_now());
    writer
        .key_statement(
            writer.now(),
            &VendorKey::of(&revoked),
            SignedKeyStatement::sign(&statement, &revoked),
        )
        .unwrap();
    until_found(&sb, &[], "revocation followed").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !sb.key_status(&VendorKey::of(&revoked)).1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the standby knows the revocation");

    drop(standby);
    handle.shutdown().await;
    a.leave();
    b.leave();
}
