//! apt's `Packages` indexes as apt keeps them in `/var/lib/apt/lists/`: plain, or
//! compressed with gzip, xz or LZ4 (the frame format; apt's `.lz4` lists on Debian
//! bookworm), the format told by the file's first bytes, not its name.
//!
//! Only `Package`, `Version`, `Architecture` and `Source` are looked at, and entries are
//! handed out borrowed from the reader's buffer, so a reader of the 64k-package bookworm
//! index holds one buffer and the decompressor's state, never the whole text. A paragraph
//! without these fields, or with an invalid version, is skipped with a warning and counted.
//! A file cut short or corrupt is an [`IndexError`] naming the file.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::deb822::{self, Deb822Error};
use crate::lz4_frames::CheckedFrames;

/// How an index file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not at all.
    Plain,
    /// gzip (`.gz`).
    Gzip,
    /// xz (`.xz`).
    Xz,
    /// The LZ4 frame format (`.lz4`).
    Lz4,
}

/// One package of an index, borrowed from the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageRef<'a> {
    /// `Package`.
    pub name: &'a str,
    /// `Version`, already checked to be a valid dpkg version.
    pub version: &'a str,
    /// `Architecture`.
    pub arch: &'a str,
    /// The source package's name from `Source` (its version in parentheses dropped);
    /// `None` when it is the package's own name.
    pub source: Option<&'a str>,
}

/// What reading one index found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStats {
    /// The file.
    pub path: PathBuf,
    /// Its compression.
    pub compression: Compression,
    /// Packages handed out.
    pub packages: usize,
    /// Paragraphs skipped as malformed or incomplete.
    pub skipped: u64,
}

/// Why an index could not be read. Every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file could not be opened or its first bytes read.
    #[error("{path}: cannot open: {error}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
    /// Compressed in a format this crate does not read.
    #[error("{path}: unsupported compression ({format})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The format its first bytes show.
        format: &'static str,
    },
    /// The data ended early or could not be decompressed; nothing of it is used.
    #[error("{path}: corrupt or truncated {compression} data near line {line}: {error}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its compression.
        compression: Compression,
        /// The line of the decompressed text being read.
        line: u64,
        /// The decompressor's or the file system's error.
        #[source]
        error: io::Error,
    },
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Plain => "plain",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
        })
    }
}

/// The largest dictionary an xz index may ask for, in KiB (`xz -9` uses 64 MiB).
const XZ_MEMORY_LIMIT_KIB: u32 = 256 << 10;

/// Opens an index and returns its decompressed text as a reader.
pub fn open(path: &Path) -> Result<(Compression, Box<dyn Read + Send>), IndexError> {
    let open_error = |error| IndexError::Open {
        path: path.to_owned(),
        error,
    };
    let mut file = File::open(path).map_err(open_error)?;
    let mut magic = [0u8; 6];
    let mut seen = 0;
    while seen < magic.len() {
        match file.read(&mut magic[seen..]) {
            Ok(0) => break,
            Ok(n) => seen += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_error(e)),
        }
    }
    let compression = match &magic[..seen] {
        [0x1F, 0x8B, ..] => Compression::Gzip,
        [0xFD, b'7', b'z', b'X', b'Z', 0x00] => Compression::Xz,
        [0x04, 0x22, 0x4D, 0x18, ..] => Compression::Lz4,
        [0x28, 0xB5, 0x2F, 0xFD, ..] => return Err(unsupported(path, "zstd")),
        [b'B', b'Z', b'h', ..] => return Err(unsupported(path, "bzip2")),
        [0x5D, 0x00, 0x00, ..] => return Err(unsupported(path, "lzma")),
        _ => Compression::Plain,
    };
    let input = io::Cursor::new(magic).take(seen as u64).chain(file);
    let reader: Box<dyn Read + Send> = match compression {
        Compression::Plain => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(input))),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            BufReader::new(input),
            true,
            XZ_MEMORY_LIMIT_KIB,
        )),
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(CheckedFrames::new(
            BufReader::with_capacity(256 << 10, input),
        ))),
    };
    Ok((compression, reader))
}

/// Reads the index at `path`, handing each package to `on_package`.
pub fn read_packages(
    path: &Path,
    mut on_package: impl FnMut(PackageRef<'_>),
) -> Result<IndexStats, IndexError> {
    let (compression, input) = open(path)?;
    let shown = path.display().to_string();
    let mut reader = deb822::Reader::new(shown.as_str(), input);
    let mut stats = IndexStats {
        path: path.to_owned(),
        compression,
        packages: 0,
        skipped: 0,
    };
    loop {
        let paragraph = match reader.next_paragraph() {
            Ok(Some(paragraph)) => paragraph,
            Ok(None) => break,
            Err(Deb822Error::Read { line, error, .. }) => {
                return Err(IndexError::Corrupt {
                    path: path.to_owned(),
                    compression,
                    line,
                    error,
                });
            }
        };
        let fields = paragraph
            .select(["Package", "Version", "Architecture", "Source"])
            .map(|field| field.map(|f| f.first_line()));
        match package(fields) {
            Ok(package) => {
                stats.packages += 1;
                on_package(package);
            }
            Err(reason) => {
                tracing::warn!(source = %shown, line = paragraph.line(), "skipping a package: {reason}");
                stats.skipped += 1;
            }
        }
    }
    stats.skipped += reader.skipped();
    Ok(stats)
}

fn unsupported(path: &Path, format: &'static str) -> IndexError {
    IndexError::Unsupported {
        path: path.to_owned(),
        format,
    }
}

/// A package from its `Package`, `Version`, `Architecture` and `Source` values.
fn package(fields: [Option<&[u8]>; 4]) -> Result<PackageRef<'_>, &'static str> {
    let name = required(fields[0], "no Package field")?;
    let version = required(fields[1], "no Version field")?;
    let arch = required(fields[2], "no Architecture field")?;
    crate::version::validate(version).map_err(|_| "an invalid Version")?;
    let source = match fields[3] {
        None => None,
        Some(value) => {
            let value = std::str::from_utf8(value).map_err(|_| "a field that is not UTF-8")?;
            value.split(' ').next().filter(|name| !name.is_empty())
        }
    };
    Ok(PackageRef {
        name,
        version,
        arch,
        source,
    })
}

/// A field's value as text, an error when it is absent or empty.
fn required<'a>(value: Option<&'a [u8]>, missing: &'static str) -> Result<&'a str, &'static str> {
    let value = value.filter(|v| !v.is_empty()).ok_or(missing)?;
    std::str::from_utf8(value).map_err(|_| "a field that is not UTF-8")
}
