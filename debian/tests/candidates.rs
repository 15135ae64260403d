//! Candidate choice across several indexes, and a broken index leaving the others in use.

use std::path::{Path, PathBuf};

use courier_debian::sources::AptList;
use courier_debian::{Catalog, Installed, Inventory, Version};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn list(name: &str, priority: i32) -> AptList {
    AptList {
        path: fixture(name),
        priority,
        suite: name.into(),
    }
}

fn installed(name: &str, version: &str, arch: &str) -> Installed {
    Installed {
        name: name.into(),
        version: Version::parse(version).expect("valid"),
        arch: arch.into(),
        held: false,
    }
}

#[test]
fn a_broken_index_is_reported_and_the_others_are_used() {
    let lists = [
        list("truncated.lz4", 500),
        list("Packages.xz", 500),
        list("absent", 500),
    ];
    let (catalog, report) = Catalog::load(&lists);
    assert_eq!(report.read.len(), 1);
    let failed: Vec<String> = report.failed.iter().map(ToString::to_string).collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0].starts_with(&fixture("truncated.lz4").display().to_string()));
    assert_eq!(catalog.len(), 6);
    let inventory = Inventory {
        packages: vec![
            installed("dpkg", "1.21.22", "amd64"),
            installed("tzdata", "2024a-0+deb12u1", "all"),
        ],
        skipped: 0,
    };
    let upgrades = catalog.upgrades(&inventory);
    let got: Vec<_> = upgrades
        .iter()
        .map(|u| (u.name.as_str(), u.candidate.as_str()))
        .collect();
    // The higher of the two tzdata versions in the index.
    assert_eq!(got, [("tzdata", "2026b-0+deb12u1")]);
}

#[test]
fn the_highest_priority_wins_then_the_highest_version() {
    let mut catalog = Catalog::default();
    catalog
        .add_index(&fixture("Packages.gz"), 1)
        .expect("readable");
    let tzdata = installed("tzdata", "2024a-0+deb12u1", "all");
    // Only in a NotAutomatic index (priority 1): the installed version stays.
    assert_eq!(
        catalog.candidate(&tzdata, Some("amd64")).0.as_str(),
        "2024a-0+deb12u1"
    );
    catalog
        .add_index(&fixture("Packages"), 100)
        .expect("readable");
    assert_eq!(
        catalog.candidate(&tzdata, Some("amd64")).0.as_str(),
        "2026b-0+deb12u1"
    );
    // A foreign-architecture package is not offered the native or `all` versions.
    let foreign = installed("libc6", "2.36-9+deb12u10", "i386");
    assert_eq!(
        catalog.candidate(&foreign, Some("amd64")).0.as_str(),
        "2.36-9+deb12u10"
    );
    let native = installed("libc6", "2.36-9+deb12u10", "amd64");
    assert_eq!(
        catalog.candidate(&native, Some("amd64")),
        (&Version::parse("2.36-9+deb12u14").expect("valid"), "amd64")
    );
}
