//! The host side of the world `courier:proxy/host` (wit/proxy/host.wit): the provider call
//! bound to the manifest's endpoint and pin, host facts filtered by the policy, and the
//! operator (a terminal, or the policy's answer when unattended).
//!
//! Also the bounded stdout/stderr capture that WASI writes into.

use crate::policy::{OperatorAnswer, OperatorMode};
use crate::provider::{ProviderError, ProviderPool, ProviderTarget};
use courier_protocol::provider::Reply;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::HasData;

/// Generated bindings of `courier:proxy/host`.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/proxy",
        world: "courier:proxy/host",
        imports: {
            "courier:proxy/provider.call": async,
            "courier:proxy/operator.confirm": async,
            default: tracing,
        },
    });
}

use bindings::courier::proxy::{host_info, operator, provider};

/// The names of the host facts this client knows how to gather.
///
/// `packages` is the installed-package inventory, one `name<TAB>version` line per package,
/// sorted by name (what `dpkg-query -W` prints), read from the package manager's own
/// database file; `package-manager` names that manager (`dpkg` or `apk`). Both are absent
/// on a system whose package database this client cannot read.
pub const FACT_NAMES: &[&str] = &[
    "os",
    "arch",
    "family",
    "hostname",
    "kernel",
    "os-release",
    "cpus",
    "package-manager",
    "packages",
];

/// Reads a package database's text into (name, version) pairs.
type PackageParser = fn(&str) -> Vec<(String, String)>;

/// The package databases read for the `packages` fact, in order: a path, its manager, and
/// the parser of its text.
const PACKAGE_DATABASES: &[(&str, &str, PackageParser)] = &[
    ("/var/lib/dpkg/status", "dpkg", parse_dpkg_status),
    ("/lib/apk/db/installed", "apk", parse_apk_installed),
];

/// Facts about the client system, gathered once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    facts: Vec<(String, String)>,
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The installed packages in dpkg's status file: stanzas separated by blank lines, each
/// with `Package:`, `Version:` and `Status:`; only those whose status ends in `installed`
/// count (not removed ones whose configuration is left, nor half-installed ones).
fn parse_dpkg_status(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut installed) = (None, None, false);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.split_whitespace().last() == Some("installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.push((n.to_string(), v.to_string()));
        }
    }
    out
}

/// The installed packages in apk's database: stanzas separated by blank lines, `P:` the
/// name and `V:` the version.
fn parse_apk_installed(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version) = (None, None);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("P:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("V:") {
                version = Some(v.trim());
            }
        }
        if let (Some(n), Some(v)) = (name, version) {
            out.push((n.to_string(), v.to_string()));
        }
    }
    out
}

/// The first readable package database: its manager and the `packages` fact's text.
fn installed_packages() -> Option<(&'static str, String)> {
    PACKAGE_DATABASES.iter().find_map(|(path, manager, parse)| {
        let text = std::fs::read_to_string(path).ok()?;
        Some((*manager, packages_text(parse(&text))))
    })
}

/// One `name<TAB>version` line per package, sorted by name, without duplicates.
fn packages_text(mut packages: Vec<(String, String)>) -> String {
    packages.sort();
    packages.dedup();
    let mut text = String::new();
    for (name, version) in packages {
        text.push_str(&name);
        text.push('\t');
        text.push_str(&version);
        text.push('\n');
    }
    text
}

impl HostFacts {
    /// Gathers the facts of this system that `allowed` names (no process is spawned,
    /// nothing is sent anywhere; the package database is read only when `packages` or
    /// `package-manager` is allowed).
    pub fn gather_allowed(allowed: &BTreeSet<String>) -> Self {
        let mut facts = Self::gather_basic();
        let wanted = allowed.contains("packages") || allowed.contains("package-manager");
        if let Some((manager, text)) = wanted.then(installed_packages).flatten() {
            facts.facts.push(("package-manager".into(), manager.into()));
            facts.facts.push(("packages".into(), text));
        }
        facts.filtered(allowed)
    }

    /// Gathers every fact of this system (no process is spawned, nothing is sent anywhere).
    pub fn gather() -> Self {
        Self::gather_allowed(&FACT_NAMES.iter().map(|s| s.to_string()).collect())
    }

    /// The cheap facts: constants, a few `/proc` and `/etc` files.
    fn gather_basic() -> Self {
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
        if let Some(r) = os_release() {
            facts.push(("os-release".into(), r));
        }
        if let Ok(n) = std::thread::available_parallelism() {
            facts.push(("cpus".into(), n.to_string()));
        }
        Self { facts }
    }

    /// Facts given explicitly (for tests and embedders).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            facts: pairs.into_iter().collect(),
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
        }
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

