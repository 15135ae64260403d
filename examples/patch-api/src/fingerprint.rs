//! A patch's fingerprint evaluated (seed 004): first the install dependencies against the
//! inventory ([`requirements_met`]), then the existence test against the evidence
//! ([`existence`]): already applied, needed, or neither, which means the files were
//! changed locally since the vendor took the fingerprint and the patch must not be applied.

use crate::digest::Digest;
use crate::messages::{FileState, Fingerprint, Inventory, Requires};

/// What the existence test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Every `applied` state holds: the patch is in place.
    AlreadyApplied,
    /// Every `needed` state holds: the patch applies; the reason says which files showed it.
    Needed {
        /// One line for the operator.
        reason: String,
    },
    /// Neither: a file is in a state the fingerprint does not know.
    ChangedLocally {
        /// The first file that differs from its `needed` state.
        path: String,
        /// The state the fingerprint expected.
        expected: Option<Digest>,
        /// The state found.
        found: Option<Digest>,
    },
    /// The evidence does not say anything about a file the test needs.
    NoEvidence {
        /// That file.
        path: String,
    },
}

/// Whether the inventory meets the fingerprint's install dependencies; the error says
/// which one it does not meet.
pub fn requirements_met(requires: &Requires, inventory: &Inventory) -> Result<(), String> {
    if let Some(os) = &requires.os {
        let id = os_release_value(&inventory.os_release, "ID");
        if *os != inventory.os && id != Some(os.as_str()) {
            return Err(format!("for {os} only"));
        }
    }
    if let Some(arch) = &requires.arch {
        let dpkg = inventory
            .packages
            .iter()
            .find(|p| p.name == "dpkg")
            .map(|p| p.arch.as_str());
        if *arch != inventory.arch && dpkg != Some(arch.as_str()) {
            return Err(format!("for {arch} only"));
        }
    }
    for name in &requires.packages {
        if !inventory.packages.iter().any(|p| p.name == *name) {
            return Err(format!("needs the package {name}"));
        }
    }
    Ok(())
}

/// The existence test, with `state_of(path)` giving each file's current digest (`None`
/// inside: no such file; `None` outside: nothing known about the file).
pub fn existence(
    fingerprint: &Fingerprint,
    mut state_of: impl FnMut(&str) -> Option<Option<Digest>>,
) -> Finding {
    match first_difference(&fingerprint.applied, &mut state_of) {
        Err(path) => return Finding::NoEvidence { path },
        Ok(None) => return Finding::AlreadyApplied,
        Ok(Some(_)) => {}
    }
    match first_difference(&fingerprint.needed, &mut state_of) {
        Err(path) => Finding::NoEvidence { path },
        Ok(None) => Finding::Needed {
            reason: needed_reason(&fingerprint.needed),
        },
        Ok(Some(Difference {
            path,
            expected,
            found,
        })) => Finding::ChangedLocally {
            path,
            expected,
            found,
        },
    }
}

/// A file not in its expected state.
struct Difference {
    path: String,
    expected: Option<Digest>,
    found: Option<Digest>,
}

/// The first of `states` that does not hold; the error names a file without evidence.
fn first_difference(
    states: &[FileState],
    state_of: &mut impl FnMut(&str) -> Option<Option<Digest>>,
) -> Result<Option<Difference>, String> {
    for state in states {
        let found = state_of(&state.path).ok_or_else(|| state.path.clone())?;
        if found != state.sha256 {
            return Ok(Some(Difference {
                path: state.path.clone(),
                expected: state.sha256,
                found,
            }));
        }
    }
    Ok(None)
}

/// [`existence`] against the evidence an inventory carries.
pub fn existence_in(fingerprint: &Fingerprint, inventory: &Inventory) -> Finding {
    existence(fingerprint, |path| {
        inventory
            .evidence
            .iter()
            .find(|e| e.path == path)
            .map(|e| e.sha256)
    })
}

/// A value of os-release text (`ID=debian` → `debian`), quotes removed.
pub fn os_release_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\''))
    })
}

fn needed_reason(needed: &[FileState]) -> String {
    let states: Vec<String> = needed
        .iter()
        .map(|s| match s.sha256 {
            Some(d) => format!("{} is {}", s.path, d.short()),
            None => format!("{} is absent", s.path),
        })
        .collect();
    format!("not yet applied: {}", states.join(", "))
}

impl Finding {
    /// One line for the operator or a note.
    pub fn describe(&self) -> String {
        let state = |d: &Option<Digest>| d.map_or_else(|| "absent".to_owned(), |d| d.short());
        match self {
            Finding::AlreadyApplied => "already applied".into(),
            Finding::Needed { reason } => reason.clone(),
            Finding::ChangedLocally {
                path,
                expected,
                found,
            } => format!(
                "{path} changed locally since the fingerprint (expected {}, found {})",
                state(expected),
                state(found)
            ),
            Finding::NoEvidence { path } => format!("no evidence gathered for {path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Package;

    fn state(path: &str, content: Option<&[u8]>) -> FileState {
        FileState {
            path: path.into(),
            sha256: content.map(Digest::of),
        }
    }

    #[test]
    fn the_existence_test_tells_needed_applied_and_changed_apart() {
        let fp = Fingerprint {
            requires: Requires::default(),
            needed: vec![state("bin/app", Some(b"v1")), state("lib/new", None)],
            applied: vec![state("bin/app", Some(b"v2")), state("lib/new", Some(b"n"))],
        };
        let on = |files: &[(&str, Option<&[u8]>)]| {
            let files: Vec<(String, Option<Digest>)> = files
                .iter()
                .map(|(p, c)| ((*p).to_owned(), c.map(Digest::of)))
                .collect();
            existence(&fp, |path| {
                files.iter().find(|(p, _)| p == path).map(|(_, d)| *d)
            })
        };
        assert!(matches!(
            on(&[("bin/app", Some(b"v1")), ("lib/new", None)]),
            Finding::Needed { .. }
        ));
        assert_eq!(
            on(&[("bin/app", Some(b"v2")), ("lib/new", Some(b"n"))]),
            Finding::AlreadyApplied
        );
        assert!(matches!(
            on(&[("bin/app", Some(b"mine")), ("lib/new", None)]),
            Finding::ChangedLocally { ref path, .. } if path == "bin/app"
        ));
        assert!(matches!(
            on(&[("bin/app", Some(b"v1"))]),
            Finding::NoEvidence { .. }
        ));
    }

    #[test]
    fn requirements_read_the_inventory() {
        let inventory = Inventory {
            os: "linux".into(),
            arch: "x86_64".into(),
            os_release: "NAME=\"Debian GNU/Linux\"\nID=debian\n".into(),
            packages: vec![Package {
                name: "dpkg".into(),
                version: "1.21.22".into(),
                arch: "amd64".into(),
            }],
            ..Inventory::default()
        };
        let req = |os: Option<&str>, arch: Option<&str>, packages: &[&str]| Requires {
            os: os.map(Into::into),
            arch: arch.map(Into::into),
            packages: packages.iter().map(|p| (*p).to_owned()).collect(),
        };
        assert!(
            requirements_met(&req(Some("debian"), Some("amd64"), &["dpkg"]), &inventory).is_ok()
        );
        assert!(requirements_met(&req(Some("linux"), Some("x86_64"), &[]), &inventory).is_ok());
        assert!(requirements_met(&req(Some("alpine"), None, &[]), &inventory).is_err());
        assert!(requirements_met(&req(None, Some("arm64"), &[]), &inventory).is_err());
        assert!(requirements_met(&req(None, None, &["nginx"]), &inventory).is_err());
    }
}
