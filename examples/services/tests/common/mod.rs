//! What the patch tests share: the example catalog, a copy of the app it patches, and the
//! inventory a proxy would send for a managed directory.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use courier_example_services::patch::{IndexSource, PatchConfig, PatchProvider};
use courier_patch_api::{Engine, Inventory};

/// `examples/patch-catalog`.
pub fn example_catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../patch-catalog")
}

/// courier-debian's test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../debian/tests/fixtures")
}

/// A provider with a store in memory.
pub fn provider(catalog: Option<PathBuf>, indexes: IndexSource) -> PatchProvider {
    PatchProvider::open(&PatchConfig {
        catalog,
        indexes,
        ..PatchConfig::default()
    })
    .unwrap()
}

/// A copy of the example app before its patches.
pub fn managed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&example_catalog().join("managed-1.0"), dir.path());
    dir
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The inventory a proxy would send for the managed directory `dir` (no packages).
pub fn client_inventory(provider: &PatchProvider, dir: &Path) -> Inventory {
    let engine = Engine::open(dir).unwrap();
    Inventory {
        client: "client-a".into(),
        os: "linux".into(),
        evidence: engine.gather(&provider.gather_list().paths),
        applied: engine
            .applied()
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect(),
        ..Inventory::default()
    }
}
