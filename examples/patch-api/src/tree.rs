//! A directory tree described byte for byte: every entry's relative path, kind, content
//! digest and (where the platform has them) permission bits, sorted. Two trees with the same
//! [`digest`] hold the same files with the same bytes.

use std::io;
use std::path::Path;

use crate::digest::{Digest, Hasher};

/// One line per entry under `root`, sorted by path: `d path mode`, `f path mode sha256`
/// or `l path -> target`.
pub fn listing(root: &Path) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    walk(root, "", &mut lines)?;
    lines.sort();
    Ok(lines)
}

/// The digest of [`listing`].
pub fn digest(root: &Path) -> io::Result<Digest> {
    let mut hasher = Hasher::new();
    for line in listing(root)? {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hasher.finish())
}

fn walk(dir: &Path, prefix: &str, lines: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let meta = entry.path().symlink_metadata()?;
        let mode = mode_of(&meta);
        if meta.is_dir() {
            lines.push(format!("d {rel} {mode:o}"));
            walk(&entry.path(), &format!("{rel}/"), lines)?;
        } else if meta.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            lines.push(format!("l {rel} -> {}", target.display()));
        } else {
            let sha = Digest::of_reader(std::fs::File::open(entry.path())?)?;
            lines.push(format!("f {rel} {mode:o} {sha}"));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}
