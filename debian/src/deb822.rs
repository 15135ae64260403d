//! A streaming reader of deb822 control-file syntax (dpkg's status file, apt's `Packages`
//! indexes, `.sources` files): paragraphs of `Name: value` fields separated by blank lines,
//! values continued on lines that start with a space or a tab, `#` comment lines dropped.
//!
//! The reader holds one buffer (the input is read in large chunks and paragraphs are
//! borrowed from it) and records where each field is, so reading a paragraph allocates
//! nothing. A malformed paragraph (a line without a colon, a continuation line before any
//! field, a bad or repeated field name, a paragraph past [`MAX_PARAGRAPH`] bytes) is skipped
//! with a `tracing` warning naming the source and line, and counted in
//! [`Reader::skipped`]; reading goes on with the next paragraph.

use std::borrow::Cow;
use std::io::{self, Read};

/// The largest paragraph kept, in bytes; a longer one is skipped as malformed.
pub const MAX_PARAGRAPH: usize = 4 << 20;

/// Reads deb822 paragraphs one after another from `R`.
pub struct Reader<R> {
    source: String,
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    line: u64,
    skipped: u64,
    fields: Vec<Span>,
}

/// One paragraph, borrowed from the reader until the next call.
#[derive(Clone, Copy)]
pub struct Paragraph<'a> {
    text: &'a [u8],
    fields: &'a [Span],
    line: u64,
}

/// One field of a paragraph.
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    /// The field name as written (names compare without regard to ASCII case).
    pub name: &'a str,
    raw: &'a [u8],
}

/// Why reading paragraphs stopped.
#[derive(Debug, thiserror::Error)]
pub enum Deb822Error {
    /// The underlying reader (a file, a decompressor) failed.
    #[error("{source_name}: read failed near line {line}: {error}")]
    Read {
        /// What was being read, as given to [`Reader::new`].
        source_name: String,
        /// The line the current paragraph started on.
        line: u64,
        /// The reader's error.
        #[source]
        error: io::Error,
    },
}

impl<R: Read> Reader<R> {
    /// A reader of `inner`; `source` names it in warnings and errors (a file path).
    pub fn new(source: impl Into<String>, inner: R) -> Self {
        Reader {
            source: source.into(),
            inner,
            buf: vec![0; 256 << 10],
            start: 0,
            end: 0,
            eof: false,
            line: 1,
            skipped: 0,
            fields: Vec::with_capacity(32),
        }
    }

    /// How many malformed paragraphs were skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next well-formed paragraph, `None` at the end of the input.
    pub fn next_paragraph(&mut self) -> Result<Option<Paragraph<'_>>, Deb822Error> {
        loop {
            self.skip_blank_lines()?;
            if self.start == self.end && self.eof {
                return Ok(None);
            }
            match self.scan()? {
                Scan::Paragraph(len) => {
                    let at = self.start;
                    let line = self.line;
                    self.line += count_lines(&self.buf[at..at + len]);
                    self.start += len;
                    return Ok(Some(Paragraph {
                        text: &self.buf[at..at + len],
                        fields: &self.fields,
                        line,
                    }));
                }
                Scan::Malformed(reason, offending) => {
                    tracing::warn!(
                        source = %self.source,
                        line = self.line + offending,
                        "skipping a malformed paragraph: {reason}"
                    );
                    self.skipped += 1;
                    self.discard_paragraph()?;
                }
            }
        }
    }

    /// Drops blank lines and comment lines before a paragraph.
    fn skip_blank_lines(&mut self) -> Result<(), Deb822Error> {
        while let Line::Complete(len) = self.line_at(0)? {
            let line = &self.buf[self.start..self.start + len];
            if !is_blank(line) && !line.starts_with(b"#") {
                break;
            }
            self.start += len;
            self.line += 1;
        }
        Ok(())
    }

    /// Finds the paragraph at `start` and records its fields, reading more input as
    /// needed; the paragraph ends before a blank line or at the end of the input.
    fn scan(&mut self) -> Result<Scan, Deb822Error> {
        self.fields.clear();
        let mut rel = 0;
        let mut lines = 0u64;
        loop {
            let len = match self.line_at(rel)? {
                Line::Complete(len) => len,
                Line::End => break,
                Line::TooLong => return Ok(Scan::Malformed("paragraph too long", lines)),
            };
            let text = &self.buf[self.start..self.end];
            let line = &text[rel..rel + len];
            if is_blank(line) {
                break;
            }
            let offset = to_u32(rel);
            let end = offset + to_u32(trim_newline(line).len());
            match line[0] {
                b'#' => {}
                b' ' | b'\t' => match self.fields.last_mut() {
                    Some(field) => field.end = end,
                    None => {
                        return Ok(Scan::Malformed("continuation line before any field", lines));
                    }
                },
                _ => {
                    let Some(colon) = memchr::memchr(b':', line) else {
                        return Ok(Scan::Malformed("line without a colon", lines));
                    };
                    let name = &line[..colon];
                    if !name.iter().all(|b| b.is_ascii_graphic()) {
                        return Ok(Scan::Malformed("invalid field name", lines));
                    }
                    let repeated = self.fields.iter().any(|f| {
                        f.colon as usize == colon && f.name(text).eq_ignore_ascii_case(name)
                    });
                    if repeated {
                        return Ok(Scan::Malformed("repeated field", lines));
                    }
                    self.fields.push(Span {
                        start: offset,
                        colon: to_u32(colon),
                        end,
                    });
                }
            }
            rel += len;
            lines += 1;
            if rel > MAX_PARAGRAPH {
                return Ok(Scan::Malformed("paragraph too long", lines));
            }
        }
        Ok(Scan::Paragraph(rel))
    }

    /// Drops the current paragraph up to its blank line or the end of the input, holding
    /// at most a short piece of an overlong line.
    fn discard_paragraph(&mut self) -> Result<(), Deb822Error> {
        let mut blank_so_far = true;
        loop {
            match memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                Some(nl) => {
                    let blank = blank_so_far && is_blank(&self.buf[self.start..=self.start + nl]);
                    self.start += nl + 1;
                    self.line += 1;
                    blank_so_far = true;
                    if blank {
                        return Ok(());
                    }
                }
                None if self.eof => {
                    self.start = self.end;
                    return Ok(());
                }
                None => {
                    blank_so_far &= is_blank(&self.buf[self.start..self.end]);
                    self.start = self.end;
                    self.compact();
                    self.fill()?;
                }
            }
        }
    }

    /// The line `rel` bytes past `start`, reading (and moving the unread bytes to the front
    /// of the buffer) as needed.
    fn line_at(&mut self, rel: usize) -> Result<Line, Deb822Error> {
        loop {
            let pos = self.start + rel;
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[pos..self.end]) {
                return Ok(Line::Complete(nl + 1));
            }
            if self.eof {
                return Ok(if pos < self.end {
                    Line::Complete(self.end - pos)
                } else {
                    Line::End
                });
            }
            if self.end - self.start > MAX_PARAGRAPH {
                return Ok(Line::TooLong);
            }
            self.compact();
            self.fill()?;
        }
    }

    /// Moves the unread bytes to the front of the buffer.
    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// Reads more input after `end`, growing the buffer when it is full.
    fn fill(&mut self) -> Result<(), Deb822Error> {
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(Deb822Error::Read {
                        source_name: self.source.clone(),
                        line: self.line,
                        error,
                    });
                }
            }
        }
    }
}

