//! The operator console of `courier call`: the proxy's messages, the answers to its
//! questions and the commands it ran as `[operator]` lines as they happen, its yes/no
//! questions on the terminal, and its progress as a bar (indicatif) on stderr, or as
//! plain lines (at most one per tenth of the way, and one per new message) when stderr is
//! not a terminal, so a log stays short. Everything goes to stderr: stdout carries only the
//! proxy's answer.

use courier_client::{OperatorConsole, ask_terminal, ask_terminal_as};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

/// The console; the bar is made at the first progress report.
#[derive(Debug)]
pub struct CliConsole {
    bar: Mutex<Option<ProgressBar>>,
    /// Whether stderr is a terminal (a bar) or not (plain lines).
    terminal: bool,
    /// The last plain progress line printed: its message and tenth of the way.
    last_plain: Mutex<Option<(String, u64)>>,
}

impl CliConsole {
    /// A console for this process's terminal.
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
            last_plain: Mutex::new(None),
        }
    }

    /// Runs `f` with the bar (if any) cleared from the screen, so a line or a question is
    /// not drawn over.
    fn above_bar<T>(&self, f: impl FnOnce() -> T) -> T {
        let bar = self.bar.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Ends the bar, leaving its last state on the screen.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish();
        }
    }

    fn plain(&self, done: u32, total: u32, message: &str) {
        let mut last = self.last_plain.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(step) = plain_step(last.as_ref(), done, total, message) {
            eprintln!("[progress] {done}/{total} {message}");
            *last = Some(step);
        }
    }
}

/// The plain-line step of a progress report (its message and tenth of the way), if it is
/// not the step of the last line printed.
fn plain_step(
    last: Option<&(String, u64)>,
    done: u32,
    total: u32,
    message: &str,
) -> Option<(String, u64)> {
    let tenth = match total {
        0 => 0,
        _ => u64::from(done.min(total)) * 10 / u64::from(total),
    };
    let same = last.is_some_and(|(m, t)| m == message && *t == tenth);
    (!same).then(|| (message.to_string(), tenth))
}

impl OperatorConsole for CliConsole {
    fn attended(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn confirm(&self, question: &str) -> bool {
        self.above_bar(|| ask_terminal(question))
    }

    fn confirm_for_client(&self, question: &str) -> bool {
        self.above_bar(|| ask_terminal_as("courier asks", question))
    }

    fn display(&self, message: &str) {
        self.above_bar(|| eprintln!("[operator] {message}"));
    }

    fn note(&self, line: &str) {
        self.above_bar(|| eprintln!("[operator] {line}"));
    }

    fn progress(&self, done: u32, total: u32, message: &str) {
        if !self.terminal {
            return self.plain(done, total, message);
        }
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        let bar = slot.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        bar.set_length(u64::from(total));
        bar.set_position(u64::from(done));
        bar.set_message(message.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_prints_a_line_per_tenth_and_per_message() {
        let mut last = None;
        let mut printed = 0;
        for done in 0..=1000 {
            let message = if done < 500 { "hello-1.1" } else { "hello-2" };
            if let Some(step) = plain_step(last.as_ref(), done, 1000, message) {
                printed += 1;
                last = Some(step);
            }
        }
        // 0..4 tenths of the first, 5..10 of the second.
        assert_eq!(printed, 11);
        assert!(plain_step(None, 5, 0, "unknown total").is_some());
    }
}
