//! An [`InstallService`] from a catalog directory: `install.toml` says what the service
//! needs and, for an installer, what it provides at which version; `files/` holds what it
//! installs.
//!
//! ```toml
//! # what the service needs on the client
//! needs = ["acme:fonts/glyphs ^1.2", "package zlib1g"]
//! # present for an installer: the interface it provides and the version it installs
//! [install]
//! provides = "acme:fonts/glyphs"
//! version = "1.4.0"
//! ```
//!
//! Every regular file under `files/` (recursively; symbolic links are refused) becomes one
//! [`File`] of the plan, its path relative to `files/` and `/`-separated, in sorted order.

use std::io;
use std::path::{Path, PathBuf};

use courier_install_api::messages::MAX_MESSAGE;
use courier_install_api::{File, Need, Plan, encode, slug};
use serde::Deserialize;

use super::InstallService;

/// The file of a catalog directory that describes the service.
pub const INSTALL_FILE: &str = "install.toml";

/// The directory of a catalog directory that holds the files to install.
pub const FILES_DIR: &str = "files";

/// Why a catalog directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InstallDirError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What was being read.
        path: PathBuf,
        /// Why not.
        source: io::Error,
    },
    /// `install.toml` is not TOML of the expected form.
    #[error("{} is not a valid install file: {source}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        source: Box<toml::de::Error>,
    },
    /// A `needs` entry that is not `package NAME` or `INTERFACE REQUIREMENT`.
    #[error("the need {need:?} is not `package NAME` or `INTERFACE REQUIREMENT`: {reason}")]
    Need {
        /// The entry.
        need: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `[install] provides` is not `namespace:package/interface`.
    #[error(
        "[install] provides {0:?}, which is not an interface name (namespace:package/interface)"
    )]
    Provides(String),
    /// `[install] version` is not semver.
    #[error("[install] version {version:?} is not semver: {source}")]
    Version {
        /// The version given.
        version: String,
        /// semver's reason.
        source: semver::Error,
    },
    /// Something under `files/` that is not a regular file or a directory, or whose name
    /// is not UTF-8.
    #[error("{} is not a regular file or directory with a UTF-8 name", path.display())]
    Special {
        /// What it is.
        path: PathBuf,
    },
    /// The plan would be larger than a proxy accepts.
    #[error("the files under {} make a plan of {len} bytes, over the {MAX_MESSAGE}-byte cap", path.display())]
    TooLarge {
        /// The `files/` directory.
        path: PathBuf,
        /// The encoded plan's length.
        len: usize,
    },
}

/// `install.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallFile {
    #[serde(default)]
    needs: Vec<String>,
    install: Option<InstallSection>,
}

/// `install.toml`'s `[install]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallSection {
    provides: String,
    version: String,
}

impl InstallService {
    /// Reads the service of the catalog directory `dir`: `dir/install.toml`, and for an
    /// installer the files under `dir/files/` (none when it is absent).
    pub fn from_dir(dir: &Path) -> Result<Self, InstallDirError> {
        let path = dir.join(INSTALL_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| InstallDirError::Read {
            path: path.clone(),
            source,
        })?;
        let file: InstallFile = toml::from_str(&text).map_err(|source| InstallDirError::Toml {
            path,
            source: Box::new(source),
        })?;
        let needs = file
            .needs
            .iter()
            .map(|need| parse_need(need))
            .collect::<Result<_, _>>()?;
        let plan = file.install.map(|install| plan(dir, install)).transpose()?;
        Ok(Self { needs, plan })
    }
}

/// One `needs` entry: `package NAME` (a Debian package name) or `INTERFACE REQUIREMENT`
/// (`acme:fonts/glyphs ^1.2`; the requirement may have spaces: `>=1.2, <2`).
pub fn parse_need(text: &str) -> Result<Need, InstallDirError> {
    let bad = |reason: &str| InstallDirError::Need {
        need: text.to_owned(),
        reason: reason.to_owned(),
    };
    let (head, rest) = text
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("it has one word"))?;
    let rest = rest.trim();
    if head == "package" {
        return if courier_debian::is_package_name(rest) {
            Ok(Need::Package(rest.to_owned()))
        } else {
            Err(bad("not a Debian package name"))
        };
    }
    if slug(head).is_none() {
        return Err(bad("not an interface name (namespace:package/interface)"));
    }
    rest.parse::<semver::VersionReq>()
        .map_err(|e| bad(&format!("not a semver requirement: {e}")))?;
    Ok(Need::Service {
        interface: head.to_owned(),
        version: rest.to_owned(),
    })
}

/// The plan of `[install]` with the files under `dir/files/`.
fn plan(dir: &Path, install: InstallSection) -> Result<Plan, InstallDirError> {
    if slug(&install.provides).is_none() {
        return Err(InstallDirError::Provides(install.provides));
    }
    if let Err(source) = install.version.parse::<semver::Version>() {
        return Err(InstallDirError::Version {
            version: install.version,
            source,
        });
    }
    let root = dir.join(FILES_DIR);
    let mut files = Vec::new();
    if root.exists() {
        collect(&root, "", &mut files)?;
    }
    files.sort_by(|a: &File, b: &File| a.path.cmp(&b.path));
    let plan = Plan {
        provides: install.provides,
        version: install.version,
        files,
    };
    let len = encode(&plan).len();
    if len > MAX_MESSAGE {
        return Err(InstallDirError::TooLarge { path: root, len });
    }
    Ok(plan)
}

