//! An installer's work on the managed directory: [`install`] writes a plan's files beside
//! the interface's directory, swaps them in (the previous version kept until the swap
//! succeeded) and writes the marker last; a failure on the way removes what it wrote and
//! leaves what was there before. [`remove`] takes the directory, the marker and anything a
//! failed install left.

use crate::{MARKERS, Plan, slug};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why an install or a remove failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The plan names an interface that is not `namespace:package/interface`.
    #[error("the plan provides {0:?}, which is not an interface name")]
    Interface(String),
    /// The plan's version is not semver.
    #[error("the plan's version {0:?} is not semver")]
    Version(String),
    /// A file path that would leave the interface's directory, or is empty.
    #[error("the plan's file {0:?} is not a relative path inside the install")]
    Path(String),
    /// The plan is not what the installer's signed manifest says it installs.
    #[error("the plan installs {field} {planned:?}, but the installer is signed for {signed:?}")]
    NotSigned {
        /// `provides` or `version`.
        field: &'static str,
        /// What the plan says.
        planned: String,
        /// What the manifest says.
        signed: String,
    },
    /// The file system refused.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: String,
        /// Why not.
        source: io::Error,
    },
}

/// Installs `plan` under `root`; the answer is one line about it.
pub fn install(root: &Path, plan: &Plan) -> Result<String, InstallError> {
    let slug =
        slug(&plan.provides).ok_or_else(|| InstallError::Interface(plan.provides.clone()))?;
    plan.version
        .parse::<semver::Version>()
        .map_err(|_| InstallError::Version(plan.version.clone()))?;
    let staging = root.join(format!(".staging-{slug}"));
    let result = stage(&staging, plan).and_then(|()| swap_in(root, &slug, &staging, plan));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result?;
    Ok(format!(
        "installed {} {} ({} files)",
        plan.provides,
        plan.version,
        plan.files.len()
    ))
}

/// `plan`, if it installs what the client says the installer's signed manifest names
/// (the `courier-provides` and `courier-version` facts, when given): a provider cannot make
/// its installer write another interface's directory or marker, or another version.
pub fn signed_plan(
    plan: Plan,
    signed_provides: Option<&str>,
    signed_version: Option<&str>,
) -> Result<Plan, InstallError> {
    for (field, planned, signed) in [
        ("provides", &plan.provides, signed_provides),
        ("version", &plan.version, signed_version),
    ] {
        if let Some(signed) = signed
            && signed != planned
        {
            return Err(InstallError::NotSigned {
                field,
                planned: planned.clone(),
                signed: signed.to_owned(),
            });
        }
    }
    Ok(plan)
}

/// Removes what an install of `provides` put under `root`, and what a failed one left.
pub fn remove(root: &Path, provides: &str) -> Result<String, InstallError> {
    let slug = slug(provides).ok_or_else(|| InstallError::Interface(provides.to_owned()))?;
    let mut removed = false;
    for dir in [
        root.join(&slug),
        root.join(format!(".staging-{slug}")),
        root.join(format!(".previous-{slug}")),
    ] {
        removed |= remove_dir(&dir)?;
    }
    let marker = root.join(MARKERS).join(&slug);
    match std::fs::remove_file(&marker) {
        Ok(()) => removed = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error("removing", &marker, source)),
    }
    Ok(if removed {
        format!("removed {provides}")
    } else {
        format!("{provides} was not installed")
    })
}

/// Writes every file of `plan` under `staging` (emptied first).
fn stage(staging: &Path, plan: &Plan) -> Result<(), InstallError> {
    remove_dir(staging)?;
    for file in &plan.files {
        let relative = relative(&file.path)?;
        let path = staging.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
        }
        std::fs::write(&path, &file.contents).map_err(|e| io_error("writing", &path, e))?;
    }
    std::fs::create_dir_all(staging).map_err(|e| io_error("creating", staging, e))
}

