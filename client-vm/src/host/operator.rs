//! The operator channel: `courier:proxy/operator` (messages, yes/no questions, progress)
//! and the confirmations lent commands need, answered by a person through an
//! [`OperatorConsole`] or by the policy when unattended.
//!
//! Time spent waiting for a person counts against neither the CPU nor the wall-clock budget
//! of the run: the run's shared deadline is lifted while the question is open (for at most
//! [`PERSON_WAIT`]) and moved later by the time it took once answered.

use super::{HostCtx, displayable, printable};
use crate::policy::{OperatorAnswer, OperatorMode};
use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a question waits for a person before the run's own deadline applies again.
pub const PERSON_WAIT: Duration = Duration::from_secs(3600);

/// Where the operator's messages, questions and progress go when a person may see them.
/// Text handed to a console is already escaped (no control characters) and clipped.
pub trait OperatorConsole: Send + Sync + fmt::Debug {
    /// Whether a person can answer now (e.g. stdin is a terminal). When not, questions are
    /// answered by the policy's fallback.
    fn attended(&self) -> bool;
    /// Asks a yes/no question and waits for the answer. Called on the blocking pool.
    fn confirm(&self, question: &str) -> bool;
    /// Shows a message.
    fn display(&self, message: &str);
    /// Shows progress of a long task (`total` 0 when unknown).
    fn progress(&self, done: u32, total: u32, message: &str);
    /// Asks a yes/no question of the client's own (not a proxy's: e.g. whether to run an
    /// installer) and waits for the answer. Called on the blocking pool. By default the
    /// same as [`confirm`](Self::confirm).
    fn confirm_for_client(&self, question: &str) -> bool {
        self.confirm(question)
    }
    /// Shows a line of the run's record as it happens: a question and who answered it, a
    /// lent command and how it ended, or why it was refused. Nothing by default.
    fn note(&self, _line: &str) {}
}

/// The default console: questions on the process's terminal (stderr, then a line of
/// stdin); messages and progress only in the run's transcript and the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct TerminalConsole;

impl OperatorConsole for TerminalConsole {
    fn attended(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn confirm(&self, question: &str) -> bool {
        ask_terminal(question)
    }

    fn confirm_for_client(&self, question: &str) -> bool {
        ask_terminal_as("courier asks", question)
    }

    fn display(&self, _message: &str) {}

    fn progress(&self, _done: u32, _total: u32, _message: &str) {}
}

/// Asks on the terminal (stderr for the question, stdin for the answer); anything but a
/// yes is a no.
pub fn ask_terminal(question: &str) -> bool {
    ask_terminal_as("proxy asks", question)
}

/// Asks on the terminal as [`ask_terminal`] does, the question introduced by `who`
/// (`proxy asks`, `courier asks`).
pub fn ask_terminal_as(who: &str, question: &str) -> bool {
    use std::io::Write;
    let mut err = std::io::stderr();
    let _ = write!(err, "{who}: {question} [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// The policy's answer when no person is asked; `None` when a person must be asked.
pub(crate) fn fixed_answer(mode: OperatorMode, console: &dyn OperatorConsole) -> Option<bool> {
    let fixed = |a: OperatorAnswer| a == OperatorAnswer::ApproveAll;
    match mode {
        OperatorMode::Unattended(a) => Some(fixed(a)),
        OperatorMode::Terminal { fallback } => {
            if console.attended() {
                None
            } else {
                Some(fixed(fallback))
            }
        }
    }
}

/// Asks `question` (already printable) outside any run, for the client itself (e.g. before
/// an installer runs): the policy answers, or a person through `console`. The answer is
/// noted on the console with who gave it.
pub(crate) async fn confirm_outside_run(
    mode: OperatorMode,
    console: &Arc<dyn OperatorConsole>,
    question: &str,
) -> bool {
    let (answer, who) = match fixed_answer(mode, console.as_ref()) {
        Some(a) => (a, "policy"),
        None => {
            let (c, q) = (Arc::clone(console), question.to_string());
            let a = tokio::task::spawn_blocking(move || c.confirm_for_client(&q))
                .await
                .unwrap_or(false);
            (a, "operator")
        }
    };
    console.note(&format!(
        "confirm: {question} -> {} ({who})",
        yes_no(answer)
    ));
    answer
}

impl HostCtx {
    /// The policy's answer when no person is asked; `None` when a person must be asked.
    fn fixed_answer(&self) -> Option<bool> {
        fixed_answer(self.policy.operator, self.console.as_ref())
    }

    /// Asks the operator `question` (already printable): the policy answers, or a person
    /// through the console. Recorded in the transcript with who answered.
    pub(super) async fn ask(&mut self, question: &str) -> bool {
        if let Some(a) = self.fixed_answer() {
            self.note(format!("confirm: {question} -> {} (policy)", yes_no(a)));
            return a;
        }
        let started = Instant::now();
        self.set_shared_deadline(started + PERSON_WAIT);
        let (console, q) = (Arc::clone(&self.console), question.to_string());
        let a = tokio::task::spawn_blocking(move || console.confirm(&q))
            .await
            .unwrap_or(false);
        // Time spent waiting for a person counts against neither deadline.
        let waited = started.elapsed();
        self.host_time += waited;
        self.wall_deadline += waited;
        self.set_shared_deadline(self.wall_deadline);
        self.note(format!("confirm: {question} -> {} (operator)", yes_no(a)));
        a
    }
}

impl super::bindings::courier::proxy::operator::Host for HostCtx {
    fn display(&mut self, message: String) {
        let message = displayable(&message);
        if self.record(format!("display: {message}")) {
            self.console.display(&message);
        }
    }

    async fn confirm(&mut self, question: String) -> bool {
        let question = printable(&question);
        self.ask(&question).await
    }

    fn progress(&mut self, done: u32, total: u32, message: String) {
        let message = printable(&message);
        // The console shows progress however often it comes (a bar, or a few lines); the
        // transcript keeps what fits.
        self.console.progress(done, total, &message);
        self.record(format!("progress: {done}/{total} {message}"));
    }
}

fn yes_no(a: bool) -> &'static str {
    if a { "yes" } else { "no" }
}
