//! Version order against dpkg itself: pairs drawn from the versions in this machine's apt
//! lists (neighbours in sorted order, which differ by a revision, a tilde or a suffix, and
//! random pairs), each checked with `dpkg --compare-versions A lt B`, run in batches by a
//! shell loop per few hundred pairs.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use courier_debian::{Version, index, sources, status};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Pairs per proptest case; each case runs two shell loops of half as many.
const BATCH: usize = 400;
/// Cases: BATCH × CASES pairs are checked (dpkg takes about 1.5 ms a call here).
const CASES: u32 = 5;

/// The distinct versions of this machine's apt lists and inventory, sorted as text.
fn versions() -> &'static [String] {
    static VERSIONS: OnceLock<Vec<String>> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        let mut found = BTreeSet::new();
        if let Ok(inventory) = status::read_dpkg_status(Path::new(status::DPKG_STATUS)) {
            let native = inventory.native_arch().unwrap_or("amd64").to_owned();
            found.extend(inventory.packages.iter().map(|p| p.version.to_string()));
            for list in sources::machine_lists(Path::new("/"), &native) {
                let read = index::read_packages(&list.path, |p| {
                    found.insert(p.version.to_owned());
                });
                if let Err(e) = read {
                    eprintln!("{e}");
                }
            }
        }
        found.into_iter().collect()
    })
}

/// What dpkg says of each pair: is A lt B?
fn dpkg_lt(pairs: &[(&str, &str)]) -> Vec<bool> {
    let halves: Vec<_> = pairs.chunks(pairs.len().div_ceil(2)).collect();
    let children: Vec<_> = halves
        .iter()
        .map(|half| {
            let script = "while read -r a b; do \
                          if dpkg --compare-versions \"$a\" lt \"$b\"; then echo 1; else echo 0; fi; done";
            let mut child = Command::new("sh")
                .args(["-c", script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("sh runs");
            let mut input = String::new();
            for (a, b) in half.iter() {
                input.push_str(&format!("{a} {b}\n"));
            }
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(input.as_bytes()).expect("write pairs");
            drop(stdin);
            child
        })
        .collect();
    let mut answers = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("sh finishes");
        answers.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l == "1"),
        );
    }
    answers
}

#[test]
fn orders_real_versions_as_dpkg_compare_versions_does() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("no dpkg on this machine: only the table of known cases checks the order");
        return;
    }
    let all = versions();
    if all.len() < 2 {
        eprintln!("no apt lists on this machine: only the table of known cases checks the order");
        return;
    }
    let n = all.len();
    let pair = prop_oneof![
        (0..n, 1..4usize).prop_map(move |(i, step)| (i, (i + step) % n)),
        (0..n, 0..n),
    ];
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let checked = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&prop::collection::vec(pair, BATCH), |indices| {
        let pairs: Vec<(&str, &str)> = indices
            .iter()
            .map(|&(i, j)| (all[i].as_str(), all[j].as_str()))
            .collect();
        let expected = dpkg_lt(&pairs);
        prop_assert_eq!(expected.len(), pairs.len(), "dpkg answered every pair");
        for ((a, b), dpkg_says_lt) in pairs.iter().zip(expected) {
            let (va, vb) = (Version::parse(a), Version::parse(b));
            let (va, vb) = (va.expect("index versions are valid"), vb.expect("valid"));
            prop_assert_eq!(va < vb, dpkg_says_lt, "{} lt {}", a, b);
        }
        checked.fetch_add(pairs.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    result.unwrap_or_else(|e| panic!("{e}"));
    let checked = checked.into_inner();
    eprintln!("{checked} pairs of {n} real versions ordered as dpkg orders them");
}
