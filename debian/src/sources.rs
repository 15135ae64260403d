//! Which `Packages` lists apt reads, and at which default priority: the `deb` entries of
//! `sources.list`, `sources.list.d/*.list` (one-line format) and `sources.list.d/*.sources`
//! (deb822), turned into the file names apt gives their lists in `/var/lib/apt/lists/`.
//!
//! Lists of repositories no longer in the sources (a file renamed to `*.disabled`, say)
//! stay on disk until the next `apt-get update` cleans them, and apt ignores them; reading
//! every `*_Packages*` file would count packages apt does not see. The default priority
//! comes from the repository's `Release` file: 500, or 1 with `NotAutomatic: yes`, or 100
//! with `ButAutomaticUpgrades: yes` as well (apt_preferences(5)); pins are not read.

use std::fs;
use std::path::{Path, PathBuf};

use crate::deb822;

/// One `Packages` list apt reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptList {
    /// The list file (compressed or not) in the lists directory.
    pub path: PathBuf,
    /// The default priority of its versions.
    pub priority: i32,
    /// The suite it belongs to (`bookworm-security`), for showing.
    pub suite: String,
}

/// The default priority of a repository's versions.
pub const DEFAULT_PRIORITY: i32 = 500;

/// One `deb` line or stanza, split into one entry per URI and suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// The repository's base URI.
    pub uri: String,
    /// The suite (a path ending in `/` for a flat repository).
    pub suite: String,
    /// The components (none for a flat repository).
    pub components: Vec<String>,
    /// The architectures the entry is limited to, if it is.
    pub archs: Option<Vec<String>>,
}

/// The `deb` entries under `etc_apt` (`/etc/apt`): `sources.list`, then the `*.list` and
/// `*.sources` files of `sources.list.d` in name order. Unreadable files and malformed
/// lines are skipped with a warning, as apt would refuse them loudly.
pub fn read_sources(etc_apt: &Path) -> Vec<SourceEntry> {
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.retain(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("list" | "sources")
            )
        });
        more.sort();
        files.extend(more);
    }
    let mut entries = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            if file.exists() {
                tracing::warn!(file = %file.display(), "cannot read an apt sources file");
            }
            continue;
        };
        if file.extension().is_some_and(|e| e == "sources") {
            entries.extend(parse_deb822_sources(&file.display().to_string(), &text));
        } else {
            entries.extend(parse_one_line_sources(&file.display().to_string(), &text));
        }
    }
    entries
}

/// The `Packages` lists apt reads for `entries` and architectures `archs` (the native
/// one first), found in `lists_dir` (`/var/lib/apt/lists`), with their priorities. A list
/// apt has not downloaded is left out; so is `binary-all` unless its file exists.
pub fn apt_lists(entries: &[SourceEntry], archs: &[String], lists_dir: &Path) -> Vec<AptList> {
    let mut lists = Vec::new();
    for entry in entries {
        let base = with_slash(&entry.uri);
        let priority = release_priority(lists_dir, &base, &entry.suite);
        let archs = entry.archs.as_deref().unwrap_or(archs);
        let mut indexes = Vec::new();
        if entry.suite.ends_with('/') {
            let suite = entry.suite.trim_start_matches("./").trim_start_matches('/');
            indexes.push(format!("{base}{suite}Packages"));
        } else {
            for component in &entry.components {
                for arch in archs.iter().map(String::as_str).chain(["all"]) {
                    let suite = &entry.suite;
                    indexes.push(format!(
                        "{base}dists/{suite}/{component}/binary-{arch}/Packages"
                    ));
                }
            }
        }
        for index in indexes {
            let stem = uri_to_file_name(&index);
            let found = ["", ".lz4", ".gz", ".xz", ".zst", ".bz2", ".lzma"]
                .iter()
                .map(|suffix| lists_dir.join(format!("{stem}{suffix}")))
                .find(|path| path.is_file());
            if let Some(path) = found
                && !lists.iter().any(|l: &AptList| l.path == path)
            {
                let suite = entry.suite.clone();
                lists.push(AptList {
                    path,
                    priority,
                    suite,
                });
            }
        }
    }
    lists
}

