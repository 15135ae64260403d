//! The engine's records on disk, in the state directory: the ledger (`ledger`: the patches
//! in place, with what their removal needs) and the journal (`journal`: the one install or
//! removal under way, so that the next run can undo what a crash interrupted).
//!
//! Both are text, one entry per patch:
//!
//! ```text
//! patch <id>
//! file <existed 0|1> <sha256 after> <path>
//! dir <path>
//! end
//! ```
//!
//! `file` lines are in the patch's order (their backups are numbered so), `dir` lines name
//! the directories the install created, outermost first. The journal starts with one line,
//! `install` or `remove`. Paths hold no control characters (see [`RelPath`]), so a line
//! ends where the path ends.

use crate::digest::Digest;
use crate::messages::check_id;
use crate::paths::RelPath;

/// A patch in place, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The patch id.
    pub id: String,
    /// The files it wrote, in its order.
    pub files: Vec<AppliedFile>,
    /// The directories it created, outermost first.
    pub dirs: Vec<RelPath>,
}

/// One file a patch wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedFile {
    /// Where.
    pub path: RelPath,
    /// Whether a file was there before (its backup is kept).
    pub existed: bool,
    /// The digest the patch gave it.
    pub after: Digest,
}

/// What the journal says is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Installing a patch.
    Install,
    /// Removing one.
    Remove,
}

/// Why the ledger or journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordFileError {
    /// A line that does not follow the format.
    #[error("{file} line {line}: {problem}")]
    Malformed {
        /// `ledger` or `journal`.
        file: &'static str,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Writes entries in the text format.
pub fn format(operation: Option<Operation>, entries: &[Applied]) -> String {
    let mut out = String::new();
    match operation {
        Some(Operation::Install) => out.push_str("install\n"),
        Some(Operation::Remove) => out.push_str("remove\n"),
        None => {}
    }
    for entry in entries {
        out.push_str(&format!("patch {}\n", entry.id));
        for file in &entry.files {
            let existed = u8::from(file.existed);
            out.push_str(&format!("file {existed} {} {}\n", file.after, file.path));
        }
        for dir in &entry.dirs {
            out.push_str(&format!("dir {dir}\n"));
        }
        out.push_str("end\n");
    }
    out
}

/// Reads the ledger's entries.
pub fn parse_ledger(text: &str) -> Result<Vec<Applied>, RecordFileError> {
    let (operation, entries) = parse("ledger", text, false)?;
    debug_assert!(operation.is_none());
    Ok(entries)
}

/// Reads the journal: the operation and its one entry.
pub fn parse_journal(text: &str) -> Result<(Operation, Applied), RecordFileError> {
    let (operation, mut entries) = parse("journal", text, true)?;
    let bad = |problem: &str| RecordFileError::Malformed {
        file: "journal",
        line: 1,
        problem: problem.into(),
    };
    let operation = operation.ok_or_else(|| bad("no operation"))?;
    match (entries.pop(), entries.is_empty()) {
        (Some(entry), true) => Ok((operation, entry)),
        _ => Err(bad("not exactly one patch")),
    }
}

fn parse(
    file: &'static str,
    text: &str,
    with_operation: bool,
) -> Result<(Option<Operation>, Vec<Applied>), RecordFileError> {
    let mut entries = Vec::new();
    let mut operation = None;
    let mut open: Option<Applied> = None;
    for (n, line) in text.lines().enumerate() {
        let bad = |problem: String| RecordFileError::Malformed {
            file,
            line: n + 1,
            problem,
        };
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match (word, open.as_mut()) {
            ("install" | "remove", None) if with_operation && n == 0 => {
                operation = Some(if word == "install" {
                    Operation::Install
                } else {
                    Operation::Remove
                });
            }
            ("patch", None) => {
                check_id(rest).map_err(|e| bad(e.to_string()))?;
                open = Some(Applied {
                    id: rest.into(),
                    files: Vec::new(),
                    dirs: Vec::new(),
                });
            }
            ("file", Some(entry)) => {
                let mut parts = rest.splitn(3, ' ');
                let (existed, after, path) = match (parts.next(), parts.next(), parts.next()) {
                    (Some(e), Some(a), Some(p)) => (e, a, p),
                    _ => return Err(bad("a file line needs existed, digest and path".into())),
                };
                let existed = match existed {
                    "0" => false,
                    "1" => true,
                    other => return Err(bad(format!("existed is {other:?}, not 0 or 1"))),
                };
                let after = after
                    .parse()
                    .map_err(|e: crate::digest::DigestParseError| bad(e.to_string()))?;
                let path = RelPath::parse(path).map_err(|e| bad(e.to_string()))?;
                entry.files.push(AppliedFile {
                    path,
                    existed,
                    after,
                });
            }
            ("dir", Some(entry)) => {
                let dir = RelPath::parse(rest).map_err(|e| bad(e.to_string()))?;
                entry.dirs.push(dir);
            }
            ("end", Some(_)) => entries.extend(open.take()),
            _ => return Err(bad(format!("unexpected {line:?}"))),
        }
    }
    if open.is_some() {
        return Err(RecordFileError::Malformed {
            file,
            line: text.lines().count(),
            problem: "the last patch has no end line".into(),
        });
    }
    Ok((operation, entries))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_an_error() {
        let entry = Applied {
            id: "app-1.1".into(),
            files: vec![AppliedFile {
                path: RelPath::parse("app/bin/my app").unwrap(),
                existed: true,
                after: Digest::of(b"x"),
            }],
            dirs: vec![RelPath::parse("app/new").unwrap()],
        };
        let text = format(None, std::slice::from_ref(&entry));
        assert_eq!(parse_ledger(&text).unwrap(), std::slice::from_ref(&entry));
        let journal = format(Some(Operation::Remove), std::slice::from_ref(&entry));
        assert_eq!(parse_journal(&journal).unwrap(), (Operation::Remove, entry));
        assert!(
            parse_ledger(&text[..text.len() - 4]).is_err(),
            "no end line"
        );
        assert!(parse_ledger("patch ../x\nend\n").is_err());
        assert!(parse_ledger("file 1 00 a\n").is_err());
        assert!(parse_journal(&text).is_err(), "no operation");
    }
}
