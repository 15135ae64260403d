//! dpkg version numbers, `[epoch:]upstream[-revision]`, parsed and ordered exactly as dpkg
//! parses and orders them (`lib/dpkg/parsehelp.c` and `lib/dpkg/version.c`).
//!
//! Order: the epoch numerically, then the upstream part, then the revision, the last two
//! with dpkg's `verrevcmp`: alternating runs of non-digits, compared character by character
//! with `~` before everything (even the end of the string), then the end, then letters, then
//! every other character; and runs of digits, compared as numbers. A missing revision equals
//! the revision `0`, so `1.0` and `1.0-0` are equal versions, as they are for dpkg.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A dpkg version. Equality is dpkg's: `1.0`, `0:1.0` and `1.0-0` are all equal.
#[derive(Clone)]
pub struct Version {
    /// The text as written (trimmed), shown by `Display`.
    text: Box<str>,
    /// The epoch, 0 when absent.
    epoch: u32,
    /// Byte offset where the upstream part starts (after `epoch:`).
    upstream_start: u32,
    /// Byte offset where the upstream part ends (the last `-`, or the end).
    upstream_end: u32,
}

/// Why a text is not a dpkg version. The messages are dpkg's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Nothing but whitespace.
    #[error("version string is empty")]
    Empty,
    /// Whitespace inside the version.
    #[error("version string has embedded spaces")]
    EmbeddedSpaces,
    /// `:1.0`.
    #[error("epoch in version is empty")]
    EmptyEpoch,
    /// `a:1.0`, or a sign before the epoch's digits.
    #[error("epoch in version is not number")]
    EpochNotNumber,
    /// An epoch past `i32::MAX`, dpkg's limit.
    #[error("epoch in version is too big")]
    EpochTooBig,
    /// `1:`.
    #[error("nothing after colon in version number")]
    NothingAfterColon,
    /// `-1` or `1:-1`.
    #[error("version number is empty")]
    EmptyUpstream,
    /// `1.0-`.
    #[error("revision number is empty")]
    EmptyRevision,
    /// `a1.0`.
    #[error("version number does not start with digit")]
    UpstreamNotDigit,
    /// A character other than alphanumerics and `.+~-:` in the upstream part.
    #[error("invalid character in version number")]
    InvalidUpstreamChar,
    /// A character other than alphanumerics and `.+~` in the revision.
    #[error("invalid character in revision number")]
    InvalidRevisionChar,
}

impl Version {
    /// Parses a version as dpkg does, surrounding whitespace ignored. dpkg only warns about
    /// an upstream part not starting with a digit and about invalid characters; here they
    /// are errors, as they are for versions dpkg would write into its database.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let (epoch, upstream_start, upstream_end) = split(text)?;
        let upstream_start = u32::try_from(upstream_start).map_err(|_| VersionError::Empty)?;
        let upstream_end = u32::try_from(upstream_end).map_err(|_| VersionError::Empty)?;
        Ok(Version {
            text: text.into(),
            epoch,
            upstream_start,
            upstream_end,
        })
    }

    /// The epoch, 0 when the version has none.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream part, between the epoch's colon and the last hyphen.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream_start as usize..self.upstream_end as usize]
    }

    /// The Debian revision after the last hyphen, `""` when there is none.
    pub fn revision(&self) -> &str {
        self.text
            .get(self.upstream_end as usize + 1..)
            .unwrap_or_default()
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Checks that `text` is a valid version without keeping it.
pub fn validate(text: &str) -> Result<(), VersionError> {
    split(text.trim_matches(|c: char| c.is_ascii_whitespace())).map(|_| ())
}

/// Compares two version texts as `dpkg --compare-versions` does, without keeping them.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = a.trim_matches(|c: char| c.is_ascii_whitespace());
    let b = b.trim_matches(|c: char| c.is_ascii_whitespace());
    let (ea, sa, ua) = split(a)?;
    let (eb, sb, ub) = split(b)?;
    Ok(compare_parts(
        (ea, &a[sa..ua], a.get(ua + 1..).unwrap_or_default()),
        (eb, &b[sb..ub], b.get(ub + 1..).unwrap_or_default()),
    ))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_parts(
            (self.epoch, self.upstream(), self.revision()),
            (other.epoch, other.upstream(), other.revision()),
        )
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:?})", &*self.text)
    }
}