/// The lists apt reads on the machine whose root is `root` (`/` for this one), for its
/// native architecture `native` and the foreign ones dpkg knows (`var/lib/dpkg/arch`).
pub fn machine_lists(root: &Path, native: &str) -> Vec<AptList> {
    let mut archs = vec![native.to_owned()];
    if let Ok(text) = fs::read_to_string(root.join("var/lib/dpkg/arch")) {
        for arch in text.split_ascii_whitespace() {
            if !archs.iter().any(|a| a == arch) {
                archs.push(arch.to_owned());
            }
        }
    }
    let entries = read_sources(&root.join("etc/apt"));
    apt_lists(&entries, &archs, &root.join("var/lib/apt/lists"))
}

/// apt's `URItoFileName`: the URI without scheme and credentials, the characters apt
/// quotes as `%xx`, then `/` as `_`.
pub fn uri_to_file_name(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let rest = match rest.split_once('/') {
        Some((authority, path)) => {
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{host}/{path}")
        }
        None => rest
            .rsplit_once('@')
            .map_or(rest, |(_, host)| host)
            .to_owned(),
    };
    let mut name = String::with_capacity(rest.len());
    for b in rest.bytes() {
        if b <= 0x20 || b >= 0x7F || br#"\|{}[]<>"^~_=!@#$%&*"#.contains(&b) {
            name.push_str(&format!("%{b:02x}"));
        } else if b == b'/' {
            name.push('_');
        } else {
            name.push(char::from(b));
        }
    }
    name
}

/// The `deb` lines of a one-line-format file: `deb [opts] uri suite [components]`.
fn parse_one_line_sources(source: &str, text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line
            .strip_prefix("deb")
            .filter(|r| r.starts_with([' ', '\t', '[']))
        else {
            continue;
        };
        let mut archs = None;
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(options) => {
                let Some((options, rest)) = options.split_once(']') else {
                    tracing::warn!(source, line = n + 1, "an apt source with unclosed options");
                    continue;
                };
                for option in options.split_ascii_whitespace() {
                    if let Some(list) = option.strip_prefix("arch=") {
                        archs = Some(list.split(',').map(str::to_owned).collect());
                    }
                }
                rest
            }
            None => rest,
        };
        let mut words = rest.split_ascii_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            tracing::warn!(source, line = n + 1, "an apt source without URI or suite");
            continue;
        };
        let components = words.map(str::to_owned).collect();
        entries.push(SourceEntry {
            uri: uri.to_owned(),
            suite: suite.to_owned(),
            components,
            archs,
        });
    }
    entries
}

/// The `deb` stanzas of a deb822 `.sources` file, one entry per URI and suite; a stanza
/// with `Enabled: no` is left out.
fn parse_deb822_sources(source: &str, text: &str) -> Vec<SourceEntry> {
    let mut entries = Vec::new();
    let mut reader = deb822::Reader::new(source, text.as_bytes());
    while let Ok(Some(stanza)) = reader.next_paragraph() {
        let words = |name: &str| -> Vec<String> {
            let value = stanza.value(name).unwrap_or_default();
            value.split_ascii_whitespace().map(str::to_owned).collect()
        };
        let enabled = stanza.value("Enabled").is_none_or(|v| v.trim() != "no");
        if !enabled || !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        let archs = stanza.get("Architectures").map(|_| words("Architectures"));
        for uri in words("URIs") {
            for suite in words("Suites") {
                entries.push(SourceEntry {
                    uri: uri.clone(),
                    suite,
                    components: words("Components"),
                    archs: archs.clone(),
                });
            }
        }
    }
    entries
}

/// The default priority the repository's `InRelease` or `Release` file gives its versions.
fn release_priority(lists_dir: &Path, base: &str, suite: &str) -> i32 {
    let dir = if suite.ends_with('/') {
        format!(
            "{base}{}",
            suite.trim_start_matches("./").trim_start_matches('/')
        )
    } else {
        format!("{base}dists/{suite}/")
    };
    let release = ["InRelease", "Release"].iter().find_map(|name| {
        fs::read_to_string(lists_dir.join(uri_to_file_name(&format!("{dir}{name}")))).ok()
    });
    let Some(text) = release else {
        return DEFAULT_PRIORITY;
    };
    let mut reader = deb822::Reader::new("Release", signed_text(&text).as_bytes());
    let Ok(Some(fields)) = reader.next_paragraph() else {
        return DEFAULT_PRIORITY;
    };
    let yes = |name: &str| fields.value(name).is_some_and(|v| v.trim() == "yes");
    match (yes("NotAutomatic"), yes("ButAutomaticUpgrades")) {
        (true, true) => 100,
        (true, false) => 1,
        _ => DEFAULT_PRIORITY,
    }
}