/// Longest operator message kept, in bytes.
const MAX_MESSAGE: usize = 1024;

/// `s` cut to at most `max` bytes (at a character boundary), with an ellipsis if cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Printable form of guest text: control characters escaped, length clipped.
fn printable(s: &str) -> String {
    clip(&s.escape_debug().to_string(), MAX_MESSAGE)
}

/// Limits and deadlines a run's host calls observe.
#[derive(Debug, Clone)]
pub struct HostLimits {
    /// Longest single provider call.
    pub provider_timeout: Duration,
    /// Largest provider reply passed to the proxy.
    pub provider_reply_bytes: usize,
    /// Operator messages kept.
    pub transcript_lines: usize,
}

/// The host state of one run: everything the `courier:proxy` imports can touch.
pub struct HostCtx {
    pool: Arc<ProviderPool>,
    target: ProviderTarget,
    facts: Arc<HostFacts>,
    operator: OperatorMode,
    limits: HostLimits,
    /// When the run must be over (extended by time spent waiting for a person).
    pub(crate) wall_deadline: Instant,
    /// Time spent inside host calls (not guest CPU).
    pub(crate) host_time: Duration,
    transcript: Vec<String>,
    dropped_lines: usize,
    provider_calls: u32,
    provider_time: Duration,
    provider_failures: Vec<ProviderError>,
}

impl HostCtx {
    /// State for one run.
    pub fn new(
        pool: Arc<ProviderPool>,
        target: ProviderTarget,
        facts: Arc<HostFacts>,
        operator: OperatorMode,
        limits: HostLimits,
        wall_deadline: Instant,
    ) -> Self {
        Self {
            pool,
            target,
            facts,
            operator,
            limits,
            wall_deadline,
            host_time: Duration::ZERO,
            transcript: Vec::new(),
            dropped_lines: 0,
            provider_calls: 0,
            provider_time: Duration::ZERO,
            provider_failures: Vec::new(),
        }
    }

    fn record(&mut self, line: String) {
        tracing::info!(target: "courier::operator", "{line}");
        if self.transcript.len() < self.limits.transcript_lines {
            self.transcript.push(line);
        } else {
            self.dropped_lines += 1;
        }
    }

    /// The operator transcript, and how many lines were dropped beyond the cap.
    pub fn take_transcript(&mut self) -> (Vec<String>, usize) {
        (std::mem::take(&mut self.transcript), self.dropped_lines)
    }

    /// Host-side provider failures of this run (the proxy saw them as error strings).
    pub fn take_provider_failures(&mut self) -> Vec<ProviderError> {
        std::mem::take(&mut self.provider_failures)
    }

    /// Provider calls made.
    pub fn provider_calls(&self) -> u32 {
        self.provider_calls
    }

    /// Time spent in provider calls.
    pub fn provider_time(&self) -> Duration {
        self.provider_time
    }

    fn answer(&self) -> Option<bool> {
        let fixed = |a: OperatorAnswer| a == OperatorAnswer::ApproveAll;
        match self.operator {
            OperatorMode::Unattended(a) => Some(fixed(a)),
            OperatorMode::Terminal { fallback } => {
                if std::io::stdin().is_terminal() {
                    None
                } else {
                    Some(fixed(fallback))
                }
            }
        }
    }
}

/// Marks [`HostCtx`] as the data the generated `add_to_linker` functions project to.
pub struct HostData;

impl HasData for HostData {
    type Data<'a> = &'a mut HostCtx;
}

impl provider::Host for HostCtx {
    async fn call(&mut self, method: String, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let started = Instant::now();
        self.provider_calls += 1;
        let left = self.wall_deadline.saturating_duration_since(started);
        let timeout = self.limits.provider_timeout.min(left);
        let result = self
            .pool
            .call(
                &self.target,
                &method,
                payload,
                timeout,
                self.limits.provider_reply_bytes,
            )
            .await;
        let took = started.elapsed();
        self.host_time += took;
        self.provider_time += took;
        match result {
            Ok(Reply::Ok(bytes)) => Ok(bytes),
            Ok(Reply::Err(message)) => Err(message),
            Err(e) => {
                let text = e.to_string();
                tracing::warn!(method = %printable(&method), "provider call failed: {text}");
                self.provider_failures.push(e);
                Err(text)
            }
        }
    }
}

impl host_info::Host for HostCtx {
    fn get(&mut self, name: String) -> Option<String> {
        self.facts.get(&name).map(str::to_string)
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.facts.all().to_vec()
    }
}

impl operator::Host for HostCtx {
    fn display(&mut self, message: String) {
        self.record(format!("display: {}", printable(&message)));
    }

