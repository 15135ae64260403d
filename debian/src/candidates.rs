//! The versions a set of `Packages` indexes offer, and the upgrades apt would choose for an
//! inventory from them, without pins (apt_preferences(5)):
//!
//! - an installed package of the native architecture or `all` is offered the versions of
//!   its name for the native architecture and for `all` (apt files `all` under the native
//!   architecture); one of a foreign architecture only those of that architecture;
//! - each offered version has its index's priority (500 by default), the installed version
//!   at least 100; the candidate is the version of highest priority, the higher version
//!   among equals, and never one older than the installed version;
//! - an upgrade is an installed package whose candidate is newer than what is installed.
//!
//! Indexes are read in parallel, one thread per file up to the machine's cores; a file
//! that cannot be read is reported and the others are still used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::index::{self, IndexError, IndexStats};
use crate::sources::{AptList, DEFAULT_PRIORITY};
use crate::status::{Installed, Inventory};
use crate::version::Version;

/// The versions offered by a set of indexes, by package name.
#[derive(Default)]
pub struct Catalog {
    /// Each name's most recently added offer; offers chain to the earlier ones.
    names: HashMap<Box<str>, u32>,
    offers: Vec<Offer>,
    archs: Vec<Box<str>>,
    lists: Vec<(PathBuf, i32)>,
}

/// An installed package whose candidate is newer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The package name.
    pub name: String,
    /// The installed package's architecture, which with the name says which package is
    /// meant (`apt list --upgradable` shows this one too, even when the candidate moved
    /// between `all` and the native architecture).
    pub arch: String,
    /// The installed version.
    pub installed: Version,
    /// The candidate version.
    pub candidate: Version,
}

/// What loading a catalog found: what each index gave, and the indexes that failed.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The indexes read.
    pub read: Vec<IndexStats>,
    /// The indexes that could not be read; their packages are not in the catalog.
    pub failed: Vec<IndexError>,
}