/// The fields of a `Release` file; of a clear-signed `InRelease`, the signed text: after
/// the armor's header (up to its first blank line), up to the signature, which follows the
/// last field without a blank line between them.
fn signed_text(text: &str) -> &str {
    let Some(signed) = text.strip_prefix("-----BEGIN PGP SIGNED MESSAGE-----") else {
        return text;
    };
    let body = signed.split_once("\n\n").map_or("", |(_, body)| body);
    body.split_once("\n-----BEGIN PGP SIGNATURE-----")
        .map_or(body, |(fields, _)| fields)
}

fn with_slash(uri: &str) -> String {
    if uri.ends_with('/') {
        uri.to_owned()
    } else {
        format!("{uri}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_as_apt_does() {
        assert_eq!(
            uri_to_file_name(
                "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages"
            ),
            "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"
        );
        assert_eq!(
            uri_to_file_name(
                "https://user:pw@deb.nodesource.com/node_20.x/dists/nodistro/InRelease"
            ),
            "deb.nodesource.com_node%5f20.x_dists_nodistro_InRelease"
        );
        assert_eq!(uri_to_file_name("http://h:8080/a~b/"), "h:8080_a%7eb_");
    }

    #[test]
    fn a_signed_release_gives_its_priority() {
        let lists = tempfile::tempdir().unwrap();
        let fields = "Origin: Debian Backports\nSuite: bookworm-backports\n\
                      NotAutomatic: yes\nButAutomaticUpgrades: yes\nSHA256:\n 0a1b 12 main/Release";
        let signed = format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{fields}\n\
             -----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCgAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n"
        );
        let name = "deb.debian.org_debian_dists_bookworm-backports_InRelease";
        std::fs::write(lists.path().join(name), signed).unwrap();
        let base = "http://deb.debian.org/debian/";
        assert_eq!(
            release_priority(lists.path(), base, "bookworm-backports"),
            100
        );
        let plain = "deb.debian.org_debian_dists_experimental_Release";
        let experimental = "Suite: experimental\nNotAutomatic: yes\n";
        std::fs::write(lists.path().join(plain), experimental).unwrap();
        assert_eq!(release_priority(lists.path(), base, "experimental"), 1);
        assert_eq!(
            release_priority(lists.path(), base, "bookworm"),
            DEFAULT_PRIORITY
        );
    }

    #[test]
    fn reads_both_source_formats() {
        let one_line = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://a/debian bookworm main contrib\n\
                        deb-src http://a/debian bookworm main\ndeb http://b/repo ./ # flat\n";
        let entries = parse_one_line_sources("list", one_line);
        let entry =
            |uri: &str, suite: &str, components: &[&str], archs: Option<&[&str]>| SourceEntry {
                uri: uri.into(),
                suite: suite.into(),
                components: components.iter().map(|c| c.to_string()).collect(),
                archs: archs.map(|a| a.iter().map(|a| a.to_string()).collect()),
            };
        assert_eq!(
            entries,
            [
                entry(
                    "http://a/debian",
                    "bookworm",
                    &["main", "contrib"],
                    Some(&["amd64"])
                ),
                entry("http://b/repo", "./", &[], None),
            ]
        );
        let stanzas = "Types: deb deb-src\nURIs: http://a/debian\nSuites: bookworm bookworm-updates\n\
                       Components: main\n\nTypes: deb\nURIs: http://c/\nSuites: x\nComponents: main\nEnabled: no\n";
        assert_eq!(
            parse_deb822_sources("sources", stanzas),
            [
                entry("http://a/debian", "bookworm", &["main"], None),
                entry("http://a/debian", "bookworm-updates", &["main"], None),
            ]
        );
    }
}
