//! Rules of the registry's layout that the compiler does not check by itself.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// What the pure core must never name: files, sockets, processes, threads, the environment,
/// clocks, randomness, locks, the async runtime, the store and QUIC. Its caller passes the
/// time and the ids in, and does the IO.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::io",
    "std::process",
    "std::thread",
    "std::env",
    "SystemTime",
    "Instant",
    "elapsed(",
    "Mutex",
    "RwLock",
    "rand::",
    "random(",
    "tokio",
    "redb",
    "quinn",
    "crate::driver",
    "crate::server",
    "crate::store::RedbStore",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_is_pure() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&core, &mut files);
    assert!(files.len() >= 10, "the core's files: {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the pure core reaches out:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_source_file_is_a_hallway() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 700).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by job:\n{}", long.join("\n"));
}
