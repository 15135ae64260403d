//! Interface names of the component model: `namespace:package/interface@version`.

use std::fmt;
use std::str::FromStr;

/// A parsed interface name. The version is optional in a request and required in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName {
    /// `courier` in `courier:echo/echo`.
    pub namespace: String,
    /// `echo` in `courier:echo/echo`.
    pub package: String,
    /// The interface itself: the last `echo` in `courier:echo/echo`.
    pub interface: String,
    /// The package version after `@`, if any.
    pub version: Option<semver::Version>,
}

/// Why a string is not an interface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceNameError {
    /// The `namespace:package/interface` shape is not there.
    #[error("interface name {0:?} is not of the form namespace:package/interface[@version]")]
    Shape(String),
    /// A part contains characters outside lowercase kebab-case identifiers.
    #[error("interface name {0:?} has an invalid identifier {1:?}")]
    Identifier(String, String),
    /// The part after `@` is not a semantic version.
    #[error("interface name {0:?} has an invalid version: {1}")]
    Version(String, String),
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('-').all(|w| {
            !w.is_empty()
                && w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

impl InterfaceName {
    /// `namespace:package/interface`, without the version: the key of the matcher's index.
    pub fn unversioned(&self) -> String {
        format!("{}:{}/{}", self.namespace, self.package, self.interface)
    }

    /// Whether `path` is this name's `namespace:package/interface` (compared in place,
    /// without building the string).
    pub fn is_path(&self, path: &str) -> bool {
        path.len() == self.namespace.len() + self.package.len() + self.interface.len() + 2
            && path
                .strip_prefix(self.namespace.as_str())
                .is_some_and(|rest| {
                    rest.strip_prefix(':')
                        .and_then(|rest| rest.strip_prefix(self.package.as_str()))
                        .and_then(|rest| rest.strip_prefix('/'))
                        .is_some_and(|rest| rest == self.interface)
                })
    }
}

/// An interface name checked as [`InterfaceName`] is, borrowed from its text: for the hot
/// paths that only compare or look up the name and would otherwise allocate its parts.
/// Made only by [`InterfaceRef::parse`], so its parts always agree with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceRef<'a> {
    path: &'a str,
    namespace: &'a str,
    package: &'a str,
    interface: &'a str,
    version: Option<semver::Version>,
}

impl<'a> InterfaceRef<'a> {
    /// Checks `s` as an interface name (the same rules as `InterfaceName`'s `FromStr`).
    pub fn parse(s: &'a str) -> Result<Self, InterfaceNameError> {
        if s.len() > 256 {
            return Err(InterfaceNameError::Shape(s.chars().take(64).collect()));
        }
        let (path, version) = match s.split_once('@') {
            Some((p, v)) => {
                let v = semver::Version::parse(v)
                    .map_err(|e| InterfaceNameError::Version(s.to_string(), e.to_string()))?;
                (p, Some(v))
            }
            None => (s, None),
        };
        let (namespace, rest) = path
            .split_once(':')
            .ok_or_else(|| InterfaceNameError::Shape(s.to_string()))?;
        let (package, interface) = rest
            .split_once('/')
            .ok_or_else(|| InterfaceNameError::Shape(s.to_string()))?;
        for part in [namespace, package, interface] {
            if !valid_ident(part) {
                return Err(InterfaceNameError::Identifier(
                    s.to_string(),
                    part.to_string(),
                ));
            }
        }
        Ok(Self {
            path,
            namespace,
            package,
            interface,
            version,
        })
    }

    /// `namespace:package/interface`: the text before `@`.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The version after `@`, if any.
    pub fn version(&self) -> Option<&semver::Version> {
        self.version.as_ref()
    }
}

impl FromStr for InterfaceName {
    type Err = InterfaceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let r = InterfaceRef::parse(s)?;
        Ok(Self {
            namespace: r.namespace.to_string(),
            package: r.package.to_string(),
            interface: r.interface.to_string(),
            version: r.version,
        })
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.namespace, self.package, self.interface)?;
        if let Some(v) = &self.version {
            write!(f, "@{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let n: InterfaceName = "courier:echo/echo@0.1.0".parse().unwrap();
        assert_eq!(n.namespace, "courier");
        assert_eq!(n.package, "echo");
        assert_eq!(n.interface, "echo");
        assert_eq!(n.version, Some(semver::Version::new(0, 1, 0)));
        assert_eq!(n.to_string(), "courier:echo/echo@0.1.0");
        assert_eq!(n.unversioned(), "courier:echo/echo");
        let n: InterfaceName = "wasi:cli/environment".parse().unwrap();
        assert_eq!(n.version, None);
    }

    #[test]
    fn a_borrowed_name_splits_as_the_owned_one_and_compares_in_place() {
        let r = InterfaceRef::parse("courier:echo/echo@0.1.0").unwrap();
        assert_eq!(r.path(), "courier:echo/echo");
        assert_eq!(
            (r.namespace, r.package, r.interface),
            ("courier", "echo", "echo")
        );
        assert_eq!(r.version(), Some(&semver::Version::new(0, 1, 0)));
        assert_eq!(
            InterfaceRef::parse("wasi:cli/environment")
                .unwrap()
                .version(),
            None
        );
        // `is_path` says what comparing with `unversioned()` says, whatever the text.
        let names = [
            "courier:echo/echo@0.2.0",
            "a:b/c",
            "a-b:c-d/e-f@1.0.0",
            "ab:c/d",
        ];
        let paths = [
            "courier:echo/echo",
            "courier:echo/echoo",
            "courier:ech/oecho",
            "courier:echo:echo",
            "courierx:echo/echo",
            "a:b/c",
            "a:b/c@1.0.0",
            "a:bc/",
            "ab:c/d",
            "a:bc/d",
            "a-b:c-d/e-f",
            "",
        ];
        for name in names {
            let n: InterfaceName = name.parse().unwrap();
            for path in paths {
                assert_eq!(
                    n.is_path(path),
                    n.unversioned() == path,
                    "{name} against {path}"
                );
            }
        }
    }

    #[test]
    fn a_bad_name_is_refused_with_what_is_wrong() {
        assert_eq!(
            InterfaceRef::parse("a:b"),
            Err(InterfaceNameError::Shape("a:b".into()))
        );
        assert_eq!(
            InterfaceRef::parse("a/b"),
            Err(InterfaceNameError::Shape("a/b".into()))
        );
        assert_eq!(
            InterfaceRef::parse("A:b/c"),
            Err(InterfaceNameError::Identifier("A:b/c".into(), "A".into()))
        );
        assert_eq!(
            InterfaceRef::parse("a:b/1c@1.0.0"),
            Err(InterfaceNameError::Identifier(
                "a:b/1c@1.0.0".into(),
                "1c".into()
            ))
        );
        assert!(matches!(
            InterfaceRef::parse("a:b/c@x"),
            Err(InterfaceNameError::Version(n, _)) if n == "a:b/c@x"
        ));
        let long = format!("a:b/{}", "c".repeat(300));
        assert!(matches!(
            InterfaceRef::parse(&long),
            Err(InterfaceNameError::Shape(_))
        ));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "", "echo", "a:b", "a/b", "A:b/c", "a:b/c@x", "a:b/c-", "a:-b/c", "a:b/1c",
        ] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad}");
        }
    }
}
