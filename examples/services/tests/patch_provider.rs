//! The patch provider: upgrades for this machine equal `apt list --upgradable`, patches
//! offered by fingerprint, chunks served by hash, the failure threshold, a corrupt index or
//! a bad catalog record named and left out, and the store across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{client_inventory, copy_tree, example_catalog, fixtures, managed, provider};
use courier_debian::apt_list::parse_upgradable as parse_apt_list;
use courier_example_services::patch::{
    ChunkError, IndexSource, PatchConfig, PatchProvider, PatchStore, RequestError,
    machine_inventory,
};
use courier_patch_api::{
    ChunkRequest, Digest, FileEvidence, InstallReport, Inventory, MAX_CHUNK, Package, ReportEntry,
    Stage,
};

#[test]
fn upgrades_for_this_machine_are_what_apt_lists() {
    let Ok(inventory) = machine_inventory(Path::new("/"), "this-machine") else {
        eprintln!("no dpkg status here: the fixture machine is checked in courier-debian");
        return;
    };
    let Ok(apt) = Command::new("apt").args(["list", "--upgradable"]).output() else {
        eprintln!("no apt here: the fixture machine is checked in courier-debian");
        return;
    };
    assert!(apt.status.success());
    let expected = parse_apt_list(&String::from_utf8_lossy(&apt.stdout));
    let provider = provider(None, IndexSource::Machine("/".into()));
    let answer = provider.recommend(&inventory, 1).unwrap();
    let got: BTreeSet<_> = answer
        .upgrades
        .into_iter()
        .map(|u| (u.name, u.candidate, u.arch, u.installed))
        .collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "apt shows but the provider misses: {missing:#?}\nthe provider shows but apt does not: {extra:#?}"
    );
    eprintln!("{} upgrades, the same as apt list --upgradable", got.len());

    // A client whose `packages` fact has no architectures (`name<TAB>version` lines) gets
    // the same names and versions, its `arch` fact standing for dpkg's native one.
    let mut bare = inventory.clone();
    bare.packages.iter_mut().for_each(|p| p.arch.clear());
    let foreign = inventory
        .packages
        .iter()
        .any(|p| !["all", "amd64"].contains(&p.arch.as_str()));
    if bare.arch == "x86_64" && !foreign {
        let versions = |upgrades: Vec<courier_patch_api::UpgradeOffer>| -> BTreeSet<_> {
            upgrades
                .into_iter()
                .map(|u| (u.name, u.candidate, u.installed))
                .collect()
        };
        let without = versions(provider.recommend(&bare, 2).unwrap().upgrades);
        let expected: BTreeSet<_> = got.into_iter().map(|(n, c, _, i)| (n, c, i)).collect();
        assert_eq!(without, expected);
    }
}

