//! The predicate: which of a service's needs are missing on this client, read from the
//! managed directory's install markers (a service) and the `packages` host fact (a
//! package: one `name<TAB>version<TAB>arch` line per installed package).

use crate::messages::DecodeError;
use crate::{MARKERS, Need, Needs, decode, slug};
use std::path::Path;

/// A predicate proxy's whole check: decodes its provider's answer to
/// [`crate::methods::NEEDS`] and returns what of it is [`missing`] under `root`.
pub fn missing_from_answer(
    root: &Path,
    answer: &[u8],
    packages: Option<&str>,
) -> Result<Vec<Need>, DecodeError> {
    let needs: Needs = decode("provider's needs answer", answer)?;
    Ok(missing(root, &needs.needs, packages))
}

/// The needs in `needs` that are not met: a service whose marker is absent, unreadable or
/// names a version outside the requirement (or whose requirement or interface is not
/// well formed: nothing can meet it), a package absent from `packages`.
pub fn missing(root: &Path, needs: &[Need], packages: Option<&str>) -> Vec<Need> {
    needs
        .iter()
        .filter(|need| !met(root, need, packages))
        .cloned()
        .collect()
}

/// The version installed for `interface`, as its marker says.
pub fn installed(root: &Path, interface: &str) -> Option<semver::Version> {
    let slug = slug(interface)?;
    let text = std::fs::read_to_string(root.join(MARKERS).join(slug)).ok()?;
    text.trim().parse().ok()
}

fn met(root: &Path, need: &Need, packages: Option<&str>) -> bool {
    match need {
        Need::Service { interface, version } => {
            let Ok(req) = version.parse::<semver::VersionReq>() else {
                return false;
            };
            installed(root, interface).is_some_and(|v| req.matches(&v))
        }
        Need::Package(name) => packages.is_some_and(|list| {
            list.lines()
                .any(|line| line.split('\t').next() == Some(name.as_str()))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(interface: &str, version: &str) -> Need {
        Need::Service {
            interface: interface.into(),
            version: version.into(),
        }
    }

    #[test]
    fn markers_and_packages_decide() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join(MARKERS)).unwrap();
        std::fs::write(root.join(MARKERS).join("acme.fonts.glyphs"), "1.4.0\n").unwrap();
        let needs = [
            service("acme:fonts/glyphs", "^1.2"),
            service("acme:fonts/glyphs", "^2"),
            service("acme:db/driver", "*"),
            service("acme:fonts/glyphs", "not a requirement"),
            Need::Package("zlib1g".into()),
            Need::Package("libfoo".into()),
        ];
        let packages = "zlib1g\t1:1.2.13\tamd64\nlibfoo-dev\t1\tamd64\n";
        assert_eq!(
            missing(root, &needs, Some(packages)),
            vec![
                needs[1].clone(),
                needs[2].clone(),
                needs[3].clone(),
                needs[5].clone()
            ]
        );
        assert_eq!(missing(root, &needs[4..5], None), vec![needs[4].clone()]);
        let answer = crate::encode(&Needs {
            needs: needs.to_vec(),
        });
        assert_eq!(
            missing_from_answer(root, &answer, Some(packages)).unwrap(),
            missing(root, &needs, Some(packages))
        );
        assert!(missing_from_answer(root, &[0xff, 0xff], None).is_err());
    }
}