impl<'a> Paragraph<'a> {
    /// The fields in the order written.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + 'a {
        let text = self.text;
        self.fields.iter().map(move |span| span.field(text))
    }

    /// The field called `name` (ASCII case ignored).
    pub fn get(&self, name: &str) -> Option<Field<'a>> {
        let [field] = self.select([name]);
        field
    }

    /// The fields called `names` (ASCII case ignored), in one pass over the paragraph
    /// that looks only at the names' bytes.
    pub fn select<const N: usize>(&self, names: [&str; N]) -> [Option<Field<'a>>; N] {
        let mut found = [None; N];
        for span in self.fields {
            let name = span.name(self.text);
            let wanted = names
                .iter()
                .position(|n| n.len() == name.len() && n.as_bytes().eq_ignore_ascii_case(name));
            if let Some(i) = wanted {
                found[i] = Some(span.field(self.text));
            }
        }
        found
    }

    /// The value of the field called `name`, as [`Field::value`].
    pub fn value(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).map(|f| f.value())
    }

    /// The line of the input the paragraph starts on, counting from 1.
    pub fn line(&self) -> u64 {
        self.line
    }
}

impl<'a> Field<'a> {
    /// The first line of the value, without surrounding whitespace (the whole value of a
    /// simple field), as bytes.
    pub fn first_line(&self) -> &'a [u8] {
        let first = match memchr::memchr(b'\n', self.raw) {
            Some(nl) => &self.raw[..nl],
            None => self.raw,
        };
        first.trim_ascii()
    }

    /// The value: the first line trimmed, then each continuation line after a newline with
    /// its leading whitespace and without trailing whitespace; comment lines dropped.
    /// Invalid UTF-8 is replaced.
    pub fn value(&self) -> Cow<'a, str> {
        let first = self.first_line();
        let Some(nl) = memchr::memchr(b'\n', self.raw) else {
            return String::from_utf8_lossy(first);
        };
        let mut value = String::from_utf8_lossy(first).into_owned();
        for line in self.raw[nl + 1..].split(|&b| b == b'\n') {
            if line.starts_with(b"#") {
                continue;
            }
            value.push('\n');
            value.push_str(&String::from_utf8_lossy(line.trim_ascii_end()));
        }
        Cow::Owned(value)
    }
}

/// Where a field is in its paragraph: the name from `start` to `start + colon`, the value
/// after the colon up to `end` (the end of its last line, newline excluded).
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    colon: u32,
    end: u32,
}

impl Span {
    fn name<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.start as usize..(self.start + self.colon) as usize]
    }

    fn field<'a>(&self, text: &'a [u8]) -> Field<'a> {
        // Field names were checked to be printable ASCII.
        let name = std::str::from_utf8(self.name(text)).unwrap_or_default();
        Field {
            name,
            raw: &text[(self.start + self.colon + 1) as usize..self.end as usize],
        }
    }
}

/// What [`Reader::line_at`] found.
enum Line {
    /// A line of this many bytes, its newline included (the last line may lack one).
    Complete(usize),
    /// The end of the input.
    End,
    /// No line end within [`MAX_PARAGRAPH`] bytes of the paragraph's start.
    TooLong,
}

/// What [`Reader::scan`] found.
enum Scan {
    /// A well-formed paragraph of this many bytes.
    Paragraph(usize),
    /// A malformed one, why, and at which line of the paragraph.
    Malformed(&'static str, u64),
}

/// A line of nothing but spaces and tabs (and its line end).
fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn count_lines(text: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', text).count() as u64
}

/// Offsets inside a paragraph, which [`MAX_PARAGRAPH`] keeps far below `u32::MAX`.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
