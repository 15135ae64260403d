//! The package side of the patch provider's catalog: apt `Packages` indexes (this machine's
//! own lists, as apt reads them, or every index in a folder the vendor names), and the
//! upgrades they offer a client's inventory, chosen as apt chooses them (`courier-debian`).
//!
//! An index that cannot be read (truncated, corrupt) is left out with a note naming the
//! file; the others are still used.

use std::path::{Path, PathBuf};

use courier_debian::sources::{self, AptList, DEFAULT_PRIORITY};
use courier_debian::status::{self, Installed};
use courier_debian::{Catalog, Version};
use courier_patch_api::{Inventory, UpgradeOffer};

/// Where the package indexes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexSource {
    /// The lists apt reads on the machine whose root is this directory (`/`).
    Machine(PathBuf),
    /// Every `Packages` index in this folder (plain, `.gz`, `.xz`, `.lz4`), at apt's
    /// default priority.
    Folder(PathBuf),
    /// No package indexes: patches only.
    None,
}

/// The loaded indexes.
pub struct PackageIndex {
    catalog: Catalog,
    lists: usize,
    packages: usize,
    notes: Vec<String>,
}

/// Why the index folder could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum IndexLoadError {
    /// The folder could not be read.
    #[error("cannot read the index folder {path}: {error}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

impl PackageIndex {
    /// Loads the indexes of `source`.
    pub fn load(source: &IndexSource) -> Result<PackageIndex, IndexLoadError> {
        let lists = match source {
            IndexSource::Machine(root) => machine_lists(root),
            IndexSource::Folder(dir) => folder_lists(dir)?,
            IndexSource::None => Vec::new(),
        };
        let (catalog, report) = Catalog::load(&lists);
        let notes = report
            .failed
            .iter()
            .map(|e| format!("package index not used: {e}"))
            .collect();
        Ok(PackageIndex {
            catalog,
            lists: report.read.len(),
            packages: report.read.iter().map(|r| r.packages).sum(),
            notes,
        })
    }

    /// How many indexes were read, and how many package versions they hold.
    pub fn size(&self) -> (usize, usize) {
        (self.lists, self.packages)
    }

    /// One line per index that could not be read.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The upgrades apt would choose for `inventory`'s packages; packages whose version
    /// does not parse are left out and counted in the second value.
    pub fn upgrades(&self, inventory: &Inventory) -> (Vec<UpgradeOffer>, usize) {
        let native = dpkg_arch(inventory);
        let mut skipped = 0;
        let mut packages: Vec<Installed> = inventory
            .packages
            .iter()
            .filter_map(|p| {
                let Ok(version) = Version::parse(&p.version) else {
                    skipped += 1;
                    return None;
                };
                let arch = if p.arch.is_empty() {
                    native.clone()
                } else {
                    p.arch.clone()
                };
                Some(Installed {
                    name: p.name.clone(),
                    version,
                    arch,
                    held: false,
                })
            })
            .collect();
        packages.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        let inventory = status::Inventory {
            packages,
            skipped: 0,
        };
        let upgrades = self
            .catalog
            .upgrades(&inventory)
            .into_iter()
            .map(|u| UpgradeOffer {
                name: u.name,
                arch: u.arch,
                installed: u.installed.to_string(),
                candidate: u.candidate.to_string(),
            })
            .collect();
        (upgrades, skipped)
    }
}

/// The client's dpkg architecture: that of its `dpkg` package, else its `arch` fact in
/// Debian's names.
fn dpkg_arch(inventory: &Inventory) -> String {
    if let Some(dpkg) = inventory
        .packages
        .iter()
        .find(|p| p.name == "dpkg" && !p.arch.is_empty())
    {
        return dpkg.arch.clone();
    }
    match inventory.arch.as_str() {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i686" | "i586" | "i386" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        other => other,
    }
    .to_owned()
}

/// The lists apt reads on the machine at `root`, for its native architecture (that of its
/// installed `dpkg`).
fn machine_lists(root: &Path) -> Vec<AptList> {
    let status = root.join(status::DPKG_STATUS.trim_start_matches('/'));
    let native = status::read_dpkg_status(&status)
        .ok()
        .and_then(|i| i.native_arch().map(str::to_owned));
    match native {
        Some(native) => sources::machine_lists(root, &native),
        None => {
            tracing::warn!(status = %status.display(), "no dpkg on this machine: no apt lists");
            Vec::new()
        }
    }
}

/// Every `Packages` index in `dir`, sorted by name.
fn folder_lists(dir: &Path) -> Result<Vec<AptList>, IndexLoadError> {
    let entries = std::fs::read_dir(dir).map_err(|error| IndexLoadError::Folder {
        path: dir.display().to_string(),
        error,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            ["", ".gz", ".xz", ".lz4"]
                .iter()
                .any(|suffix| name.ends_with(&format!("Packages{suffix}")))
        })
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| AptList {
            path,
            priority: DEFAULT_PRIORITY,
            suite: String::new(),
        })
        .collect())
}