/// dpkg's `parseversion` on trimmed text: the epoch and the byte range of the upstream part
/// (the revision follows the range's end and a hyphen, when the range ends before the text).
fn split(text: &str) -> Result<(u32, usize, usize), VersionError> {
    if text.is_empty() {
        return Err(VersionError::Empty);
    }
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(VersionError::EmbeddedSpaces);
    }
    let (epoch, upstream_start) = match text.find(':') {
        None => (0, 0),
        Some(colon) => (parse_epoch(&text[..colon])?, colon + 1),
    };
    let rest = &text[upstream_start..];
    if rest.is_empty() {
        return Err(VersionError::NothingAfterColon);
    }
    let upstream_end = match rest.rfind('-') {
        None => text.len(),
        Some(hyphen) if hyphen + 1 == rest.len() => return Err(VersionError::EmptyRevision),
        Some(hyphen) => upstream_start + hyphen,
    };
    let upstream = &text[upstream_start..upstream_end];
    let revision = text.get(upstream_end + 1..).unwrap_or_default();
    if upstream.is_empty() {
        return Err(VersionError::EmptyUpstream);
    }
    if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(VersionError::UpstreamNotDigit);
    }
    if !upstream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-+~:".contains(&b))
    {
        return Err(VersionError::InvalidUpstreamChar);
    }
    if !revision
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
    {
        return Err(VersionError::InvalidRevisionChar);
    }
    Ok((epoch, upstream_start, upstream_end))
}

/// The epoch before the first colon: decimal digits, at most `i32::MAX` as in dpkg.
fn parse_epoch(text: &str) -> Result<u32, VersionError> {
    if text.is_empty() {
        return Err(VersionError::EmptyEpoch);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VersionError::EpochNotNumber);
    }
    match text.parse::<u32>() {
        Ok(epoch) if epoch <= i32::MAX as u32 => Ok(epoch),
        _ => Err(VersionError::EpochTooBig),
    }
}

/// dpkg's `dpkg_version_compare` on split versions.
fn compare_parts(a: (u32, &str, &str), b: (u32, &str, &str)) -> Ordering {
    a.0.cmp(&b.0)
        .then_with(|| verrevcmp(a.1.as_bytes(), b.1.as_bytes()))
        .then_with(|| verrevcmp(a.2.as_bytes(), b.2.as_bytes()))
}

