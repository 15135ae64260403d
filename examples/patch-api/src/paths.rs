//! Paths inside the managed directory: [`RelPath`], a relative path that cannot leave the
//! directory nor touch the engine's own state, checked before any file is touched.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::STATE_DIR;

/// The longest path accepted, in bytes.
pub const MAX_PATH: usize = 1024;

/// A relative path inside the managed directory: `/`-separated components, none empty,
/// `.` or `..`, no control characters, not under [`STATE_DIR`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

/// Why a path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, or longer than [`MAX_PATH`].
    #[error("path {0:?} is empty or longer than 1024 bytes")]
    Length(String),
    /// Absolute, or with an empty, `.` or `..` component.
    #[error("path {0:?} is not a plain relative path")]
    NotRelative(String),
    /// Holds a control character (a tab or a newline, say).
    #[error("path {0:?} holds a control character")]
    Control(String),
    /// Lies in the engine's own state directory.
    #[error("path {0:?} lies in the engine's state directory")]
    State(String),
}

impl RelPath {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<RelPath, PathError> {
        if text.is_empty() || text.len() > MAX_PATH {
            return Err(PathError::Length(text.into()));
        }
        if text.chars().any(char::is_control) {
            return Err(PathError::Control(text.into()));
        }
        let mut components = text.split('/');
        if components
            .clone()
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(PathError::NotRelative(text.into()));
        }
        if components.next() == Some(STATE_DIR) {
            return Err(PathError::State(text.into()));
        }
        Ok(RelPath(text.into()))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path under `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }

    /// The parent directories, outermost first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = RelPath> + '_ {
        self.0
            .match_indices('/')
            .map(|(i, _)| RelPath(self.0[..i].to_owned()))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_plain_relative_paths_outside_the_state_are_accepted() {
        assert_eq!(
            RelPath::parse("app/bin/hello").unwrap().as_str(),
            "app/bin/hello"
        );
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "../x",
            "a/..",
            "a/",
            "a\tb",
            "a\nb",
            ".courier-patch/ledger",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RelPath::parse(&"a".repeat(MAX_PATH + 1)).is_err());
        let p = RelPath::parse("a/b/c").unwrap();
        let up: Vec<_> = p.ancestors().map(|a| a.to_string()).collect();
        assert_eq!(up, ["a", "a/b"]);
    }
}
