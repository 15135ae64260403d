//! Host facts: what the client can tell a proxy (or the registry) about its system, gathered
//! once, without spawning a process and without sending anything anywhere.
//!
//! - `os`, `arch`, `family`: Rust's names for the platform (`linux`, `x86_64`, `unix`);
//! - `hostname`, `kernel` (the running kernel's release), `cpus`;
//! - `os-release` (`PRETTY_NAME`), `os-id` (`ID`), `os-version` (`VERSION_ID`) and
//!   `os-codename` (`VERSION_CODENAME`) from `/etc/os-release` (or `/usr/lib/os-release`),
//!   shell-quoted values unquoted as the file's specification says;
//! - `packages`, the installed-package inventory, one `name<TAB>version<TAB>arch` line per
//!   package sorted by name then architecture, read deb822-correctly from dpkg's status file
//!   by `courier-debian` (continuation lines, several paragraphs, only packages whose status
//!   is installed, a malformed paragraph skipped with a warning, never a crash), or from apk's
//!   database; `package-manager` names the manager (`dpkg` or `apk`);
//! - `managed-dir`: the path, inside the sandbox, of the directory the policy lends (added
//!   by the sandbox, not gathered here).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The names of the host facts this client knows.
pub const FACT_NAMES: &[&str] = &[
    "os",
    "arch",
    "family",
    "hostname",
    "kernel",
    "os-release",
    "os-id",
    "os-version",
    "os-codename",
    "cpus",
    "package-manager",
    "packages",
    "managed-dir",
];

/// Facts about the client system, gathered once (the installed packages read again after
/// the client installed one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    facts: Vec<(String, String)>,
    /// Where they were read from, when they were.
    sources: Option<FactSources>,
}

/// Where facts are read from: the system's own files by default, fixtures in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactSources {
    /// dpkg's status file.
    pub dpkg_status: PathBuf,
    /// apk's database of installed packages (read when there is no dpkg status file).
    pub apk_installed: PathBuf,
    /// The os-release files, the first readable one used.
    pub os_release: Vec<PathBuf>,
}

impl Default for FactSources {
    fn default() -> Self {
        Self {
            dpkg_status: courier_debian::status::DPKG_STATUS.into(),
            apk_installed: courier_debian::status::APK_INSTALLED.into(),
            os_release: vec!["/etc/os-release".into(), "/usr/lib/os-release".into()],
        }
    }
}

impl HostFacts {
    /// Gathers the facts of this system that `allowed` names (no process is spawned,
    /// nothing is sent anywhere; the package database is read only when `packages` or
    /// `package-manager` is allowed).
    pub fn gather_allowed(allowed: &BTreeSet<String>) -> Self {
        Self::gather_from(&FactSources::default(), allowed)
    }

    /// Gathers every fact of this system.
    pub fn gather() -> Self {
        Self::gather_allowed(&FACT_NAMES.iter().map(|s| s.to_string()).collect())
    }

    /// Like [`HostFacts::gather_allowed`], reading the files `sources` names.
    pub fn gather_from(sources: &FactSources, allowed: &BTreeSet<String>) -> Self {
        let mut facts = basic_facts();
        let release = sources
            .os_release
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|text| parse_os_release(&text))
            .unwrap_or_default();
        for (fact, field) in [
            ("os-release", "PRETTY_NAME"),
            ("os-id", "ID"),
            ("os-version", "VERSION_ID"),
            ("os-codename", "VERSION_CODENAME"),
        ] {
            if let Some(v) = release.get(field).filter(|v| !v.is_empty()) {
                facts.push((fact.into(), v.clone()));
            }
        }
        let wanted = allowed.contains("packages") || allowed.contains("package-manager");
        if let Some((manager, text)) = wanted.then(|| installed_packages(sources)).flatten() {
            facts.push(("package-manager".into(), manager.into()));
            facts.push(("packages".into(), text));
        }
        Self {
            facts,
            sources: Some(sources.clone()),
        }
        .filtered(allowed)
    }

    /// Where they were read from, if they were read (not given).
    pub(crate) fn sources(&self) -> Option<&FactSources> {
        self.sources.as_ref()
    }

    /// Facts given explicitly (for tests and embedders).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            facts: pairs.into_iter().collect(),
            sources: None,
        }
    }

    /// Only the facts named in `allowed`.
    pub fn filtered(&self, allowed: &BTreeSet<String>) -> Self {
        Self {
            facts: self
                .facts
                .iter()
                .filter(|(k, _)| allowed.contains(k))
                .cloned()
                .collect(),
            sources: self.sources.clone(),
        }
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub(crate) fn set(&mut self, name: &str, value: String) {
        self.facts.retain(|(k, _)| k != name);
        self.facts.push((name.to_string(), value));
    }

    /// One fact.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every fact, in gathering order.
    pub fn all(&self) -> &[(String, String)] {
        &self.facts
    }
}