/// Adds the files under `dir` to `files`, their paths prefixed with `prefix`.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<File>) -> Result<(), InstallDirError> {
    let read = |path: &Path, source| InstallDirError::Read {
        path: path.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
        let entry = entry.map_err(|e| read(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| read(&path, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(InstallDirError::Special { path });
        };
        let relative = format!("{prefix}{name}");
        if kind.is_dir() {
            collect(&path, &format!("{relative}/"), files)?;
        } else if kind.is_file() {
            let contents = std::fs::read(&path).map_err(|e| read(&path, e))?;
            files.push(File {
                path: relative,
                contents,
            });
        } else {
            return Err(InstallDirError::Special { path });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_good_dir_gives_needs_and_a_plan() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(INSTALL_FILE),
            "# needs\nneeds = [\"acme:fonts/glyphs ^1.2\", \"package zlib1g\", \
             \"acme:db/driver >=2, <3\"]\n\
             [install]\nprovides = \"acme:fonts/shaper\"\nversion = \"0.3.1\"\n",
        );
        write(&dir.path().join("files/share/glyphs.txt"), "a\n");
        write(&dir.path().join("files/bin/tool"), "#!/bin/sh\n");
        write(&dir.path().join("files/README"), "hi");
        let service = InstallService::from_dir(dir.path()).unwrap();
        assert_eq!(
            service.needs,
            [
                Need::Service {
                    interface: "acme:fonts/glyphs".into(),
                    version: "^1.2".into()
                },
                Need::Package("zlib1g".into()),
                Need::Service {
                    interface: "acme:db/driver".into(),
                    version: ">=2, <3".into()
                },
            ]
        );
        let plan = service.plan.unwrap();
        assert_eq!(plan.provides, "acme:fonts/shaper");
        assert_eq!(plan.version, "0.3.1");
        let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["README", "bin/tool", "share/glyphs.txt"]);
        assert_eq!(plan.files[2].contents, b"a\n");
    }

    #[test]
    fn no_install_section_means_no_plan() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join(INSTALL_FILE), "needs = []\n");
        assert_eq!(
            InstallService::from_dir(dir.path()).unwrap(),
            InstallService::default()
        );
        write(&dir.path().join(INSTALL_FILE), "");
        assert_eq!(
            InstallService::from_dir(dir.path()).unwrap(),
            InstallService::default()
        );
    }

    #[test]
    fn bad_needs_are_refused() {
        for bad in [
            "zlib1g",
            "package",
            "package Zlib",
            "package zlib1g extra",
            "acme/fonts ^1",
            "acme:fonts/glyphs not-a-req",
            "acme:fonts/glyphs@1.0.0 ^1",
        ] {
            assert!(
                matches!(parse_need(bad), Err(InstallDirError::Need { .. })),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join(INSTALL_FILE), "needs = [\"package\"]\n");
        let err = InstallService::from_dir(dir.path()).unwrap_err();
        assert!(matches!(&err, InstallDirError::Need { need, .. } if need == "package"));
        assert!(err.to_string().contains("\"package\""), "{err}");
    }

    #[test]
    fn a_bad_install_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let install = dir.path().join(INSTALL_FILE);
        write(
            &install,
            "[install]\nprovides = \"../etc\"\nversion = \"1.0.0\"\n",
        );
        assert!(matches!(
            InstallService::from_dir(dir.path()),
            Err(InstallDirError::Provides(_))
        ));
        write(
            &install,
            "[install]\nprovides = \"a:b/c\"\nversion = \"one\"\n",
        );
        assert!(matches!(
            InstallService::from_dir(dir.path()),
            Err(InstallDirError::Version { .. })
        ));
        write(&install, "[install]\nprovides = \"a:b/c\"\n");
        assert!(matches!(
            InstallService::from_dir(dir.path()),
            Err(InstallDirError::Toml { .. })
        ));
        write(&install, "need = []\n");
        assert!(matches!(
            InstallService::from_dir(dir.path()),
            Err(InstallDirError::Toml { .. })
        ));
    }

    #[test]
    fn a_missing_install_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = InstallService::from_dir(dir.path()).unwrap_err();
        let InstallDirError::Read { path, source } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(path, &dir.path().join(INSTALL_FILE));
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_under_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(INSTALL_FILE),
            "[install]\nprovides = \"a:b/c\"\nversion = \"1.0.0\"\n",
        );
        write(&dir.path().join("files/real"), "x");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("files/link")).unwrap();
        assert!(matches!(
            InstallService::from_dir(dir.path()),
            Err(InstallDirError::Special { .. })
        ));
    }

    #[test]
    fn the_example_catalog_loads() {
        let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../install-catalog");
        let greeter = InstallService::from_dir(&catalog.join("greeter")).unwrap();
        assert!(greeter.plan.is_none());
        assert_eq!(greeter.needs.len(), 1);
        for (name, version) in [("glyphs", "1.4.0"), ("glyphs-1.5", "1.5.0")] {
            let service = InstallService::from_dir(&catalog.join(name)).unwrap();
            assert!(service.needs.is_empty(), "{name}");
            let plan = service.plan.unwrap();
            assert_eq!(
                (plan.provides.as_str(), plan.version.as_str()),
                ("acme:fonts/glyphs", version)
            );
            let paths: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
            assert_eq!(paths, ["share/glyphs.txt"], "{name}");
        }
    }
}