/// The weight of one character in a non-digit run: `~` first, then the end of the run,
/// then letters, then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit runs (by [`order`]) and digit runs (as numbers
/// of any length: leading zeros dropped, then the longer run is the larger, then the first
/// differing digit).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: `a`, the relation dpkg gives (`<`, `=`, `>`), `b`. Cases from dpkg's
    /// `t-version.c`, Debian Policy 5.6.12 and apt's `versionmatch` tests.
    const CASES: &[(&str, char, &str)] = &[
        ("0", '=', "0"),
        ("0", '=', "00"),
        ("1.0", '=', "1.0-0"),
        ("1.0", '=', "0:1.0"),
        ("1.0-0", '=', "0:1.0-0"),
        ("1:0", '>', "0:0"),
        ("1:0", '>', "9999"),
        ("2:0", '>', "1:9999"),
        ("1.0", '<', "1.1"),
        ("1.2", '<', "1.10"),
        ("1.09", '=', "1.9"),
        ("1.0~rc1", '<', "1.0"),
        ("1.0~~", '<', "1.0~"),
        ("1.0~~a", '<', "1.0~"),
        ("1.0~", '<', "1.0"),
        ("1.0", '<', "1.0a"),
        ("1.0a", '<', "1.0b"),
        ("1.0a", '<', "1.0+"),
        ("1.0+", '<', "1.0."),
        ("1.0.", '=', "1.0.0"),
        ("1.0.", '<', "1.0.1"),
        ("1.0", '<', "1.0.1"),
        ("1.0-1", '<', "1.0-2"),
        ("1.0-1", '<', "1.0-1.1"),
        ("1.0-1", '<', "1.0-1+b1"),
        ("1.0-1+b1", '<', "1.0-1.1"),
        ("1.0-1~bpo1", '<', "1.0-1"),
        ("1.0-1+deb12u1", '>', "1.0-1"),
        ("1.0-1+deb12u10", '>', "1.0-1+deb12u9"),
        ("2.30-8", '<', "2.30-8+deb12u1"),
        ("5.2.15-2+b2", '>', "5.2.15-2"),
        ("1.2.3-a-b", '>', "1.2.3-a"),
        ("1:1.2.3", '>', "1.2.4"),
        ("0.9.8-1", '<', "0.10-1"),
        ("7.88.1-10+deb12u5", '<', "7.88.1-10+deb12u12"),
        ("1.0-1", '>', "1.0"),
        ("1.0-0.1", '>', "1.0"),
        ("20240101", '>', "2023.12"),
        ("1.18.4~pre", '<', "1.18.4"),
        ("3.0~beta1-1", '<', "3.0-1"),
        ("2.0.0+dfsg", '>', "2.0.0"),
        ("2.0.0+dfsg", '<', "2.0.0.1"),
        ("1.0-a", '<', "1.0-b"),
        ("1.0-Z", '<', "1.0-a"),
        ("10:1", '>', "9:2"),
        ("1.0.0~0", '<', "1.0.0"),
    ];

    fn relation(a: &Version, b: &Version) -> char {
        match a.cmp(b) {
            Ordering::Less => '<',
            Ordering::Equal => '=',
            Ordering::Greater => '>',
        }
    }

    #[test]
    fn orders_as_dpkg_does() {
        for &(a, expected, b) in CASES {
            let (va, vb) = (Version::parse(a), Version::parse(b));
            let (va, vb) = (va.expect(a), vb.expect(b));
            assert_eq!(relation(&va, &vb), expected, "{a} vs {b}");
            let mirrored = match expected {
                '<' => '>',
                '>' => '<',
                other => other,
            };
            assert_eq!(relation(&vb, &va), mirrored, "{b} vs {a}");
            assert_eq!(compare(a, b).map(|o| o == va.cmp(&vb)), Ok(true));
        }
    }

    #[test]
    fn splits_epoch_upstream_and_revision() {
        let v = Version::parse(" 2:1.0-rc1-3+b1 ").expect("valid");
        assert_eq!(
            (v.epoch(), v.upstream(), v.revision(), v.as_str()),
            (2, "1.0-rc1", "3+b1", "2:1.0-rc1-3+b1")
        );
        let v = Version::parse("1:2:3").expect("colons after the epoch are upstream");
        assert_eq!((v.epoch(), v.upstream(), v.revision()), (1, "2:3", ""));
        assert_eq!(v.to_string(), "1:2:3");
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        use VersionError::*;
        let cases: &[(&str, VersionError)] = &[
            ("", Empty),
            ("  ", Empty),
            ("1 0", EmbeddedSpaces),
            (":1.0", EmptyEpoch),
            ("a:1.0", EpochNotNumber),
            ("-1:1.0", EpochNotNumber),
            ("99999999999:1", EpochTooBig),
            ("2147483648:1", EpochTooBig),
            ("1:", NothingAfterColon),
            ("-1", EmptyUpstream),
            ("1:-1", EmptyUpstream),
            ("1.0-", EmptyRevision),
            ("a1.0", UpstreamNotDigit),
            ("1.0_1", InvalidUpstreamChar),
            ("1.0-1:2", EpochNotNumber),
            ("1:1.0-1:2", InvalidRevisionChar),
            ("1.0-1_2", InvalidRevisionChar),
        ];
        for (text, error) in cases {
            assert_eq!(Version::parse(text).err().as_ref(), Some(error), "{text:?}");
        }
        assert!(Version::parse("2147483647:1").is_ok());
    }
}