impl Catalog {
    /// A catalog of the given lists, read in parallel.
    pub fn load(lists: &[AptList]) -> (Catalog, LoadReport) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut results: Vec<Option<Result<Parsed, IndexError>>> = Vec::new();
        results.resize_with(lists.len(), || None);
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.min(lists.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(list) = lists.get(i) else { break done };
                            done.push((i, parse(&list.path)));
                        }
                    })
                })
                .collect();
            for worker in workers {
                // A worker that panicked leaves its lists unread; they are reported below.
                for (i, result) in worker.join().unwrap_or_default() {
                    results[i] = Some(result);
                }
            }
        });
        let mut catalog = Catalog::default();
        let mut report = LoadReport::default();
        for (list, result) in lists.iter().zip(results) {
            match result {
                Some(Ok(parsed)) => {
                    report.read.push(parsed.stats.clone());
                    catalog.merge(list.priority, parsed);
                }
                Some(Err(error)) => {
                    tracing::warn!("{error}");
                    report.failed.push(error);
                }
                None => tracing::warn!(list = %list.path.display(), "index reader stopped"),
            }
        }
        (catalog, report)
    }

    /// Adds the packages of the index at `path`, offered at `priority`.
    pub fn add_index(&mut self, path: &Path, priority: i32) -> Result<IndexStats, IndexError> {
        let parsed = parse(path)?;
        let stats = parsed.stats.clone();
        self.merge(priority, parsed);
        Ok(stats)
    }

    /// Adds the index at `path` at the default priority.
    pub fn add_default_index(&mut self, path: &Path) -> Result<IndexStats, IndexError> {
        self.add_index(path, DEFAULT_PRIORITY)
    }

    /// How many versions the catalog holds.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The candidate for `package` on a machine whose native architecture is `native`
    /// (`None` when not known: then `all` and the package's own architecture are offered),
    /// with its architecture; the installed version itself when nothing beats it.
    pub fn candidate<'a>(
        &'a self,
        package: &'a Installed,
        native: Option<&str>,
    ) -> (&'a Version, &'a str) {
        let own = package.arch.as_str();
        let native = native.unwrap_or(if own == "all" { "" } else { own });
        let wanted: &[&str] = if own == "all" || own == native {
            &[native, "all"]
        } else {
            &[own]
        };
        let offers = self
            .offers_of(&package.name)
            .filter(|o| wanted.contains(&self.arch(o)));
        let mut installed_priority = 100;
        let mut best: Option<(i32, &Offer)> = None;
        for offer in offers {
            let priority = self
                .lists
                .get(offer.list as usize)
                .map_or(DEFAULT_PRIORITY, |l| l.1);
            match offer.version.cmp(&package.version) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => installed_priority = installed_priority.max(priority),
                std::cmp::Ordering::Greater => {
                    let better =
                        best.is_none_or(|(p, b)| (priority, &offer.version) > (p, &b.version));
                    if better {
                        best = Some((priority, offer));
                    }
                }
            }
        }
        match best {
            Some((priority, offer)) if priority >= installed_priority && priority > 0 => {
                (&offer.version, self.arch(offer))
            }
            _ => (&package.version, own),
        }
    }

    /// Every installed package of `inventory` whose candidate is newer, in the inventory's
    /// order (by name, then architecture).
    pub fn upgrades(&self, inventory: &Inventory) -> Vec<Upgrade> {
        let native = inventory.native_arch();
        inventory
            .packages
            .iter()
            .filter_map(|package| {
                let (candidate, _) = self.candidate(package, native);
                (*candidate > package.version).then(|| Upgrade {
                    name: package.name.clone(),
                    arch: package.arch.clone(),
                    installed: package.version.clone(),
                    candidate: candidate.clone(),
                })
            })
            .collect()
    }

    /// The offers of `name`, the last added first.
    fn offers_of<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Offer> + 'a {
        let mut next = self.names.get(name).copied();
        std::iter::from_fn(move || {
            let offer = self.offers.get(next? as usize)?;
            next = offer.previous;
            Some(offer)
        })
    }

    /// Files the packages of one parsed index under their names.
    fn merge(&mut self, priority: i32, parsed: Parsed) {
        let list = u16::try_from(self.lists.len()).unwrap_or(u16::MAX);
        self.lists.push((parsed.stats.path, priority));
        let archs: Vec<u16> = parsed
            .archs
            .into_iter()
            .map(|a| self.intern_arch(a))
            .collect();
        self.names.reserve(parsed.packages.len());
        self.offers.reserve(parsed.packages.len());
        for (name, version, arch) in parsed.packages {
            let Ok(at) = u32::try_from(self.offers.len()) else {
                break;
            };
            let previous = self.names.insert(name, at);
            let arch = archs.get(usize::from(arch)).copied().unwrap_or(u16::MAX);
            self.offers.push(Offer {
                version,
                arch,
                list,
                previous,
            });
        }
    }

    fn arch(&self, offer: &Offer) -> &str {
        self.archs.get(offer.arch as usize).map_or("", |a| a)
    }

    fn intern_arch(&mut self, arch: Box<str>) -> u16 {
        let found = self.archs.iter().position(|a| *a == arch);
        let index = found.unwrap_or_else(|| {
            self.archs.push(arch);
            self.archs.len() - 1
        });
        u16::try_from(index).unwrap_or(u16::MAX)
    }
}

/// One version offered by one index.
struct Offer {
    version: Version,
    arch: u16,
    list: u16,
    /// The offer of the same name added before this one.
    previous: Option<u32>,
}

/// The packages of one index, owned, ready to merge: name, version, and the index of the
/// architecture in `archs`.
struct Parsed {
    stats: IndexStats,
    archs: Vec<Box<str>>,
    packages: Vec<(Box<str>, Version, u16)>,
}

fn parse(path: &Path) -> Result<Parsed, IndexError> {
    let mut packages = Vec::new();
    let mut archs: Vec<Box<str>> = Vec::new();
    let stats = index::read_packages(path, |p| {
        let arch = archs
            .iter()
            .position(|a| **a == *p.arch)
            .unwrap_or_else(|| {
                archs.push(p.arch.into());
                archs.len() - 1
            });
        // read_packages hands out valid versions only.
        if let (Ok(version), Ok(arch)) = (Version::parse(p.version), u16::try_from(arch)) {
            packages.push((p.name.into(), version, arch));
        }
    })?;
    Ok(Parsed {
        stats,
        archs,
        packages,
    })
}