/// Puts `staging` in place of `<root>/<slug>`, then writes the marker.
fn swap_in(root: &Path, slug: &str, staging: &Path, plan: &Plan) -> Result<(), InstallError> {
    let target = root.join(slug);
    let previous = root.join(format!(".previous-{slug}"));
    remove_dir(&previous)?;
    let had_previous = target.exists();
    if had_previous {
        std::fs::rename(&target, &previous).map_err(|e| io_error("moving aside", &target, e))?;
    }
    if let Err(e) = std::fs::rename(staging, &target) {
        if had_previous {
            let _ = std::fs::rename(&previous, &target);
        }
        return Err(io_error("moving in", staging, e));
    }
    let markers = root.join(MARKERS);
    let marker = markers.join(slug);
    // Written beside and renamed over, so that a predicate never reads half a marker.
    let fresh = markers.join(format!(".{slug}.new"));
    let written = std::fs::create_dir_all(&markers)
        .and_then(|()| std::fs::write(&fresh, format!("{}\n", plan.version)))
        .and_then(|()| std::fs::rename(&fresh, &marker));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&fresh);
        let _ = std::fs::remove_dir_all(&target);
        if had_previous {
            let _ = std::fs::rename(&previous, &target);
        }
        return Err(io_error("writing", &marker, e));
    }
    // Installed: the version before is only clutter now. Left behind, it goes with the
    // next install of the same interface, so it does not turn this install into a failure.
    let _ = remove_dir(&previous);
    Ok(())
}

/// `path` as a relative path of normal components only.
fn relative(path: &str) -> Result<PathBuf, InstallError> {
    let p = Path::new(path);
    let normal = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    normal
        .then(|| p.to_path_buf())
        .ok_or_else(|| InstallError::Path(path.to_owned()))
}

/// Removes `dir` and what is in it; false when it was not there.
fn remove_dir(dir: &Path) -> Result<bool, InstallError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("removing", dir, e)),
    }
}

fn io_error(what: &'static str, path: &Path, source: io::Error) -> InstallError {
    InstallError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{File, predicate};

    fn plan(version: &str, files: &[(&str, &str)]) -> Plan {
        Plan {
            provides: "acme:fonts/glyphs".into(),
            version: version.into(),
            files: files
                .iter()
                .map(|(p, c)| File {
                    path: (*p).into(),
                    contents: c.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.strip_prefix(root).unwrap().display().to_string();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(format!(
                        "{name}={}",
                        std::fs::read_to_string(&path).unwrap()
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn an_install_is_swapped_in_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        install(
            root,
            &plan("1.0.0", &[("a.txt", "one"), ("sub/b.txt", "two")]),
        )
        .unwrap();
        assert_eq!(
            listing(root),
            [
                ".installed/acme.fonts.glyphs=1.0.0\n",
                "acme.fonts.glyphs/a.txt=one",
                "acme.fonts.glyphs/sub/b.txt=two"
            ]
        );
        assert_eq!(
            predicate::installed(root, "acme:fonts/glyphs"),
            Some("1.0.0".parse().unwrap())
        );
        // An upgrade replaces the whole directory.
        install(root, &plan("1.1.0", &[("a.txt", "one'")])).unwrap();
        assert_eq!(
            listing(root),
            [
                ".installed/acme.fonts.glyphs=1.1.0\n",
                "acme.fonts.glyphs/a.txt=one'"
            ]
        );
        assert_eq!(
            remove(root, "acme:fonts/glyphs").unwrap(),
            "removed acme:fonts/glyphs"
        );
        assert!(listing(root).is_empty());
        assert_eq!(
            remove(root, "acme:fonts/glyphs").unwrap(),
            "acme:fonts/glyphs was not installed"
        );
    }

    #[test]
    fn a_plan_must_be_what_the_installer_is_signed_for() {
        let p = plan("1.0.0", &[]);
        assert!(signed_plan(p.clone(), None, None).is_ok());
        assert!(signed_plan(p.clone(), Some("acme:fonts/glyphs"), Some("1.0.0")).is_ok());
        assert!(matches!(
            signed_plan(p.clone(), Some("acme:other/x"), None),
            Err(InstallError::NotSigned {
                field: "provides",
                ..
            })
        ));
        assert!(matches!(
            signed_plan(p, Some("acme:fonts/glyphs"), Some("2.0.0")),
            Err(InstallError::NotSigned {
                field: "version",
                ..
            })
        ));
    }

    #[test]
    fn a_failure_halfway_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        install(root, &plan("1.0.0", &[("a.txt", "one")])).unwrap();
        let before = listing(root);
        for bad in ["../escape", "/etc/passwd", "", "x/../../y"] {
            let err = install(root, &plan("2.0.0", &[("ok.txt", "fine"), (bad, "evil")]));
            assert!(matches!(err, Err(InstallError::Path(_))), "{bad}: {err:?}");
            assert_eq!(listing(root), before, "{bad}");
        }
        assert!(matches!(
            install(root, &plan("two", &[])),
            Err(InstallError::Version(_))
        ));
        let mut other = plan("1.0.0", &[]);
        other.provides = "../../etc".into();
        assert!(matches!(
            install(root, &other),
            Err(InstallError::Interface(_))
        ));
        assert!(matches!(
            remove(root, "../x"),
            Err(InstallError::Interface(_))
        ));
    }
}
