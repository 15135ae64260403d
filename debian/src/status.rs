//! The installed inventory: the packages dpkg's status file (`/var/lib/dpkg/status`) says
//! are installed, with version and architecture, and the same read from apk's database
//! (`/lib/apk/db/installed`) on Alpine.
//!
//! A package is installed when the third word of its `Status` (the state) is `installed`,
//! whatever was asked of it: `install ok installed`, a held package (`hold ok installed`)
//! and one selected for removal but still there (`deinstall ok installed`) all count, as
//! they do for apt. Config-files remnants and half-installed packages do not. An installed
//! paragraph without a name, a valid version or an architecture is skipped with a warning
//! and counted, like a malformed paragraph.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::deb822::{self, Deb822Error, Paragraph};
use crate::version::Version;

/// Where dpkg keeps its status file.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Where apk keeps its database of installed packages.
pub const APK_INSTALLED: &str = "/lib/apk/db/installed";

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The package name.
    pub name: String,
    /// The installed version.
    pub version: Version,
    /// Its architecture (`amd64`, `all`, …).
    pub arch: String,
    /// Whether it is held at its version (`hold` in its status).
    pub held: bool,
}

/// The installed packages of one machine, sorted by name then architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The packages.
    pub packages: Vec<Installed>,
    /// How many paragraphs were skipped as malformed or incomplete.
    pub skipped: u64,
}

/// One package in apk's database; apk orders versions its own way, so they stay text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApkPackage {
    /// The package name (`P:`).
    pub name: String,
    /// The version (`V:`).
    pub version: String,
    /// The architecture (`A:`), empty when absent.
    pub arch: String,
}

/// Why an inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The database file could not be opened.
    #[error("cannot open {path}: {error}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// Reading it failed part way.
    #[error(transparent)]
    Read(#[from] Deb822Error),
    /// Reading apk's database failed part way.
    #[error("{path}: read failed: {error}")]
    ReadApk {
        /// The file.
        path: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

impl Inventory {
    /// The machine's own architecture, as dpkg's: the architecture of the installed `dpkg`
    /// package, which is always built for the native architecture.
    pub fn native_arch(&self) -> Option<&str> {
        self.packages
            .iter()
            .find(|p| p.name == "dpkg")
            .map(|p| p.arch.as_str())
    }
}

/// Reads the installed packages from a dpkg status file.
pub fn read_dpkg_status(path: &Path) -> Result<Inventory, StatusError> {
    let file = File::open(path).map_err(|error| StatusError::Open {
        path: path.display().to_string(),
        error,
    })?;
    parse_dpkg_status(&path.display().to_string(), file)
}

/// Reads the installed packages from dpkg status text; `source` names it in warnings.
pub fn parse_dpkg_status(source: &str, input: impl Read) -> Result<Inventory, StatusError> {
    let mut reader = deb822::Reader::new(source, input);
    let mut inventory = Inventory::default();
    while let Some(paragraph) = reader.next_paragraph()? {
        match installed(&paragraph) {
            Ok(Some(package)) => inventory.packages.push(package),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(
                    source,
                    line = paragraph.line(),
                    "skipping a package: {reason}"
                );
                inventory.skipped += 1;
            }
        }
    }
    inventory.skipped += reader.skipped();
    inventory
        .packages
        .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    Ok(inventory)
}

/// Reads the installed packages from apk's database: paragraphs of `X:value` lines
/// separated by blank lines; a paragraph without `P:` or `V:` is skipped with a warning.
pub fn read_apk_installed(path: &Path) -> Result<Vec<ApkPackage>, StatusError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|error| StatusError::Open {
        path: shown.clone(),
        error,
    })?;
    parse_apk_installed(&shown, BufReader::new(file))
}

/// Reads apk's database text; `source` names it in warnings.
pub fn parse_apk_installed(
    source: &str,
    input: impl BufRead,
) -> Result<Vec<ApkPackage>, StatusError> {
    let mut packages = Vec::new();
    let mut current: [Option<String>; 3] = Default::default();
    let mut lines = input.lines();
    loop {
        let line = lines
            .next()
            .transpose()
            .map_err(|error| StatusError::ReadApk {
                path: source.to_owned(),
                error,
            })?;
        match line.as_deref().map(str::trim_end) {
            Some("") | None => {
                if let [Some(name), Some(version), arch] = std::mem::take(&mut current) {
                    let arch = arch.unwrap_or_default();
                    packages.push(ApkPackage {
                        name,
                        version,
                        arch,
                    });
                } else if current.iter().any(Option::is_some) {
                    tracing::warn!(source, "skipping an apk package without P: or V:");
                }
                current = Default::default();
                if line.is_none() {
                    break;
                }
            }
            Some(line) => {
                let slot = match line.split_at_checked(2) {
                    Some(("P:", value)) => Some((0, value)),
                    Some(("V:", value)) => Some((1, value)),
                    Some(("A:", value)) => Some((2, value)),
                    _ => None,
                };
                if let Some((i, value)) = slot {
                    current[i] = Some(value.to_owned());
                }
            }
        }
    }
    packages.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    Ok(packages)
}

/// The installed package a status paragraph describes, `None` when it is not installed.
fn installed(paragraph: &Paragraph<'_>) -> Result<Option<Installed>, &'static str> {
    let status = paragraph.value("Status").ok_or("no Status field")?;
    let words: Vec<&str> = status.split_ascii_whitespace().collect();
    let [want, _flag, state] = words[..] else {
        return Err("a Status field without three words");
    };
    if state != "installed" {
        return Ok(None);
    }
    let name = paragraph.value("Package").ok_or("no Package field")?;
    let version = paragraph.value("Version").ok_or("no Version field")?;
    let version = Version::parse(&version).map_err(|_| "an invalid Version")?;
    let arch = paragraph
        .value("Architecture")
        .ok_or("no Architecture field")?;
    if name.is_empty() || arch.is_empty() {
        return Err("an empty Package or Architecture");
    }
    Ok(Some(Installed {
        name: name.into_owned(),
        version,
        arch: arch.into_owned(),
        held: want == "hold",
    }))
}