/// The cheap facts: constants and a few `/proc` files.
fn basic_facts() -> Vec<(String, String)> {
    let mut facts = vec![
        ("os".to_string(), std::env::consts::OS.to_string()),
        ("arch".to_string(), std::env::consts::ARCH.to_string()),
        ("family".to_string(), std::env::consts::FAMILY.to_string()),
    ];
    if let Some(h) =
        read_trimmed("/proc/sys/kernel/hostname").or_else(|| read_trimmed("/etc/hostname"))
    {
        facts.push(("hostname".into(), h));
    }
    if let Some(k) = read_trimmed("/proc/sys/kernel/osrelease") {
        facts.push(("kernel".into(), k));
    }
    if let Ok(n) = std::thread::available_parallelism() {
        facts.push(("cpus".into(), n.to_string()));
    }
    facts
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The `KEY=value` lines of an os-release file. Values may be quoted with `"` or `'`; inside
/// double quotes `\"`, `\\`, `` \` `` and `\$` stand for the character. Comments, blank and
/// malformed lines are ignored.
pub(crate) fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            let mut v = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some(n @ ('"' | '\\' | '`' | '$'))) => {
                        v.push(n);
                        chars.next();
                    }
                    _ => v.push(c),
                }
            }
            v
        } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            inner.to_string()
        } else {
            raw.to_string()
        };
        out.insert(key.to_string(), value);
    }
    out
}

/// The first readable package database: its manager and the `packages` fact's text. A
/// database that cannot be read at all is logged and the next one tried.
pub(crate) fn installed_packages(sources: &FactSources) -> Option<(&'static str, String)> {
    if let Some(text) = dpkg_packages(&sources.dpkg_status) {
        return Some(("dpkg", text));
    }
    if !sources.apk_installed.exists() {
        return None;
    }
    match courier_debian::status::read_apk_installed(&sources.apk_installed) {
        Ok(packages) => Some((
            "apk",
            packages_text(packages.into_iter().map(|p| (p.name, p.version, p.arch))),
        )),
        Err(e) => {
            tracing::warn!("packages fact: {e}");
            None
        }
    }
}

/// The `packages` text of dpkg's status file at `path`, if it exists and can be read.
pub(crate) fn dpkg_packages(path: &Path) -> Option<String> {
    if !path.exists() {
        return None;
    }
    match courier_debian::status::read_dpkg_status(path) {
        Ok(inventory) => {
            if inventory.skipped > 0 {
                tracing::warn!(
                    "packages fact: {} paragraphs of {} skipped as malformed",
                    inventory.skipped,
                    path.display()
                );
            }
            Some(packages_text(inventory.packages.into_iter().map(|p| {
                let version = p.version.as_str().to_string();
                (p.name, version, p.arch)
            })))
        }
        Err(e) => {
            tracing::warn!("packages fact: {e}");
            None
        }
    }
}

