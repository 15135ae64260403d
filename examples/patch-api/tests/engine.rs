//! The install engine on a real directory: a patch installs and a second run finds nothing
//! to do; any failure (health check, a fault at every file operation, a bad payload, a
//! local change, a file in the way, the provider gone, a crash) leaves the managed
//! directory byte for byte as before (compared by tree digest); remove restores it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::path::Path;

use courier_patch_api::engine::{InstallError, Installed, RemoveError};
use courier_patch_api::{
    Digest, Engine, FileState, Fingerprint, NewFile, PatchRecord, Severity, Stage, tree,
};

const HELLO_V1: &[u8] = b"#!/bin/sh\necho hello 1.0\n";
const HELLO_V2: &[u8] = b"#!/bin/sh\necho hello 1.1\n";
const NEW_LIB: &[u8] = b"greet() { echo hi; }\n";

/// The example app before the patch.
fn app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("app/bin")).unwrap();
    std::fs::create_dir_all(root.join("app/conf")).unwrap();
    std::fs::write(root.join("app/bin/hello.sh"), HELLO_V1).unwrap();
    std::fs::write(root.join("app/VERSION"), b"1.0\n").unwrap();
    std::fs::write(root.join("app/conf/site.conf"), b"mine\n").unwrap();
    dir
}

fn state(path: &str, content: Option<&[u8]>) -> FileState {
    FileState {
        path: path.into(),
        sha256: content.map(Digest::of),
    }
}

fn new_file(path: &str, content: &[u8], mode: u32) -> NewFile {
    NewFile {
        path: path.into(),
        sha256: Digest::of(content),
        size: content.len() as u64,
        mode,
    }
}

/// hello 1.0 → 1.1: replaces two files and adds one in a new directory.
fn record() -> PatchRecord {
    PatchRecord {
        id: "hello-1.1".into(),
        title: "hello 1.1".into(),
        severity: Severity::Important,
        fingerprint: Fingerprint {
            requires: Default::default(),
            needed: vec![
                state("app/bin/hello.sh", Some(HELLO_V1)),
                state("app/VERSION", Some(b"1.0\n")),
                state("app/lib/greet.sh", None),
            ],
            applied: vec![
                state("app/bin/hello.sh", Some(HELLO_V2)),
                state("app/VERSION", Some(b"1.1\n")),
            ],
        },
        files: vec![
            new_file("app/bin/hello.sh", HELLO_V2, 0o755),
            new_file("app/VERSION", b"1.1\n", 0o644),
            new_file("app/lib/greet.sh", NEW_LIB, 0o755),
        ],
        health: None,
    }
}

/// Payloads by digest, written three bytes at a time (so staging is several writes).
fn payloads() -> HashMap<Digest, Vec<u8>> {
    [HELLO_V2, b"1.1\n", NEW_LIB]
        .iter()
        .map(|c| (Digest::of(c), c.to_vec()))
        .collect()
}

fn serve(
    payloads: &HashMap<Digest, Vec<u8>>,
) -> impl FnMut(&NewFile, &mut dyn Write) -> Result<(), String> + '_ {
    move |file, out| {
        let bytes = payloads.get(&file.sha256).ok_or("unknown payload")?;
        for chunk in bytes.chunks(3) {
            out.write_all(chunk).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn healthy(_: &PatchRecord) -> Result<(), String> {
    Ok(())
}

fn install(engine: &mut Engine, record: &PatchRecord) -> Result<Installed, InstallError> {
    let payloads = payloads();
    engine.install(record, &mut serve(&payloads), &mut healthy)
}

fn listing(root: &Path) -> Vec<String> {
    tree::listing(root).unwrap()
}

#[test]
fn a_patch_installs_and_a_second_run_finds_nothing_to_do() {
    let dir = app();
    let before = tree::digest(dir.path()).unwrap();
    let mut engine = Engine::open(dir.path()).unwrap();
    assert_eq!(
        install(&mut engine, &record()).unwrap(),
        Installed::Applied { files: 3 }
    );
    assert_eq!(
        std::fs::read(dir.path().join("app/bin/hello.sh")).unwrap(),
        HELLO_V2
    );
    assert_eq!(
        std::fs::read(dir.path().join("app/lib/greet.sh")).unwrap(),
        NEW_LIB
    );
    assert_eq!(
        std::fs::read(dir.path().join("app/conf/site.conf")).unwrap(),
        b"mine\n"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("app/lib/greet.sh")).unwrap();
        assert_eq!(mode.permissions().mode() & 0o777, 0o755);
    }
    assert_ne!(tree::digest(dir.path()).unwrap(), before);
    let ledger = engine.applied().unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].id, "hello-1.1");

    let after = tree::digest(dir.path()).unwrap();
    let mut again = Engine::open(dir.path()).unwrap();
    assert_eq!(
        install(&mut again, &record()).unwrap(),
        Installed::AlreadyApplied
    );
    assert_eq!(
        tree::digest(dir.path()).unwrap(),
        after,
        "the second run changed nothing"
    );
}