#[test]
fn patches_are_offered_by_their_fingerprints() {
    let provider = provider(Some(example_catalog()), IndexSource::None);
    assert!(
        provider.catalog().notes().is_empty(),
        "{:?}",
        provider.catalog().notes()
    );
    assert_eq!(provider.catalog().records().len(), 2);
    let dir = managed();

    // hello 1.0 as shipped: both patches apply, each with the files that showed it.
    let inventory = client_inventory(&provider, dir.path());
    let answer = provider.recommend(&inventory, 1).unwrap();
    let ids: Vec<&str> = answer.patches.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["hello-1.1", "hello-config-2"]);
    assert!(
        answer.patches[0]
            .reason
            .contains("app/bin/hello.sh is f5b62076a934"),
        "{answer:?}"
    );

    // Files changed locally: not offered, and the note says which file.
    std::fs::write(dir.path().join("app/bin/hello.sh"), "echo mine\n").unwrap();
    let answer = provider
        .recommend(&client_inventory(&provider, dir.path()), 1)
        .unwrap();
    assert_eq!(answer.patches.len(), 1);
    assert!(
        answer
            .notes
            .iter()
            .any(|n| n.starts_with("hello-1.1: app/bin/hello.sh changed locally")),
        "{:?}",
        answer.notes
    );

    // Already applied, by the fingerprint's applied state or by the client's ledger.
    let patched = example_catalog().join("payloads/hello-1.1/app");
    std::fs::copy(
        patched.join("bin/hello.sh"),
        dir.path().join("app/bin/hello.sh"),
    )
    .unwrap();
    std::fs::copy(patched.join("VERSION"), dir.path().join("app/VERSION")).unwrap();
    let answer = provider
        .recommend(&client_inventory(&provider, dir.path()), 1)
        .unwrap();
    assert!(
        answer
            .notes
            .contains(&"hello-1.1: already applied".to_owned()),
        "{:?}",
        answer.notes
    );
    let fresh = managed();
    let mut ledgered = client_inventory(&provider, fresh.path());
    ledgered.applied = vec!["hello-config-2".into()];
    let answer = provider.recommend(&ledgered, 1).unwrap();
    let ids: Vec<&str> = answer.patches.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["hello-1.1"]);

    // No evidence (no managed directory lent): nothing offered, and the note says why.
    let bare = Inventory {
        client: "client-b".into(),
        ..Inventory::default()
    };
    let answer = provider.recommend(&bare, 1).unwrap();
    assert!(answer.patches.is_empty());
    assert!(
        answer
            .notes
            .iter()
            .any(|n| n.contains("no evidence gathered"))
    );

    // The provider kept the inventory it was sent.
    let kept = provider.store().inventory("client-b").unwrap().unwrap();
    assert_eq!(kept.inventory, bare);
}

#[test]
fn payloads_are_served_by_hash_in_chunks() {
    let provider = provider(Some(example_catalog()), IndexSource::None);
    let record = provider.record("hello-1.1").unwrap();
    let file = &record.files[0];
    let mut bytes = Vec::new();
    loop {
        let request = ChunkRequest {
            sha256: file.sha256,
            offset: bytes.len() as u64,
            len: 100,
        };
        let chunk = provider.chunk(&request).unwrap();
        assert!(chunk.len() <= 100);
        if chunk.is_empty() {
            break;
        }
        bytes.extend(chunk);
    }
    assert_eq!(Digest::of(&bytes), file.sha256);
    assert_eq!(bytes.len() as u64, file.size);

    let whole = ChunkRequest {
        sha256: file.sha256,
        offset: 0,
        len: u32::MAX,
    };
    let served = provider.chunk(&whole).unwrap().len() as u64;
    assert_eq!(served, file.size.min(u64::from(MAX_CHUNK)));
    let past = ChunkRequest {
        offset: file.size + 1,
        ..whole.clone()
    };
    let error = provider.chunk(&past);
    assert!(matches!(
        error,
        Err(RequestError::Chunk(ChunkError::Offset { .. }))
    ));
    let unknown = ChunkRequest {
        sha256: Digest::of(b"not a payload"),
        ..whole
    };
    let error = provider.chunk(&unknown);
    assert!(matches!(
        error,
        Err(RequestError::Chunk(ChunkError::Unknown(_)))
    ));
    assert!(matches!(
        provider.record("nope"),
        Err(RequestError::UnknownPatch(_))
    ));
}

