//! Service-name patterns a delegation grants: an exact name (`acme/echo`) or every name
//! under a prefix (`acme/*`), and the subset rule a further delegation must keep.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest pattern (the longest service name, plus `/*`).
pub const MAX_PATTERN_LEN: usize = crate::limits::manifest::NAME_LEN + 2;

/// A set of service names: exactly one name, or every name starting with a prefix that
/// ends in `/` (written `prefix/*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NamePattern(String);

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamePatternError {
    /// Empty, too long, or with control characters.
    #[error("name pattern {0:?} must be 1..={MAX_PATTERN_LEN} printable characters")]
    Shape(String),
    /// A `*` anywhere but as the whole last segment (`prefix/*`).
    #[error("name pattern {0:?}: `*` may only end it, as `prefix/*`")]
    Wildcard(String),
}

impl NamePattern {
    /// Parses and checks a pattern.
    pub fn new(text: &str) -> Result<Self, NamePatternError> {
        let pattern = Self(text.to_string());
        pattern.check()?;
        Ok(pattern)
    }

    /// Checks the shape rules (patterns decoded from bytes are checked with this).
    pub fn check(&self) -> Result<(), NamePatternError> {
        let s = &self.0;
        if s.is_empty() || s.len() > MAX_PATTERN_LEN || s.chars().any(char::is_control) {
            return Err(NamePatternError::Shape(s.clone()));
        }
        let stars = s.matches('*').count();
        let ok = stars == 0 || (stars == 1 && s.ends_with("/*") && s.len() > 2);
        if !ok {
            return Err(NamePatternError::Wildcard(s.clone()));
        }
        Ok(())
    }

    /// The prefix, for a `prefix/*` pattern (with its trailing `/`).
    fn prefix(&self) -> Option<&str> {
        self.0.strip_suffix('*')
    }

    /// Whether the pattern covers the service name `name`.
    pub fn covers(&self, name: &str) -> bool {
        match self.prefix() {
            Some(prefix) => name.len() > prefix.len() && name.starts_with(prefix),
            None => self.0 == name,
        }
    }

    /// Whether every name this pattern covers is covered by `wider`.
    pub fn within(&self, wider: &NamePattern) -> bool {
        match (self.prefix(), wider.prefix()) {
            (_, None) => self.0 == wider.0,
            (None, Some(_)) => wider.covers(&self.0),
            (Some(mine), Some(theirs)) => mine.starts_with(theirs),
        }
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NamePattern {
        NamePattern::new(s).unwrap()
    }

    #[test]
    fn exact_and_prefix_cover() {
        assert!(p("acme/echo").covers("acme/echo"));
        assert!(!p("acme/echo").covers("acme/echo2"));
        assert!(p("acme/*").covers("acme/echo"));
        assert!(p("acme/*").covers("acme/tools/kv"));
        assert!(!p("acme/*").covers("acme/"));
        assert!(!p("acme/*").covers("acmecorp/echo"));
    }

    #[test]
    fn subsets() {
        assert!(p("acme/echo").within(&p("acme/*")));
        assert!(p("acme/tools/*").within(&p("acme/*")));
        assert!(p("acme/*").within(&p("acme/*")));
        assert!(!p("acme/*").within(&p("acme/echo")));
        assert!(!p("acme/*").within(&p("acme/tools/*")));
        assert!(!p("other/x").within(&p("acme/*")));
    }

    #[test]
    fn bad_patterns_refused() {
        for bad in ["", "*", "/*", "acme*", "ac*me/x", "acme/*/*", "a\nb"] {
            assert!(NamePattern::new(bad).is_err(), "{bad:?}");
        }
    }
}