    async fn confirm(&mut self, question: String) -> bool {
        let question = printable(&question);
        match self.answer() {
            Some(a) => {
                self.record(format!("confirm: {question} -> {} (policy)", yes_no(a)));
                a
            }
            None => {
                let started = Instant::now();
                let q = question.clone();
                let a = tokio::task::spawn_blocking(move || ask_terminal(&q))
                    .await
                    .unwrap_or(false);
                // Time spent waiting for a person counts against neither deadline.
                let waited = started.elapsed();
                self.host_time += waited;
                self.wall_deadline += waited;
                self.record(format!("confirm: {question} -> {} (operator)", yes_no(a)));
                a
            }
        }
    }

    fn progress(&mut self, done: u32, total: u32, message: String) {
        self.record(format!("progress: {done}/{total} {}", printable(&message)));
    }
}

fn yes_no(a: bool) -> &'static str {
    if a { "yes" } else { "no" }
}

/// Asks on the terminal (stderr for the question, stdin for the answer).
fn ask_terminal(question: &str) -> bool {
    use std::io::Write;
    let mut err = std::io::stderr();
    let _ = write!(err, "proxy asks: {question} [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// A bounded in-memory sink for a proxy's stdout or stderr: bytes beyond the cap are
/// counted and dropped, never an error for the proxy.
#[derive(Debug, Clone)]
pub struct LogPipe {
    inner: Arc<Mutex<LogBuf>>,
}

#[derive(Debug, Default)]
struct LogBuf {
    bytes: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl LogPipe {
    /// A pipe keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogBuf {
                bytes: Vec::new(),
                cap,
                dropped: 0,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = b.cap.saturating_sub(b.bytes.len());
        let take = room.min(data.len());
        b.bytes.extend_from_slice(&data[..take]);
        b.dropped += data.len() - take;
    }

    /// What was written (lossy UTF-8) and how many bytes were dropped.
    pub fn contents(&self) -> (String, usize) {
        let b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (String::from_utf8_lossy(&b.bytes).into_owned(), b.dropped)
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for LogPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), wasmtime_wasi::p2::StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), wasmtime_wasi::p2::StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, wasmtime_wasi::p2::StreamError> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dpkg_status_lists_installed_packages_only() {
        let status = "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n\
                      Version: 1:1.2.13.dfsg-1\nDescription: compression\n library\n\n\
                      Package: old-tool\nStatus: deinstall ok config-files\nVersion: 0.9\n\n\
                      Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n";
        assert_eq!(
            packages_text(parse_dpkg_status(status)),
            "bash\t5.2.15-2+b7\nzlib1g\t1:1.2.13.dfsg-1\n"
        );
        assert_eq!(parse_dpkg_status(""), vec![]);
        assert_eq!(
            parse_dpkg_status("Package: no-version\nStatus: install ok installed"),
            vec![]
        );
    }

    #[test]
    fn apk_database_lists_packages() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r15\n";
        assert_eq!(
            packages_text(parse_apk_installed(db)),
            "busybox\t1.36.1-r15\nmusl\t1.2.4-r2\n"
        );
    }

    #[test]
    fn packages_are_read_only_when_allowed() {
        let none = HostFacts::gather_allowed(&["os".to_string()].into());
        assert_eq!(none.get("packages"), None);
        let with = HostFacts::gather_allowed(&["packages".to_string()].into());
        if std::path::Path::new("/var/lib/dpkg/status").exists() {
            let text = with.get("packages").unwrap();
            assert!(text.lines().all(|l| l.split('\t').count() == 2), "{text}");
            assert_eq!(with.get("package-manager"), None, "not allowed");
        }
    }

    #[test]
    fn facts_are_gathered_and_filtered() {
        let all = HostFacts::gather();
        assert_eq!(all.get("os"), Some(std::env::consts::OS));
        assert!(all.get("arch").is_some());
        let allowed: BTreeSet<String> = ["arch".to_string()].into();
        let some = all.filtered(&allowed);
        assert_eq!(some.all().len(), 1);
        assert_eq!(some.get("os"), None);
        for (k, _) in all.all() {
            assert!(FACT_NAMES.contains(&k.as_str()), "{k}");
        }
    }

    #[test]
    fn log_pipe_is_bounded() {
        let p = LogPipe::new(4);
        p.push(b"ab");
        p.push(b"cdef");
        assert_eq!(p.contents(), ("abcd".to_string(), 2));
    }

    #[test]
    fn guest_text_is_escaped_and_clipped() {
        assert_eq!(printable("a\nb\u{1b}"), "a\\nb\\u{1b}");
        assert!(printable(&"é".repeat(2000)).len() <= MAX_MESSAGE + 4);
    }
}