#[test]
fn a_patch_failing_too_often_in_the_window_is_withdrawn() {
    let provider = PatchProvider::open(&PatchConfig {
        catalog: Some(example_catalog()),
        indexes: IndexSource::None,
        failure_threshold: 2,
        failure_window: Duration::from_secs(3600),
        ..PatchConfig::default()
    })
    .unwrap();
    let dir = managed();
    let inventory = client_inventory(&provider, dir.path());
    let report = |client: &str, stage: Stage, at_ms: u64| {
        let report = InstallReport {
            client: client.into(),
            entries: vec![ReportEntry {
                id: "hello-config-2".into(),
                stage,
                detail: "health check failed".into(),
            }],
        };
        provider.report(&report, at_ms).unwrap();
    };
    let hour = 3_600_000;
    report("a", Stage::Failed, 10 * hour);
    report("b", Stage::NotApplied, 10 * hour);
    report("c", Stage::Declined, 10 * hour);
    let at = |ms| provider.recommend(&inventory, ms).unwrap();
    assert_eq!(
        at(10 * hour).patches.len(),
        2,
        "one failure is under the threshold"
    );
    report("b", Stage::RollbackFailed, 10 * hour + 1);
    let answer = at(10 * hour + 2);
    assert_eq!(answer.patches.len(), 1);
    let withdrawn = "hello-config-2: withdrawn after 2 failure reports";
    assert!(
        answer.notes.iter().any(|n| n.starts_with(withdrawn)),
        "{:?}",
        answer.notes
    );
    assert_eq!(
        at(11 * hour + 2).patches.len(),
        2,
        "the failures left the window"
    );
    assert_eq!(provider.store().reports("b").unwrap().len(), 2);
}

#[test]
fn a_patch_that_failed_here_is_not_offered_here_again_until_the_vendor_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog");
    std::fs::create_dir(&catalog).unwrap();
    copy_tree(&example_catalog(), &catalog);
    let open = || {
        PatchProvider::open(&PatchConfig {
            catalog: Some(catalog.clone()),
            indexes: IndexSource::None,
            store: Some(dir.path().join("patch.redb")),
            ..PatchConfig::default()
        })
        .unwrap()
    };
    let managed = managed();
    let provider = open();
    let here = client_inventory(&provider, managed.path());
    let elsewhere = Inventory {
        client: "client-b".into(),
        ..here.clone()
    };
    let report = |provider: &PatchProvider, stage: Stage, at_ms: u64| {
        let entry = ReportEntry {
            id: "hello-config-2".into(),
            stage,
            detail: "health command example-app-health exited 1".into(),
        };
        let report = InstallReport {
            client: here.client.clone(),
            entries: vec![entry],
        };
        provider.report(&report, at_ms).unwrap();
    };
    let offered = |provider: &PatchProvider, inventory: &Inventory| -> Vec<String> {
        let answer = provider.recommend(inventory, 20).unwrap();
        answer.patches.into_iter().map(|p| p.id).collect()
    };

    // Declining or a full disk is not the patch's fault: it is still offered.
    report(&provider, Stage::Declined, 10);
    report(&provider, Stage::NotApplied, 11);
    assert_eq!(offered(&provider, &here), ["hello-1.1", "hello-config-2"]);
    report(&provider, Stage::Failed, 12);
    let answer = provider.recommend(&here, 20).unwrap();
    let ids: Vec<&str> = answer.patches.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["hello-1.1"]);
    let note = "hello-config-2: failed on this machine (health command example-app-health \
                exited 1); not offered again until the vendor changes it";
    assert!(
        answer.notes.contains(&note.to_owned()),
        "{:?}",
        answer.notes
    );
    assert_eq!(
        offered(&provider, &elsewhere),
        ["hello-1.1", "hello-config-2"]
    );
    drop(provider);

    // Across a restart, the same edition is still held back; a new one is offered.
    assert_eq!(offered(&open(), &here), ["hello-1.1"]);
    let record = catalog.join("patches/hello-config-2.json");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("second edition", "third edition")).unwrap();
    let provider = open();
    assert_eq!(offered(&provider, &here), ["hello-1.1", "hello-config-2"]);

    // It fails again, then is installed by other means: a report that it is in place
    // forgets the failure.
    report(&provider, Stage::Failed, 13);
    assert_eq!(offered(&provider, &here), ["hello-1.1"]);
    report(&provider, Stage::AlreadyApplied, 14);
    assert_eq!(offered(&provider, &here), ["hello-1.1", "hello-config-2"]);
}