#[test]
fn a_failing_health_check_rolls_the_whole_patch_back() {
    let dir = app();
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    let payloads = payloads();
    let mut checked = 0;
    let error = engine
        .install(&record(), &mut serve(&payloads), &mut |r| {
            checked += 1;
            // The files are in place while the check runs.
            assert_eq!(
                std::fs::read(dir.path().join("app/VERSION")).unwrap(),
                b"1.1\n"
            );
            Err(format!("{} answers 500", r.id))
        })
        .unwrap_err();
    assert_eq!(checked, 1);
    assert!(matches!(error, InstallError::Check(_)), "{error}");
    assert_eq!(error.stage(), Stage::Failed);
    assert!(error.to_string().contains("rolled back"), "{error}");
    assert_eq!(listing(dir.path()), before);
    assert!(engine.applied().unwrap().is_empty());
}

#[test]
fn a_fault_at_any_file_operation_leaves_the_directory_as_it_was() {
    for kind in [ErrorKind::StorageFull, ErrorKind::PermissionDenied] {
        let mut faults = 0;
        for at in 0.. {
            let dir = app();
            let before = listing(dir.path());
            let mut engine = Engine::open(dir.path()).unwrap();
            engine.fail_operation(at, kind);
            let result = install(&mut engine, &record());
            if !engine.fault_fired() {
                assert_eq!(result.unwrap(), Installed::Applied { files: 3 });
                break;
            }
            faults += 1;
            let error = result.unwrap_err();
            assert_eq!(error.stage(), Stage::NotApplied, "fault {at}: {error}");
            assert_eq!(
                listing(dir.path()),
                before,
                "fault {at} ({kind:?}): {error}"
            );
            // Nothing is left that stops the next run.
            let mut next = Engine::open(dir.path()).unwrap();
            assert_eq!(
                install(&mut next, &record()).unwrap(),
                Installed::Applied { files: 3 }
            );
        }
        assert!(faults > 15, "only {faults} operations were tried");
    }
}

