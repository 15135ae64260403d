//! Self-installing prerequisites as courier's example proxies speak them (the WIT side is
//! `courier:proxy/prerequisites` and `courier:proxy/installer`):
//!
//! - [`messages`]: what a proxy asks its provider (`needs`: what the service requires;
//!   `plan`: what an installer puts in place), encoded with postcard.
//! - [`predicate`]: what is missing, read from the managed directory's install markers and
//!   the `packages` host fact.
//! - [`install`](mod@install): an installer's staged install (written beside, swapped in, the previous
//!   version kept until the swap succeeded) and its `remove`.
//!
//! One directory per installed interface, `<managed>/<slug>/`, and one marker,
//! `<managed>/.installed/<slug>`, holding the version: the slug of `acme:fonts/glyphs` is
//! `acme.fonts.glyphs`.

pub mod install;
pub mod messages;
pub mod predicate;

pub use install::{InstallError, install, remove, signed_plan};
pub use messages::{File, Need, Needs, Plan, decode, encode};
pub use predicate::{missing, missing_from_answer};

use std::path::PathBuf;

/// Where a proxy finds the managed directory when the `managed-dir` host fact does not say.
pub const DEFAULT_MANAGED_DIR: &str = "/managed";

/// The managed directory a proxy works on: the `managed-dir` host fact when the policy
/// shows one (and it is not empty), else [`DEFAULT_MANAGED_DIR`].
pub fn managed_root(fact: Option<String>) -> PathBuf {
    PathBuf::from(
        fact.filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| DEFAULT_MANAGED_DIR.to_owned()),
    )
}

/// The host fact the client gives an installer's run: the interface its signed manifest
/// says it provides.
pub const PROVIDES_FACT: &str = "courier-provides";
/// The host fact the client gives an installer's run: its signed version.
pub const VERSION_FACT: &str = "courier-version";

/// The directory of install markers, under the managed directory.
pub const MARKERS: &str = ".installed";

/// The provider methods.
pub mod methods {
    /// `()` → [`crate::Needs`]: what the service needs on the client.
    pub const NEEDS: &str = "needs";
    /// `()` → [`crate::Plan`]: what the installer puts in place.
    pub const PLAN: &str = "plan";
}

/// The file-name form of an interface: `acme:fonts/glyphs` → `acme.fonts.glyphs`. WIT
/// names have no `.`, so two interfaces never share a slug; `None` for anything that is
/// not `namespace:package/interface` of WIT identifier characters.
pub fn slug(interface: &str) -> Option<String> {
    let (namespace, rest) = interface.split_once(':')?;
    let (package, name) = rest.split_once('/')?;
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    (ok(namespace) && ok(package) && ok(name)).then(|| format!("{namespace}.{package}.{name}"))
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_MANAGED_DIR, managed_root, slug};
    use std::path::PathBuf;

    #[test]
    fn the_managed_root_falls_back_to_the_default() {
        assert_eq!(managed_root(Some("/srv/m".into())), PathBuf::from("/srv/m"));
        assert_eq!(managed_root(None), PathBuf::from(DEFAULT_MANAGED_DIR));
        assert_eq!(
            managed_root(Some(String::new())),
            PathBuf::from(DEFAULT_MANAGED_DIR)
        );
    }

    #[test]
    fn slugs_are_file_names_and_refuse_paths() {
        assert_eq!(
            slug("acme:fonts/glyphs").as_deref(),
            Some("acme.fonts.glyphs")
        );
        assert_eq!(slug("acme:fonts/glyphs@1.0.0"), None);
        assert_eq!(slug("acme:../x"), None);
        assert_eq!(slug("acme:fonts/../../etc"), None);
        assert_eq!(slug("acme/fonts"), None);
        assert_eq!(slug(":a/b"), None);
    }
}