#[test]
fn a_corrupt_index_is_named_and_the_others_are_still_used() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &str, to: &str| {
        std::fs::copy(fixtures().join(from), dir.path().join(to)).unwrap();
    };
    copy("Packages.gz", "good_Packages.gz");
    copy("corrupt.gz", "broken_Packages.gz");
    copy("truncated.xz", "cut_Packages.xz");
    let provider = provider(None, IndexSource::Folder(dir.path().into()));
    let package = |name: &str, version: &str| Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
    };
    let inventory = Inventory {
        client: "client-a".into(),
        packages: vec![
            package("base-files", "12.4+deb12u13"),
            package("dpkg", "1.21.22"),
        ],
        ..Inventory::default()
    };
    let answer = provider.recommend(&inventory, 1).unwrap();
    let upgrades: Vec<(&str, &str)> = answer
        .upgrades
        .iter()
        .map(|u| (u.name.as_str(), u.candidate.as_str()))
        .collect();
    assert!(
        upgrades.contains(&("base-files", "12.4+deb12u14")),
        "{upgrades:?}"
    );
    for bad in ["broken_Packages.gz", "cut_Packages.xz"] {
        let named = |n: &&String| n.starts_with("package index not used") && n.contains(bad);
        assert!(
            answer.notes.iter().any(|n| named(&n)),
            "{bad}: {:?}",
            answer.notes
        );
    }
    assert_eq!(provider.packages().size().0, 1);
}

#[test]
fn a_record_whose_payload_differs_is_left_out_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&example_catalog(), dir.path());
    let tampered = dir
        .path()
        .join("payloads/hello-config-2/app/conf/defaults.conf");
    std::fs::write(&tampered, "GREETING=Hi\n").unwrap();
    std::fs::write(dir.path().join("patches/broken.json"), "{ not json").unwrap();
    let provider = provider(Some(dir.path().into()), IndexSource::None);
    let ids: Vec<&str> = provider
        .catalog()
        .records()
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(ids, ["hello-1.1"]);
    let notes = provider.catalog().notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("broken.json")));
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&tampered.display().to_string()))
    );
}

#[test]
fn the_store_keeps_inventories_and_reports_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("patch.redb");
    let inventory = Inventory {
        client: "client-a".into(),
        evidence: vec![FileEvidence {
            path: "app/VERSION".into(),
            sha256: None,
        }],
        ..Inventory::default()
    };
    let report = InstallReport {
        client: "client-a".into(),
        entries: vec![ReportEntry {
            id: "hello-1.1".into(),
            stage: Stage::Failed,
            detail: "x".into(),
        }],
    };
    {
        let store = PatchStore::open(&path).unwrap();
        store.put_inventory(&inventory, 5).unwrap();
        store
            .add_report(&report, 6, &|_| Some(Digest::of(b"edition 1")))
            .unwrap();
    }
    let store = PatchStore::open(&path).unwrap();
    let kept = store.inventory("client-a").unwrap().unwrap();
    assert_eq!((kept.at_ms, kept.inventory), (5, inventory));
    let reports = store.reports("client-a").unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].at_ms, &reports[0].report), (6, &report));
    assert_eq!(store.failures_since("hello-1.1", 6).unwrap(), 1);
    assert_eq!(store.failures_since("hello-1.1", 7).unwrap(), 0);
    let failed = store.failed_here("client-a", "hello-1.1").unwrap().unwrap();
    assert_eq!(
        (failed.at_ms, failed.edition),
        (6, Digest::of(b"edition 1"))
    );
    assert!(store.inventory("client-b").unwrap().is_none());
}

#[test]
fn requests_from_a_malformed_client_id_are_refused() {
    let provider = provider(None, IndexSource::None);
    for client in ["", "a\nb", &"x".repeat(129)] {
        let inventory = Inventory {
            client: client.into(),
            ..Inventory::default()
        };
        let refused = provider.recommend(&inventory, 1);
        assert!(matches!(refused, Err(RequestError::Client(_))));
    }
}
