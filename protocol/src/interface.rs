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
}

impl FromStr for InterfaceName {
    type Err = InterfaceNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
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
            namespace: namespace.to_string(),
            package: package.to_string(),
            interface: interface.to_string(),
            version,
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
    fn rejects_bad_names() {
        for bad in [
            "", "echo", "a:b", "a/b", "A:b/c", "a:b/c@x", "a:b/c-", "a:-b/c", "a:b/1c",
        ] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad}");
        }
    }
}
