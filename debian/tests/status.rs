//! The installed inventory from a status fixture, from apk's database format, and from this
//! machine's own status file checked against `dpkg-query`.

use std::path::Path;
use std::process::Command;

use courier_debian::status::{self, ApkPackage};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn keeps_installed_packages_with_version_and_architecture() {
    let inventory = status::read_dpkg_status(&fixture("status")).expect("readable fixture");
    let got: Vec<_> = inventory
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_str(), p.held))
        .collect();
    assert_eq!(
        got,
        [
            ("adduser", "3.134", "all", false),
            ("base-files", "12.4+deb12u11", "amd64", false),
            ("held", "1:2.0-1", "amd64", true),
            ("libc6", "2.36-9+deb12u10", "amd64", false),
            ("libc6", "2.36-9+deb12u10", "i386", false),
            ("tzdata", "2024a-0+deb12u1", "all", false),
        ]
    );
    // A line without a colon, an invalid version, a missing version.
    assert_eq!(inventory.skipped, 3);
    assert_eq!(inventory.native_arch(), None);
}

#[test]
fn a_missing_status_file_is_a_clear_error() {
    let err = status::read_dpkg_status(Path::new("/nonexistent/status")).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("cannot open /nonexistent/status: "),
        "{err}"
    );
}

#[test]
fn reads_apks_database() {
    let db = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nF:lib\nR:libc.musl-x86_64.so.1\nR:ld-musl-x86_64.so.1\n\n\
              P:busybox\nV:1.36.1-r29\nA:x86_64\n\nP:no-version\nA:x86_64\n\nP:noarch\nV:1-r0";
    let packages = status::parse_apk_installed("db", db.as_bytes()).expect("readable");
    let package = |name: &str, version: &str, arch: &str| ApkPackage {
        name: name.into(),
        version: version.into(),
        arch: arch.into(),
    };
    assert_eq!(
        packages,
        [
            package("busybox", "1.36.1-r29", "x86_64"),
            package("musl", "1.2.5-r0", "x86_64"),
            package("noarch", "1-r0", ""),
        ]
    );
}

#[test]
fn reads_this_machines_inventory_as_dpkg_query_does() {
    let path = Path::new(status::DPKG_STATUS);
    if !path.exists() {
        eprintln!("no {} on this machine: nothing to check", path.display());
        return;
    }
    let inventory = status::read_dpkg_status(path).expect("readable status file");
    assert_eq!(inventory.skipped, 0);
    let format = "${db:Status-Status} ${Package} ${Version} ${Architecture}\n";
    let Ok(out) = Command::new("dpkg-query")
        .args(["-W", "-f", format])
        .output()
    else {
        eprintln!("no dpkg-query on this machine: only the status file was read");
        return;
    };
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut expected: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .map(str::to_owned)
        .collect();
    expected.sort();
    let mut got: Vec<String> = inventory
        .packages
        .iter()
        .map(|p| format!("{} {} {}", p.name, p.version, p.arch))
        .collect();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        inventory.native_arch(),
        Some(debian_arch(std::env::consts::ARCH))
    );
}

/// Debian's name for Rust's architecture name, for the few this is likely to run on.
fn debian_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        other => other,
    }
}
