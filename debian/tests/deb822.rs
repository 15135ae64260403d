//! deb822 paragraphs from real-format fixtures, from input read a byte at a time, from
//! oversized paragraphs, and from this machine's own dpkg status file.

use std::io::Read;
use std::path::Path;

use courier_debian::deb822::{MAX_PARAGRAPH, Reader};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A paragraph as its first line and its fields, (name, value).
type Read822 = (u64, Vec<(String, String)>);

/// Every paragraph, and the number skipped.
fn read_all(reader: impl Read) -> (Vec<Read822>, u64) {
    let mut reader = Reader::new("test", reader);
    let mut paragraphs = Vec::new();
    while let Some(p) = reader.next_paragraph().expect("readable") {
        let fields = p
            .fields()
            .map(|f| (f.name.to_owned(), f.value().into_owned()));
        paragraphs.push((p.line(), fields.collect()));
    }
    (paragraphs, reader.skipped())
}

fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Hands out its bytes one at a time, so every line crosses a read boundary.
struct ByteAtATime<'a>(&'a [u8]);

impl Read for ByteAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn reads_fields_continuations_and_skips_malformed_paragraphs() {
    let text = fixture("malformed.deb822");
    let expected = vec![
        (
            4,
            pairs(&[
                ("Source", "example"),
                ("Section", "admin"),
                ("Maintainer", "Someone <someone@example.org>"),
            ]),
        ),
        (
            9,
            pairs(&[
                ("Package", "first"),
                ("Architecture", "any"),
                ("Description", "short\n second line\n .\n  indented"),
            ]),
        ),
        (19, pairs(&[("Package", "second"), ("Version", "1.0")])),
        (29, pairs(&[("Package", "last"), ("Version", "2.0")])),
    ];
    // Skipped: a continuation line before any field, a repeated field (names compare
    // without case), a field name with a space.
    assert_eq!(read_all(&text[..]), (expected.clone(), 3));
    assert_eq!(read_all(ByteAtATime(&text)), (expected, 3));
}

#[test]
fn finds_fields_by_name_without_case() {
    let text = fixture("status");
    let mut reader = Reader::new("status", &text[..]);
    let p = reader
        .next_paragraph()
        .expect("readable")
        .expect("a paragraph");
    assert_eq!(p.value("package").as_deref(), Some("adduser"));
    assert_eq!(
        p.get("VERSION").map(|f| f.first_line()),
        Some(&b"3.134"[..])
    );
    assert_eq!(
        p.value("Conffiles").as_deref(),
        Some(
            "\n /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18\n /etc/deluser.conf 11a06baf8245fd8d690b99024d228c1f"
        )
    );
    assert!(p.get("Source").is_none());
}

#[test]
fn keeps_large_paragraphs_and_skips_oversized_ones() {
    let long_value = "x".repeat(600 << 10);
    let oversized = " y\n".repeat(MAX_PARAGRAPH / 3 + 10);
    let text = format!(
        "Package: big\nDescription: {long_value}\n\nPackage: huge\nDescription: y\n{oversized}\nPackage: after\n"
    );
    let (paragraphs, skipped) = read_all(text.as_bytes());
    let names: Vec<_> = paragraphs.iter().map(|(_, f)| f[0].1.clone()).collect();
    assert_eq!(names, ["big", "after"]);
    assert_eq!(paragraphs[0].1[1].1.len(), long_value.len());
    assert_eq!(skipped, 1);
    let line_after = 5 + oversized.lines().count() as u64 + 2;
    assert_eq!(paragraphs[1].0, line_after);
}

#[test]
fn a_line_without_end_is_one_malformed_paragraph() {
    let text = "z".repeat(MAX_PARAGRAPH + 100);
    let (paragraphs, skipped) = read_all(format!("{text}\n\nPackage: next\n").as_bytes());
    assert_eq!((paragraphs.len(), skipped), (1, 1));
    assert_eq!(read_all(&b""[..]), (vec![], 0));
    assert_eq!(read_all(&b"\n \n# only a comment\n"[..]), (vec![], 0));
}

#[test]
fn reads_this_machines_status_file() {
    let path = Path::new("/var/lib/dpkg/status");
    let Ok(file) = std::fs::File::open(path) else {
        eprintln!("no {} on this machine: nothing to check", path.display());
        return;
    };
    let text = std::fs::read_to_string(path).expect("readable status file");
    let expected = text.lines().filter(|l| l.starts_with("Package:")).count();
    let (paragraphs, skipped) = read_all(file);
    assert_eq!((paragraphs.len(), skipped), (expected, 0));
    assert!(paragraphs.iter().all(|(_, f)| f[0].0 == "Package"));
}
