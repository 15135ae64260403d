//! The host side of the world `courier:proxy/host` (wit/proxy/host.wit): the provider call
//! bound to the manifest's endpoint and pin, host facts filtered by the policy, the
//! operator (a console, or the policy's answer when unattended), and the commands the
//! policy lends.
//!
//! Rooms: `facts` (what the client can tell about its system), `operator` (the operator
//! channel and [`OperatorConsole`]), `commands` (lent commands, run without a shell under a
//! timeout), `log_pipe` (the bounded stdout/stderr capture WASI writes into).

mod commands;
mod facts;
mod log_pipe;
mod operator;

pub(crate) use commands::run_command;
pub use commands::{CommandOutput, CommandRefusal, MINIMAL_PATH};
pub(crate) use facts::installed_packages;
pub use facts::{FACT_NAMES, FactSources, HostFacts};
pub use log_pipe::LogPipe;
pub(crate) use operator::confirm_outside_run;
pub use operator::{OperatorConsole, PERSON_WAIT, TerminalConsole, ask_terminal, ask_terminal_as};

use crate::policy::Policy;
use crate::provider::{ProviderError, ProviderPool, ProviderTarget};
use courier_protocol::provider::Reply;
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
            "courier:proxy/commands.run": async,
            default: tracing,
        },
    });
}

use bindings::courier::proxy::{host_info, provider};

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

/// Printable form of guest text on one line: control and bidirectional-formatting
/// characters escaped (so a proxy cannot move the cursor, recolour or reorder what a
/// person reads), length clipped.
pub(crate) fn printable(s: &str) -> String {
    clip(&escape_controls(s, false), MAX_MESSAGE)
}

/// Like [`printable`], keeping line breaks (a message of several lines).
pub(crate) fn displayable(s: &str) -> String {
    clip(&escape_controls(s, true), MAX_MESSAGE)
}

fn escape_controls(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c == '\n' && keep_newlines {
            out.push(c);
        } else if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The host state of one run: everything the `courier:proxy` imports can touch.
pub struct HostCtx {
    pool: Arc<ProviderPool>,
    target: ProviderTarget,
    facts: Arc<HostFacts>,
    policy: Arc<Policy>,
    console: Arc<dyn OperatorConsole>,
    /// When the run must be over (extended by time spent waiting for a person).
    pub(crate) wall_deadline: Instant,
    /// The deadline the run's outer timeout watches (shared with the sandbox).
    shared_deadline: Arc<Mutex<Instant>>,
    /// Time spent inside host calls (not guest CPU).
    pub(crate) host_time: Duration,
    transcript: Vec<String>,
    dropped_lines: usize,
    provider_calls: u32,
    provider_time: Duration,
    provider_failures: Vec<ProviderError>,
}

impl HostCtx {
    /// State for one run under `policy`, ending at `wall_deadline`, which the run's outer
    /// timeout reads from `shared_deadline`.
    pub fn new(
        pool: Arc<ProviderPool>,
        target: ProviderTarget,
        facts: Arc<HostFacts>,
        policy: Arc<Policy>,
        console: Arc<dyn OperatorConsole>,
        wall_deadline: Instant,
        shared_deadline: Arc<Mutex<Instant>>,
    ) -> Self {
        Self {
            pool,
            target,
            facts,
            policy,
            console,
            wall_deadline,
            shared_deadline,
            host_time: Duration::ZERO,
            transcript: Vec::new(),
            dropped_lines: 0,
            provider_calls: 0,
            provider_time: Duration::ZERO,
            provider_failures: Vec::new(),
        }
    }

    /// Adds a line to the transcript; false when the transcript is full (the line is
    /// counted, not kept, and should not be shown either).
    fn record(&mut self, line: String) -> bool {
        tracing::info!(target: "courier::operator", "{line}");
        if self.transcript.len() < self.policy.limits.transcript_lines {
            self.transcript.push(line);
            true
        } else {
            self.dropped_lines += 1;
            false
        }
    }

    /// Records a line and shows it on the console (a question answered, a command run).
    fn note(&mut self, line: String) {
        if self.record(line.clone()) {
            self.console.note(&line);
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

    /// Moves the deadline the run's outer timeout watches.
    fn set_shared_deadline(&self, at: Instant) {
        *self
            .shared_deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = at;
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
        let timeout = self.policy.limits.provider_timeout.min(left);
        let result = self
            .pool
            .call(
                &self.target,
                &method,
                payload,
                timeout,
                self.policy.limits.provider_reply_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_is_escaped_and_clipped() {
        assert_eq!(printable("a\nb\u{1b}"), "a\\nb\\u{1b}");
        assert_eq!(printable("it's \"ok\" \u{202e}x"), "it's \"ok\" \\u{202e}x");
        assert_eq!(displayable("two\nlines\r\u{7}"), "two\nlines\\r\\u{7}");
        assert!(printable(&"é".repeat(2000)).len() <= MAX_MESSAGE + 4);
    }
}