#[test]
fn a_payload_whose_digest_does_not_match_is_refused_with_nothing_changed() {
    let dir = app();
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    let mut forged = |file: &NewFile, out: &mut dyn Write| {
        let bytes: &[u8] = if file.path == "app/VERSION" {
            b"6.6\n"
        } else {
            HELLO_V2
        };
        out.write_all(&bytes[..bytes.len().min(file.size as usize)])
            .map_err(|e| e.to_string())
    };
    let error = engine
        .install(&record(), &mut forged, &mut healthy)
        .unwrap_err();
    assert!(matches!(error, InstallError::Payload { .. }), "{error}");
    assert_eq!(error.stage(), Stage::Failed);
    assert_eq!(listing(dir.path()), before);

    let mut longer =
        |_: &NewFile, out: &mut dyn Write| out.write_all(&[b'x'; 4096]).map_err(|e| e.to_string());
    let error = engine
        .install(&record(), &mut longer, &mut healthy)
        .unwrap_err();
    assert!(error.to_string().contains("longer than"), "{error}");
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn files_changed_locally_since_the_fingerprint_stop_the_install() {
    let dir = app();
    std::fs::write(
        dir.path().join("app/bin/hello.sh"),
        b"#!/bin/sh\necho my fix\n",
    )
    .unwrap();
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    let error = install(&mut engine, &record()).unwrap_err();
    assert!(matches!(error, InstallError::ChangedLocally(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("app/bin/hello.sh changed locally"),
        "{error}"
    );
    assert_eq!(error.stage(), Stage::NotApplied);
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_file_in_the_way_stops_the_install_with_nothing_changed() {
    let dir = app();
    // A file where the patch needs a directory.
    std::fs::write(dir.path().join("app/lib"), b"not a directory\n").unwrap();
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    let error = install(&mut engine, &record()).unwrap_err();
    assert_eq!(error.stage(), Stage::NotApplied, "{error}");
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_read_only_directory_rolls_the_install_back() {
    let dir = app();
    let bin = dir.path().join("app/bin");
    let original = std::fs::metadata(&bin).unwrap().permissions();
    let mut perms = original.clone();
    perms.set_readonly(true);
    std::fs::set_permissions(&bin, perms).unwrap();
    let probe = bin.join("probe");
    let enforced = std::fs::write(&probe, b"").is_err();
    let _ = std::fs::remove_file(&probe);
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    let result = install(&mut engine, &record());
    if enforced {
        let error = result.unwrap_err();
        assert!(matches!(error, InstallError::Io { .. }), "{error}");
        assert_eq!(listing(dir.path()), before);
    } else {
        // Running as root: permission bits do not stop the owner of every file, and the
        // faults test covers a refused permission instead.
        assert_eq!(result.unwrap(), Installed::Applied { files: 3 });
    }
    std::fs::set_permissions(&bin, original).unwrap();
}

#[test]
fn the_provider_gone_mid_download_leaves_nothing_changed() {
    let dir = app();
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    let mut served = 0;
    let mut flaky = |_: &NewFile, out: &mut dyn Write| {
        served += 1;
        if served == 2 {
            return Err("connection lost".to_owned());
        }
        out.write_all(HELLO_V2).map_err(|e| e.to_string())
    };
    let error = engine
        .install(&record(), &mut flaky, &mut healthy)
        .unwrap_err();
    assert!(matches!(error, InstallError::Fetch { .. }), "{error}");
    assert!(error.to_string().contains("connection lost"));
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn remove_restores_the_directory_from_the_backup() {
    let dir = app();
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    install(&mut engine, &record()).unwrap();
    let removed = engine.remove("hello-1.1").unwrap();
    assert_eq!(removed.files.len(), 3);
    assert_eq!(listing(dir.path()), before, "the state directory went too");
    assert!(matches!(
        engine.remove("hello-1.1"),
        Err(RemoveError::NotApplied(_))
    ));

    // A file changed after the install stops the removal.
    install(&mut engine, &record()).unwrap();
    let patched = listing(dir.path());
    std::fs::write(dir.path().join("app/VERSION"), b"local\n").unwrap();
    let error = engine.remove("hello-1.1").unwrap_err();
    assert!(
        matches!(error, RemoveError::ChangedLocally { .. }),
        "{error}"
    );
    std::fs::write(dir.path().join("app/VERSION"), b"1.1\n").unwrap();
    assert_eq!(listing(dir.path()), patched);
}

#[test]
fn a_fault_during_remove_leaves_the_patch_in_place() {
    for at in 0.. {
        let dir = app();
        let mut engine = Engine::open(dir.path()).unwrap();
        install(&mut engine, &record()).unwrap();
        let patched = listing(dir.path());
        engine.fail_operation(at, ErrorKind::StorageFull);
        let result = engine.remove("hello-1.1");
        if !engine.fault_fired() {
            result.unwrap();
            break;
        }
        let error = result.unwrap_err();
        assert_eq!(listing(dir.path()), patched, "fault {at}: {error}");
    }
}

#[test]
fn a_crash_mid_install_is_undone_by_the_next_open() {
    let dir = app();
    let before = listing(dir.path());
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut engine = Engine::open(dir.path()).unwrap();
        let payloads = payloads();
        // The process dies while the health check runs: every file is swapped in.
        let _ = engine.install(&record(), &mut serve(&payloads), &mut |_| panic!("killed"));
    }));
    assert!(crashed.is_err());
    assert_ne!(listing(dir.path()), before);
    let engine = Engine::open(dir.path()).unwrap();
    assert_eq!(
        engine.recovered(),
        Some("undid the interrupted install of hello-1.1")
    );
    assert_eq!(listing(dir.path()), before);

    // A crash while downloading leaves staged files only; the next open sweeps them.
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut engine = Engine::open(dir.path()).unwrap();
        let _ = engine.install(&record(), &mut |_, _| panic!("killed"), &mut healthy);
    }));
    assert!(crashed.is_err());
    Engine::open(dir.path()).unwrap();
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_damaged_ledger_is_an_error_not_an_empty_one() {
    let dir = app();
    let mut engine = Engine::open(dir.path()).unwrap();
    install(&mut engine, &record()).unwrap();
    std::fs::write(
        dir.path().join(".courier-patch/ledger"),
        b"patch hello-1.1\nfile x\n",
    )
    .unwrap();
    let error = install(&mut engine, &record()).unwrap_err();
    assert!(error.to_string().contains("ledger line 2"), "{error}");
}

#[test]
fn records_that_could_escape_or_skip_the_fingerprint_are_refused() {
    let dir = app();
    let before = listing(dir.path());
    let mut engine = Engine::open(dir.path()).unwrap();
    let mut escape = record();
    escape.files[0].path = "../outside".into();
    escape.fingerprint.needed[0].path = "../outside".into();
    let mut unfingerprinted = record();
    unfingerprinted
        .files
        .push(new_file("app/extra", b"x", 0o644));
    let mut state = record();
    state.files[0].path = ".courier-patch/ledger".into();
    for bad in [escape, unfingerprinted, state] {
        let error = install(&mut engine, &bad).unwrap_err();
        assert!(matches!(error, InstallError::Record(_)), "{error}");
    }
    assert_eq!(listing(dir.path()), before);
}
