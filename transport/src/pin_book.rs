//! Where a client or a vendor keeps the moves of a registry's pin that it saw proved by a
//! rotation the pinned key signed, so that the pin it was given keeps reaching the
//! registry after the overlap. A text file of `<from> <to> <overlap end>` lines, written
//! atomically and durably; or memory only.

use crate::PinMove;
use courier_protocol::SpkiPin;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The moves of registry pins seen so far. Clones share one book.
#[derive(Debug, Clone, Default)]
pub struct PinBook {
    inner: Arc<Mutex<Book>>,
}

/// Why a pin book could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PinBookError {
    /// The file could not be read or written.
    #[error("pin book {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A line does not parse.
    #[error("pin book {path} line {line}: {reason} (fix or remove the file)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Default)]
struct Book {
    path: Option<PathBuf>,
    /// From each pin to the pin it moved to, and the end of that overlap.
    moves: BTreeMap<SpkiPin, (SpkiPin, u64)>,
}

impl PinBook {
    /// A book kept in memory only: moves last as long as the process.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The book kept in `path` (empty if the file does not exist yet).
    pub fn open(path: &Path) -> Result<Self, PinBookError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(PinBookError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mut moves = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let corrupt = |reason: &str| PinBookError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let mut words = line.split_whitespace();
            let (Some(from), Some(to), Some(ends), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err(corrupt("expected <from pin> <to pin> <overlap end>"));
            };
            let from: SpkiPin = from.parse().map_err(|_| corrupt("bad from pin"))?;
            let to: SpkiPin = to.parse().map_err(|_| corrupt("bad to pin"))?;
            let ends: u64 = ends.parse().map_err(|_| corrupt("bad overlap end"))?;
            moves.insert(from, (to, ends));
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(Book {
                path: Some(path.to_path_buf()),
                moves,
            })),
        })
    }

    /// The pin `pin` has moved to, through every move recorded (itself if none).
    pub fn follow(&self, pin: SpkiPin) -> SpkiPin {
        let book = self.lock();
        let mut current = pin;
        // Each move is followed at most once, so a loop in a hand-edited file ends.
        for _ in 0..book.moves.len() {
            match book.moves.get(&current) {
                Some((to, _)) if *to != current => current = *to,
                _ => break,
            }
        }
        current
    }

    /// Records `moved` (and writes the file, if the book has one).
    pub fn record(&self, moved: &PinMove) -> Result<(), PinBookError> {
        let mut book = self.lock();
        if book.moves.get(&moved.from) == Some(&(moved.to, moved.overlap_ends)) {
            return Ok(());
        }
        book.moves
            .insert(moved.from, (moved.to, moved.overlap_ends));
        let Some(path) = book.path.clone() else {
            return Ok(());
        };
        let mut text = String::from(
            "# courier: registry pins moved by rotations the pinned key signed\n\
             # <from> <to> <overlap end, unix seconds>\n",
        );
        for (from, (to, ends)) in &book.moves {
            text.push_str(&format!("{from} {to} {ends}\n"));
        }
        write_file(&path, text.as_bytes()).map_err(|source| PinBookError::Io { path, source })
    }

    /// The file the book is kept in, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.lock().path.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes `bytes` to `path` durably, making its directory if needed.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    courier_durable::write_atomic(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(n: u8) -> SpkiPin {
        SpkiPin::of_spki(&[n])
    }

    #[test]
    fn moves_are_followed_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pins");
        let book = PinBook::open(&path).unwrap();
        assert_eq!(book.follow(pin(1)), pin(1));
        for (from, to) in [(1, 2), (2, 3)] {
            let m = PinMove {
                from: pin(from),
                to: pin(to),
                overlap_ends: 7,
            };
            book.record(&m).unwrap();
        }
        let again = PinBook::open(&path).unwrap();
        assert_eq!(again.follow(pin(1)), pin(3));
        assert_eq!(again.follow(pin(9)), pin(9));
        std::fs::write(&path, "sha256:00 x 1\n").unwrap();
        assert!(matches!(
            PinBook::open(&path),
            Err(PinBookError::Corrupt { line: 1, .. })
        ));
    }
}
