//! The test-support etcd cluster against a real etcd 3.4 (skipped when it is not
//! installed): writes replicate between members, survive the loss of one member, stop
//! without a quorum and resume when one comes back. Keys and values travel through etcd's
//! v3 JSON gateway on loopback; every wait is bounded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use courier_test_support::etcd::{SKIP_LINE, etcd_binary, gateway_post};
use courier_test_support::etcd_cluster::EtcdCluster;
use std::time::{Duration, Instant};

/// How long one request may take on its socket before it counts as failed.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the cluster may take to accept writes again after losing a leader or a quorum.
const RECOVERS_WITHIN: Duration = Duration::from_secs(15);

/// Puts `key` = `value` through the member at `url`.
fn put(url: &str, key: &str, value: &str) -> Result<(), String> {
    let json = format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        STANDARD.encode(key),
        STANDARD.encode(value)
    );
    match gateway_post(url, "/v3/kv/put", &json, SOCKET_TIMEOUT) {
        Ok((200, body)) if body.contains("\"header\"") => Ok(()),
        Ok((status, body)) => Err(format!("put answered {status}: {body}")),
        Err(e) => Err(format!("put failed: {e}")),
    }
}

/// Reads `key` through the member at `url` (a linearizable read: it goes through the
/// leader), `None` if it is absent.
fn get(url: &str, key: &str) -> Result<Option<String>, String> {
    let json = format!(r#"{{"key":"{}"}}"#, STANDARD.encode(key));
    let body = match gateway_post(url, "/v3/kv/range", &json, SOCKET_TIMEOUT) {
        Ok((200, body)) => body,
        Ok((status, body)) => return Err(format!("range answered {status}: {body}")),
        Err(e) => return Err(format!("range failed: {e}")),
    };
    let Some((_, rest)) = body.split_once("\"value\":\"") else {
        return Ok(None);
    };
    let encoded = rest.split('"').next().unwrap_or_default();
    let value = STANDARD
        .decode(encoded)
        .map_err(|e| format!("value not base64 ({e}): {body}"))?;
    Ok(Some(String::from_utf8_lossy(&value).into_owned()))
}

/// Retries `attempt` every 100 ms until it succeeds, for at most `within`; returns its
/// result and how long it took, or panics with its last error.
fn until<T>(
    within: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(t) => return (t, start.elapsed()),
            Err(e) if start.elapsed() >= within => panic!("{what} within {within:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A healthy three-member cluster in a fresh directory, or `None` (after the skip line)
/// without etcd.
fn three_members() -> Option<(tempfile::TempDir, EtcdCluster)> {
    if etcd_binary().is_none() {
        println!("{SKIP_LINE}");
        return None;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let start = Instant::now();
    let cluster = EtcdCluster::start(dir.path(), 3).expect("three etcd members start");
    println!("3 members healthy with a leader in {:?}", start.elapsed());
    Some((dir, cluster))
}

#[test]
fn a_write_on_one_member_is_read_on_another() {
    let Some((_dir, mut cluster)) = three_members() else {
        return;
    };
    let urls = cluster.client_urls();
    assert_eq!(urls.len(), 3);
    assert!(urls[0] != urls[1] && urls[1] != urls[2] && urls[0] != urls[2]);
    assert_eq!(urls[2], cluster.member_url(2));
    assert!((0..3).all(|i| cluster.is_running(i) && cluster.healthy(i)));
    assert!(cluster.leader().is_some(), "the members agree on a leader");

    put(&urls[0], "foo", "bar").expect("a put through member 0");
    assert_eq!(
        get(&urls[2], "foo")
            .expect("a read through member 2")
            .as_deref(),
        Some("bar")
    );

    cluster
        .restart(2)
        .expect("member 2 restarts and is healthy again");
    assert_eq!(
        get(&urls[2], "foo")
            .expect("a read through the restarted member")
            .as_deref(),
        Some("bar")
    );
}

#[test]
fn losing_the_leader_keeps_writes_going_and_it_catches_up() {
    let Some((_dir, mut cluster)) = three_members() else {
        return;
    };
    let leader = cluster.leader().expect("a leader");
    let other = (leader + 1) % 3;
    cluster.stop(leader).expect("the leader stops");
    assert!(!cluster.is_running(leader));
    assert!(!cluster.healthy(leader));

    let (new_leader, took) = until(RECOVERS_WITHIN, "a new leader", || {
        cluster
            .leader()
            .filter(|l| *l != leader)
            .ok_or_else(|| "no new leader yet".to_string())
    });
    println!("member {new_leader} leads {took:?} after the leader (member {leader}) stopped");
    let ((), took) = until(RECOVERS_WITHIN, "a put without the old leader", || {
        put(&cluster.member_url(other), "while-down", "written")
    });
    println!("a put through member {other} then succeeded in {took:?}");

    cluster
        .start_member(leader)
        .expect("the old leader starts again");
    let url = cluster.member_url(leader);
    let (value, took) = until(
        RECOVERS_WITHIN,
        "the restarted member reads the key",
        || get(&url, "while-down"),
    );
    println!("member {leader} read what was written without it {took:?} after it started again");
    assert_eq!(value.as_deref(), Some("written"));
    cluster
        .wait_healthy(leader, RECOVERS_WITHIN)
        .expect("the restarted member is healthy");
}

#[test]
fn without_a_quorum_writes_fail_until_a_member_returns() {
    let Some((_dir, mut cluster)) = three_members() else {
        return;
    };
    put(&cluster.member_url(0), "before", "1").expect("a put with all members");
    let stopped = cluster.stop_majority().expect("two members stop");
    assert_eq!(stopped, vec![1, 2]);
    assert!(cluster.is_running(0) && !cluster.is_running(1) && !cluster.is_running(2));

    let start = Instant::now();
    let refused = put(&cluster.member_url(0), "lost", "1");
    println!(
        "a put without a quorum: {refused:?} after {:?}",
        start.elapsed()
    );
    assert!(refused.is_err(), "a put without a quorum succeeded");
    assert!(start.elapsed() < SOCKET_TIMEOUT + Duration::from_secs(2));

    cluster.start_member(1).expect("member 1 starts again");
    let ((), took) = until(RECOVERS_WITHIN, "a put once member 1 is back", || {
        put(&cluster.member_url(0), "after", "2")
    });
    println!("writes resumed {took:?} after member 1 started again");
    let url = cluster.member_url(1);
    let (value, _) = until(RECOVERS_WITHIN, "member 1 reads the key", || {
        get(&url, "after")
    });
    assert_eq!(value.as_deref(), Some("2"));
}
