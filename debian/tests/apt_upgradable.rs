//! The upgrades chosen for this machine's own inventory and lists are exactly what
//! `apt list --upgradable` shows (names, versions, architectures); without apt, the same
//! check runs on a fixture machine whose expected output apt gave.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use courier_debian::Catalog;
use courier_debian::sources;
use courier_debian::status;

use courier_debian::apt_list::{Listed as Line, parse_upgradable as parse_apt_list};

/// The upgrades this crate chooses for the machine under `root`.
fn chosen(root: &Path) -> BTreeSet<Line> {
    let inventory = status::read_dpkg_status(&root.join("var/lib/dpkg/status")).expect("status");
    let native = inventory
        .native_arch()
        .expect("dpkg is installed")
        .to_owned();
    let lists = sources::machine_lists(root, &native);
    if lists.is_empty() {
        eprintln!(
            "no apt lists under {}: nothing can be upgraded",
            root.display()
        );
    }
    let (catalog, report) = Catalog::load(&lists);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    catalog
        .upgrades(&inventory)
        .into_iter()
        .map(|u| {
            (
                u.name,
                u.candidate.to_string(),
                u.arch,
                u.installed.to_string(),
            )
        })
        .collect()
}

fn assert_same(got: &BTreeSet<Line>, expected: &BTreeSet<Line>) {
    let missing: Vec<_> = expected.difference(got).collect();
    let extra: Vec<_> = got.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "apt shows but we miss: {missing:#?}\nwe show but apt does not: {extra:#?}"
    );
}

#[test]
fn upgrades_for_this_machine_are_what_apt_lists() {
    let apt = Command::new("apt").args(["list", "--upgradable"]).output();
    let Ok(out) = apt.as_ref() else {
        eprintln!("no apt on this machine: the fixture machine's test covers the comparison");
        return;
    };
    assert!(
        out.status.success(),
        "apt list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = parse_apt_list(&String::from_utf8_lossy(&out.stdout));
    let got = chosen(Path::new("/"));
    assert_same(&got, &expected);
    eprintln!("{} upgrades, the same as apt list --upgradable", got.len());
}

/// The fixture machine: bookworm (LZ4, with an i386 list in gzip), backports (xz,
/// `NotAutomatic` and `ButAutomaticUpgrades`), security (plain), experimental (gzip,
/// `NotAutomatic`), a disabled source whose list is still on disk; a held package, a
/// foreign-architecture package, one that moved from `all` to `amd64`, one newer than any
/// index, one whose only newer version is in experimental, `2.0` against `2.0-0`.
fn fixture_machine() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/machine"
    ))
}

#[test]
fn upgrades_for_the_fixture_machine_are_what_apt_listed() {
    let listed = std::fs::read_to_string(fixture_machine().join("apt-list-upgradable.txt"));
    let expected = parse_apt_list(&listed.expect("fixture"));
    assert_eq!(expected.len(), 9);
    let lists = sources::machine_lists(fixture_machine(), "amd64");
    assert_eq!(
        lists.len(),
        5,
        "bookworm amd64 and i386, backports, security, experimental"
    );
    assert_same(&chosen(fixture_machine()), &expected);
}

#[test]
fn apt_still_lists_the_fixture_machines_upgrades_so() {
    if Command::new("apt").arg("--version").output().is_err() {
        eprintln!("no apt on this machine: the fixture's expected output stays as apt gave it");
        return;
    }
    // apt writes nothing into the root with these options, but copy it all the same.
    let root = tempfile::tempdir().expect("temp dir");
    copy_tree(fixture_machine(), root.path());
    let dir = |path: &str| format!("{}/{path}", root.path().display());
    let options = [
        format!("Dir={}/", root.path().display()),
        format!("Dir::State::status={}", dir("var/lib/dpkg/status")),
        format!("Dir::Etc::Parts={}", dir("etc/apt/apt.conf.d")),
        format!(
            "Dir::Etc::PreferencesParts={}",
            dir("etc/apt/preferences.d")
        ),
        "Dir::Cache::pkgcache=".into(),
        "Dir::Cache::srcpkgcache=".into(),
        "APT::Architecture=amd64".into(),
        "APT::Architectures::=amd64".into(),
        "APT::Architectures::=i386".into(),
    ];
    let mut apt = Command::new("apt");
    for option in &options {
        apt.args(["-o", option]);
    }
    let out = apt
        .args(["list", "--upgradable"])
        .output()
        .expect("apt runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = std::fs::read_to_string(fixture_machine().join("apt-list-upgradable.txt"));
    assert_eq!(
        parse_apt_list(&String::from_utf8_lossy(&out.stdout)),
        parse_apt_list(&listed.expect("fixture"))
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("readable fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
