//! Debian package data for courier: dpkg's version order ([`version`]), deb822 control-file
//! paragraphs ([`deb822`]), the installed inventory from dpkg's status file ([`status`]),
//! apt's `Packages` indexes as apt keeps them ([`index`]), which lists apt reads
//! ([`sources`]), the upgrades apt would choose ([`candidates`]), and apt's own list of them
//! read back ([`apt_list`]).
//!
//! No network and no package manager is needed: everything is read from the files dpkg and
//! apt keep, so a provider can answer for a client from the client's inventory alone.

pub mod apt_list;
pub mod candidates;
pub mod deb822;
pub mod index;
mod lz4_frames;
pub mod sources;
pub mod status;
pub mod version;

pub use candidates::{Catalog, Upgrade};
pub use status::{Installed, Inventory};
pub use version::{Version, VersionError};

/// The longest package name accepted (Debian sets no limit; names are short).
pub const MAX_PACKAGE_NAME: usize = 128;

/// Debian policy 5.6.1: `[a-z0-9][a-z0-9+.-]+`, at most [`MAX_PACKAGE_NAME`] bytes. No
/// option, path, version or shell syntax can pass.
pub fn is_package_name(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=MAX_PACKAGE_NAME).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(c))
}
