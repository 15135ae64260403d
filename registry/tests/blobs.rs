//! Component files live as long as a registration needs them: shared bytes stay while one
//! registration names them, the last cancellation, replacement or expiry deletes the file,
//! and a reopen deletes what a crash left behind (unreferenced files, temporary files)
//! without touching anything else in the directory.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{ContentHash, VendorKey};
use courier_proxy_artifacts::{ECHO, ECHO_DIGEST, KV};
use courier_registry::{Millis, Registry};
use std::collections::BTreeSet;
use std::path::Path;

/// The component files in the data directory, by hash (hidden files left out).
fn blobs(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    ContentHash::of(bytes).to_hex()
}

fn digest_echo(
    key: &courier_protocol::SigningKey,
    name: &str,
    version: &str,
) -> courier_protocol::Register {
    let mut m = manifest(key, name, ECHO_DIGEST, &[(ECHO_IFACE, &["say"])]);
    m.version = version.into();
    signed(&m, key, ECHO_DIGEST, 30_000)
}

#[test]
fn a_component_file_lives_as_long_as_a_registration_names_it() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(config(dir.path()).registry).unwrap();
    let acme = key(1);
    let auth = VendorKey::of(&acme);
    let now = r.now();

    let first = r
        .register(now, &auth, echo(&acme, "acme/echo", 30_000))
        .unwrap();
    let second = r
        .register(now, &auth, echo(&acme, "acme/echo2", 30_000))
        .unwrap();
    assert_eq!(
        blobs(dir.path()),
        [hex(ECHO)].into(),
        "the same bytes are stored once"
    );

    // One of two registrations of the same bytes goes: the file stays.
    r.cancel(now, &auth, second.lease).unwrap();
    assert_eq!(blobs(dir.path()), [hex(ECHO)].into());

    // The last one is replaced by other bytes: the old file goes.
    let replaced = r
        .register(now, &auth, digest_echo(&acme, "acme/echo", "1.1.0"))
        .unwrap();
    assert_eq!(replaced.replaced, Some(first.lease));
    assert_eq!(blobs(dir.path()), [hex(ECHO_DIGEST)].into());

    // Replaced by the same bytes (a new version of the manifest only): the file stays.
    r.register(now, &auth, digest_echo(&acme, "acme/echo", "1.2.0"))
        .unwrap();
    assert_eq!(blobs(dir.path()), [hex(ECHO_DIGEST)].into());

    // A lease that runs out: its file goes with the flush that deletes the registration.
    let kv_lease = r.register(now, &auth, kv(&acme, "acme/kv", 200)).unwrap();
    assert_eq!(blobs(dir.path()), [hex(ECHO_DIGEST), hex(KV)].into());
    let later = Millis(now.0 + kv_lease.ttl_ms);
    assert_eq!(r.expire(later), Ok(1));
    assert!(
        blobs(dir.path()).contains(&hex(KV)),
        "kept until the store forgets the lease"
    );
    r.flush(later).unwrap();
    assert_eq!(blobs(dir.path()), [hex(ECHO_DIGEST)].into());

    // What is still registered can still be fetched, after a reopen too.
    let hash = ContentHash::of(ECHO_DIGEST);
    assert_eq!(r.fetch(&hash, None, None).unwrap(), ECHO_DIGEST);
    drop(r);
    let r = Registry::open(config(dir.path()).registry).unwrap();
    assert_eq!(r.fetch(&hash, None, None).unwrap(), ECHO_DIGEST);
    assert_eq!(blobs(dir.path()), [hex(ECHO_DIGEST)].into());
}

#[test]
fn reopening_deletes_what_a_crash_left_behind_and_nothing_else() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(config(dir.path()).registry).unwrap();
    let acme = key(1);
    r.register(
        r.now(),
        &VendorKey::of(&acme),
        echo(&acme, "acme/echo", 30_000),
    )
    .unwrap();
    drop(r);

    // A crash after a blob was written but before its registration committed, one in the
    // middle of writing a blob, and a file an operator put there.
    let blob_dir = dir.path().join("blobs");
    std::fs::write(blob_dir.join(hex(KV)), KV).unwrap();
    std::fs::write(
        blob_dir.join(format!(".tmp-{}-0011223344556677", hex(KV))),
        b"half",
    )
    .unwrap();
    std::fs::write(blob_dir.join("NOTES.txt"), b"operator's").unwrap();

    let r = Registry::open(config(dir.path()).registry).unwrap();
    assert_eq!(
        blobs(dir.path()),
        [hex(ECHO), "NOTES.txt".to_string()].into()
    );
    let hidden: Vec<_> = std::fs::read_dir(&blob_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(r.fetch(&ContentHash::of(ECHO), None, None).unwrap(), ECHO);
}

#[test]
fn a_refused_registration_leaves_no_component_behind() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(config(dir.path()).registry).unwrap();
    let (acme, other) = (key(1), key(2));
    r.register(
        r.now(),
        &VendorKey::of(&acme),
        echo(&acme, "acme/echo", 30_000),
    )
    .unwrap();
    // Another key's registration of acme's name is refused after its component was
    // written: the file goes with the refusal; acme's component stays.
    let refused = r.register(
        r.now(),
        &VendorKey::of(&other),
        kv(&other, "acme/echo", 30_000),
    );
    assert!(refused.is_err());
    assert_eq!(blobs(dir.path()), [hex(ECHO)].into());
    // Refused with bytes a live registration shares: the file stays.
    let refused = r.register(
        r.now(),
        &VendorKey::of(&other),
        echo(&other, "acme/echo", 30_000),
    );
    assert!(refused.is_err());
    assert_eq!(blobs(dir.path()), [hex(ECHO)].into());
}