/// One `name<TAB>version<TAB>arch` line per package, sorted by name then architecture,
/// without duplicates.
fn packages_text(packages: impl Iterator<Item = (String, String, String)>) -> String {
    let mut packages: Vec<_> = packages.collect();
    packages.sort_by(|a, b| (&a.0, &a.2, &a.1).cmp(&(&b.0, &b.2, &b.1)));
    packages.dedup();
    let mut text = String::new();
    for (name, version, arch) in packages {
        for (i, field) in [name, version, arch].iter().enumerate() {
            if i > 0 {
                text.push('\t');
            }
            text.push_str(field);
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dpkg-status");

    fn sources(dir: &Path) -> FactSources {
        FactSources {
            dpkg_status: FIXTURE.into(),
            apk_installed: dir.join("no-apk"),
            os_release: vec![dir.join("missing"), dir.join("os-release")],
        }
    }

    fn all_allowed() -> BTreeSet<String> {
        FACT_NAMES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dpkg_status_fixture_gives_installed_packages_with_arch_and_skips_bad_paragraphs() {
        let text = dpkg_packages(Path::new(FIXTURE)).unwrap();
        assert_eq!(
            text,
            "bash\t5.2.15-2+b7\tamd64\n\
             held-tool\t2.0-1\tamd64\n\
             libc6\t2.36-9+deb12u9\tamd64\n\
             libc6\t2.36-9+deb12u9\ti386\n\
             tzdata\t2024a-0+deb12u1\tall\n\
             zlib1g\t1:1.2.13.dfsg-1\tamd64\n"
        );
    }

    #[test]
    fn os_release_is_unquoted_and_facts_come_from_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("os-release"),
            "# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME='Debian'\n\
             VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\nBAD LINE\n\
             HOME_URL=\"https://x/\\\"q\\\"\"\n",
        )
        .unwrap();
        let facts = HostFacts::gather_from(&sources(dir.path()), &all_allowed());
        assert_eq!(
            facts.get("os-release"),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(facts.get("os-id"), Some("debian"));
        assert_eq!(facts.get("os-version"), Some("12"));
        assert_eq!(facts.get("os-codename"), Some("bookworm"));
        assert_eq!(facts.get("package-manager"), Some("dpkg"));
        assert_eq!(facts.get("packages").unwrap().lines().count(), 6);
        let parsed =
            parse_os_release(&std::fs::read_to_string(dir.path().join("os-release")).unwrap());
        assert_eq!(parsed["NAME"], "Debian");
        assert_eq!(parsed["HOME_URL"], "https://x/\"q\"");
        assert!(!parsed.contains_key("BAD LINE"));
    }

    #[test]
    fn packages_are_read_only_when_allowed_and_a_missing_database_is_no_fact() {
        let dir = tempfile::tempdir().unwrap();
        let none = HostFacts::gather_from(&sources(dir.path()), &["os".to_string()].into());
        assert_eq!(none.get("packages"), None);
        let mut missing = sources(dir.path());
        missing.dpkg_status = dir.path().join("no-status");
        let facts = HostFacts::gather_from(&missing, &all_allowed());
        assert_eq!(facts.get("packages"), None);
        assert_eq!(facts.get("package-manager"), None);
    }

    #[test]
    fn apk_database_gives_packages_when_there_is_no_dpkg() {
        let dir = tempfile::tempdir().unwrap();
        let apk = dir.path().join("installed");
        std::fs::write(
            &apk,
            "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r15\n",
        )
        .unwrap();
        let mut s = sources(dir.path());
        s.dpkg_status = dir.path().join("no-status");
        s.apk_installed = apk;
        let facts = HostFacts::gather_from(&s, &all_allowed());
        assert_eq!(facts.get("package-manager"), Some("apk"));
        assert_eq!(
            facts.get("packages"),
            Some("busybox\t1.36.1-r15\t\nmusl\t1.2.4-r2\tx86_64\n")
        );
    }

    #[test]
    fn this_machine_facts_are_known_names_and_filtered() {
        let all = HostFacts::gather();
        assert_eq!(all.get("os"), Some(std::env::consts::OS));
        let some = all.filtered(&["arch".to_string()].into());
        assert_eq!(some.all().len(), 1);
        for (k, _) in all.all() {
            assert!(FACT_NAMES.contains(&k.as_str()), "{k}");
        }
        if Path::new(courier_debian::status::DPKG_STATUS).exists() {
            let text = all.get("packages").unwrap();
            assert!(text.lines().all(|l| l.split('\t').count() == 3), "{text}");
        }
    }
}
