//! `courier:proxy/commands`: the commands the policy lends by name.
//!
//! `run(name, args)` refuses a name the policy does not lend and arguments of a kind it does
//! not allow, asks the operator when the command needs confirming (the same channel as
//! `operator.confirm`), then runs the policy's argv with the arguments appended: no shell,
//! an empty environment but a minimal `PATH`, stdin closed, in `/`, in a process group of
//! its own. The end of stdout and of stderr is kept (the policy's cap each). When the
//! command's timeout (bounded by the run's wall time left) passes, or the run itself is
//! dropped, the whole process group is killed. The child is waited for on the blocking
//! pool and its pipes are read asynchronously, so no async worker ever blocks.

use super::{HostCtx, printable};
use crate::policy::{ArgRefusal, LentCommand};
use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

use super::bindings::courier::proxy::commands::{self, Output};

/// The only environment a lent command gets.
pub const MINIMAL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long the pipes are still read after the command ended or was killed (a grandchild
/// that left the process group may hold them open).
const DRAIN: Duration = Duration::from_millis(500);

/// Why a lent command did not run.
#[derive(Debug, thiserror::Error)]
pub enum CommandRefusal {
    /// The policy lends no command of that name.
    #[error("command {0} is not lent by the policy")]
    NotLent(String),
    /// The arguments are not of the kind the policy allows.
    #[error(transparent)]
    Args(#[from] ArgRefusal),
    /// The operator (or the policy's unattended answer) declined.
    #[error("the operator declined to run {0}")]
    Declined(String),
    /// The run has no time left for it.
    #[error("no time left in this run to start {0}")]
    NoTime(String),
    /// The program could not be started.
    #[error("command {name} could not start: {error}")]
    Spawn {
        /// The command.
        name: String,
        /// Why.
        error: std::io::Error,
    },
}

/// What a finished (or killed) command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Its exit status, -1 when a signal ended it or its time ran out.
    pub status: i32,
    /// Whether its time ran out.
    pub timed_out: bool,
    /// The end of its stdout.
    pub stdout: String,
    /// The end of its stderr.
    pub stderr: String,
}

impl commands::Host for HostCtx {
    fn names(&mut self) -> Vec<String> {
        self.policy
            .commands
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    async fn run(&mut self, name: String, args: Vec<String>) -> Result<Output, String> {
        let started = Instant::now();
        let result = self.run_lent(&name, &args).await;
        self.host_time += started.elapsed();
        match result {
            Ok(out) => Ok(Output {
                status: out.status,
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Err(refusal) => {
                let text = refusal.to_string();
                self.note(format!("command refused: {text}"));
                tracing::warn!(target: "courier::operator", "{text}");
                Err(text)
            }
        }
    }
}

impl HostCtx {
    /// Checks, confirms and runs the lent command `name` with `args`.
    async fn run_lent(
        &mut self,
        name: &str,
        args: &[String],
    ) -> Result<CommandOutput, CommandRefusal> {
        let policy = Arc::clone(&self.policy);
        let command = policy
            .command(name)
            .ok_or_else(|| CommandRefusal::NotLent(printable(name)))?;
        command.check_args(args)?;
        let line = format!("{} {}", command.argv.join(" "), args.join(" "));
        let line = printable(line.trim_end());
        if command.confirm && !self.ask(&format!("run {name}: {line}?")).await {
            return Err(CommandRefusal::Declined(name.to_string()));
        }
        let left = self.wall_deadline.saturating_duration_since(Instant::now());
        let timeout = command.timeout.min(left);
        if timeout.is_zero() {
            return Err(CommandRefusal::NoTime(name.to_string()));
        }
        let started = Instant::now();
        let out = run_command(command, args, timeout, policy.limits.command_output_bytes).await?;
        let took = started.elapsed();
        let ended = if out.timed_out {
            format!("killed after {timeout:?} (timeout)")
        } else {
            format!("exit {}", out.status)
        };
        self.note(format!("command: {line} -> {ended} in {took:.1?}"));
        Ok(out)
    }
}

/// Runs `command` with `args` appended, for at most `timeout`, keeping the last `cap` bytes
/// of stdout and of stderr.
pub(crate) async fn run_command(
    command: &LentCommand,
    args: &[String],
    timeout: Duration,
    cap: usize,
) -> Result<CommandOutput, CommandRefusal> {
    let spawn_error = |error| CommandRefusal::Spawn {
        name: command.name.clone(),
        error,
    };
    let mut child = Command::new(&command.argv[0])
        .args(&command.argv[1..])
        .args(args)
        .env_clear()
        .env("PATH", MINIMAL_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(spawn_error)?;
    let group = ProcessGroup::new(child.id());
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    let reaped = Arc::clone(&group.reaped);
    let mut wait = tokio::task::spawn_blocking(move || {
        let status = child.wait();
        reaped.store(true, Ordering::SeqCst);
        status
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = {
        // The pipes are read while the command runs (a full pipe would stall it).
        let reading = async {
            tokio::join!(
                read_tail(stdout, cap, &mut out),
                read_tail(stderr, cap, &mut err)
            )
        };
        let mut reading = std::pin::pin!(reading);
        let mut read_all = false;
        let deadline = tokio::time::Instant::now() + timeout;
        let status = loop {
            tokio::select! {
                joined = &mut wait => break joined.ok().and_then(Result::ok),
                _ = &mut reading, if !read_all => read_all = true,
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        // Whatever is left of the group goes: on timeout the command itself, otherwise
        // what it left behind in its group.
        group.kill();
        if status.is_none() {
            // Killed: reaped promptly.
            let _ = tokio::time::timeout(DRAIN, &mut wait).await;
        }
        if !read_all {
            let _ = tokio::time::timeout(DRAIN, &mut reading).await;
        }
        status
    };
    let timed_out = status.is_none();
    let code = status
        .and_then(|s| s.code().or(s.signal().map(|_| -1)))
        .unwrap_or(-1);
    Ok(CommandOutput {
        status: code,
        timed_out,
        stdout: tail_text(out, cap),
        stderr: tail_text(err, cap),
    })
}

/// Reads `pipe` to its end into `kept`, keeping at least its last `cap` bytes; a read
/// error ends it. Dropped part way, `kept` holds what was read.
async fn read_tail(pipe: Option<OwnedFd>, cap: usize, kept: &mut Vec<u8>) {
    let Some(fd) = pipe else { return };
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > cap.saturating_mul(2).max(buf.len()) {
                    kept.drain(..kept.len() - cap);
                }
            }
        }
    }
}

/// The last `cap` bytes of `bytes`, as lossy UTF-8.
fn tail_text(mut bytes: Vec<u8>, cap: usize) -> String {
    if bytes.len() > cap {
        bytes.drain(..bytes.len() - cap);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A command's process group: killed when asked, and when dropped (the run that started
/// it was dropped at its deadline), so no command outlives its run.
struct ProcessGroup {
    pid: Option<Pid>,
    /// Set once the leader is reaped: from then on only the group is signalled.
    reaped: Arc<AtomicBool>,
}

impl ProcessGroup {
    fn new(id: u32) -> Self {
        Self {
            pid: i32::try_from(id).ok().and_then(Pid::from_raw),
            reaped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// SIGKILL to the leader (while it is not reaped, so its pid is still its own) and to
    /// every process left in its group.
    fn kill(&self) {
        let Some(pid) = self.pid else { return };
        if !self.reaped.load(Ordering::SeqCst) {
            let _ = kill_process(pid, Signal::KILL);
        }
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::ExtraArgs;

    fn sh(script: &str, timeout: Duration) -> LentCommand {
        LentCommand {
            name: "t".into(),
            argv: vec!["sh".into(), "-c".into(), script.into(), "sh".into()],
            extra_args: ExtraArgs::PackageNames,
            timeout,
            confirm: false,
        }
    }

    #[tokio::test]
    async fn output_ends_are_kept_and_the_environment_is_minimal() {
        let c = sh(
            "env; echo args \"$@\"; seq 1 20000 >&2; exit 3",
            Duration::from_secs(10),
        );
        let out = run_command(&c, &["bash".into()], c.timeout, 64)
            .await
            .unwrap();
        assert_eq!(out.status, 3);
        assert!(!out.timed_out);
        assert!(
            out.stdout.contains(&format!("PATH={MINIMAL_PATH}")),
            "{}",
            out.stdout
        );
        assert!(!out.stdout.contains("HOME="), "{}", out.stdout);
        assert!(out.stdout.contains("args bash"), "{}", out.stdout);
        assert!(out.stderr.ends_with("19999\n20000\n"), "{}", out.stderr);
        assert!(out.stderr.len() <= 64);
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        // A child in the background that would write the marker after 0.3 s.
        let script = format!("(sleep 0.3; touch {}) & sleep 30", marker.display());
        let c = sh(&script, Duration::from_millis(100));
        let started = Instant::now();
        let out = run_command(&c, &[], c.timeout, 1024).await.unwrap();
        assert!(out.timed_out);
        assert_eq!(out.status, -1);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !marker.exists(),
            "a process of the group survived the timeout"
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_refusal() {
        let mut c = sh("", Duration::from_secs(1));
        c.argv = vec!["/nonexistent/courier-test-program".into()];
        let err = run_command(&c, &[], c.timeout, 64).await.unwrap_err();
        assert!(matches!(err, CommandRefusal::Spawn { .. }), "{err}");
    }
}
