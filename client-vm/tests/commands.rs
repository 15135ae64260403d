//! `courier:proxy/commands` against a proxy that tries whatever its test asks
//! (`commands-probe`): only lent commands run, only with arguments of the allowed kind, after
//! the operator's confirmation when the policy asks for one, and never past their timeout
//! or the run's wall time; `commands` is not even linked when nothing is lent.
#![allow(clippy::unwrap_used)]

mod common;

use common::{nowhere, run, sandbox};
use courier_client::{
    Answer, CompileError, ExtraArgs, LentCommand, MissingReason, OperatorAnswer, OperatorConsole,
    OperatorMode, Policy, RunError, Sandbox, SandboxConfig,
};
use courier_proxy_artifacts as artifacts;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `say` call of the probe, its message quoted for WAVE.
fn say(message: &str) -> String {
    format!("courier:echo/echo.say({message:?})")
}

/// A lent `sh -c SCRIPT` whose extra arguments are `$1`, `$2`, ...
fn sh(name: &str, script: &str, extra: ExtraArgs, timeout: Duration) -> LentCommand {
    LentCommand {
        name: name.into(),
        argv: vec!["sh".into(), "-c".into(), script.into(), "sh".into()],
        extra_args: extra,
        timeout,
        confirm: false,
    }
}

fn lending(commands: Vec<LentCommand>, answer: OperatorAnswer) -> Policy {
    Policy {
        commands,
        operator: OperatorMode::Unattended(answer),
        ..Policy::default()
    }
}

/// A command that records its arguments in `marker` (so a test sees whether it ran).
fn recorder(marker: &Path, extra: ExtraArgs) -> LentCommand {
    let script = format!("echo \"$@\" > {}; echo ran \"$@\"", marker.display());
    sh("record", &script, extra, Duration::from_secs(10))
}

async fn answer(sb: &Sandbox, message: &str) -> Answer {
    run(sb, artifacts::COMMANDS_PROBE, nowhere(), &say(message))
        .await
        .unwrap()
        .answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_not_granted_when_nothing_is_lent() {
    let sb = sandbox(Policy::permissive(OperatorAnswer::ApproveAll));
    let err = sb
        .compile(Arc::from(artifacts::COMMANDS_PROBE))
        .await
        .unwrap_err();
    let CompileError::NotGranted(missing) = err else {
        panic!("expected NotGranted, got {err}");
    };
    assert_eq!(missing.names(), ["courier:proxy/commands@0.1.0"]);
    assert_eq!(missing.missing[0].reason, MissingReason::NotGranted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lent_command_runs_with_package_names_and_names_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("args");
    let policy = lending(
        vec![
            recorder(&marker, ExtraArgs::PackageNames),
            sh("fixed", "exit 7", ExtraArgs::None, Duration::from_secs(5)),
        ],
        OperatorAnswer::DenyAll,
    );
    let sb = sandbox(policy);
    assert_eq!(
        answer(&sb, "names").await,
        Answer::Ok(r#"ok("record,fixed")"#.into())
    );
    let out = run(
        &sb,
        artifacts::COMMANDS_PROBE,
        nowhere(),
        &say("record|bash|libc6|g++"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.answer,
        Answer::Ok(r#"ok("status=0\nstdout=ran bash libc6 g++\n\nstderr=")"#.into())
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "bash libc6 g++\n"
    );
    assert!(
        out.logs
            .transcript
            .iter()
            .any(|l| l.starts_with("command: sh -c") && l.contains("exit 0")),
        "{:?}",
        out.logs.transcript
    );
    assert_eq!(
        answer(&sb, "fixed").await,
        Answer::Ok(r#"ok("status=7\nstdout=\nstderr=")"#.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_arguments_are_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("args");
    let policy = lending(
        vec![
            recorder(&marker, ExtraArgs::PackageNames),
            sh("fixed", "true", ExtraArgs::None, Duration::from_secs(5)),
        ],
        OperatorAnswer::ApproveAll,
    );
    let sb = sandbox(policy);
    let refused = |answer: Answer, why: &str| match answer {
        Answer::ProxyError(text) => assert!(text.contains(why), "{text} lacks {why}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    for name in ["rm", "sh", "/bin/sh", "record ", "RECORD", ""] {
        refused(answer(&sb, name).await, "is not lent");
    }
    for args in [
        ";rm -rf /",
        "/etc/passwd",
        "--foo",
        "-o",
        "bash;id",
        "$(id)",
        "`id`",
        "a b",
        "../../etc",
        "bash=1.0",
    ] {
        refused(
            answer(&sb, &format!("record|bash|{args}")).await,
            "argument 1",
        );
    }
    refused(answer(&sb, "fixed|bash").await, "takes no arguments");
    assert!(!marker.exists(), "a refused command ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_needing_confirmation_runs_only_when_the_operator_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("args");
    let mut confirmed = recorder(&marker, ExtraArgs::None);
    confirmed.confirm = true;
    let denied = sandbox(lending(vec![confirmed.clone()], OperatorAnswer::DenyAll));
    let out = run(
        &denied,
        artifacts::COMMANDS_PROBE,
        nowhere(),
        &say("record"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.answer,
        Answer::ProxyError(r#"err("the operator declined to run record")"#.into())
    );
    assert!(!marker.exists());
    assert!(out.logs.transcript[0].starts_with("confirm: run record: sh -c"));
    assert!(out.logs.transcript[0].ends_with("-> no (policy)"));
    let approved = sandbox(lending(vec![confirmed], OperatorAnswer::ApproveAll));
    assert!(matches!(answer(&approved, "record").await, Answer::Ok(_)));
    assert!(marker.exists());
}

/// A person at a terminal who takes `delay` to say yes to every question, and what the
/// console showed them.
#[derive(Debug, Default)]
struct SlowPerson {
    delay: Duration,
    asked: Mutex<Vec<String>>,
    notes: Mutex<Vec<String>>,
}

impl OperatorConsole for SlowPerson {
    fn attended(&self) -> bool {
        true
    }
    fn confirm(&self, question: &str) -> bool {
        std::thread::sleep(self.delay);
        self.asked.lock().unwrap().push(question.to_string());
        true
    }
    fn display(&self, _: &str) {}
    fn progress(&self, _: u32, _: u32, _: &str) {}
    fn note(&self, line: &str) {
        self.notes.lock().unwrap().push(line.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_asked_through_the_console_and_their_time_is_not_the_runs() {
    let person = Arc::new(SlowPerson {
        delay: Duration::from_millis(700),
        ..SlowPerson::default()
    });
    let mut lent = sh("fixed", "true", ExtraArgs::None, Duration::from_secs(5));
    lent.confirm = true;
    let mut policy = lending(vec![lent], OperatorAnswer::DenyAll);
    policy.operator = OperatorMode::Terminal {
        fallback: OperatorAnswer::DenyAll,
    };
    policy.limits.wall_time = Duration::from_millis(400);
    let config = SandboxConfig {
        console: person.clone(),
        ..SandboxConfig::default()
    };
    let sb = Sandbox::new(policy, config).unwrap();
    // Compiled first: the run's wall time starts at instantiation.
    common::compile(&sb, artifacts::COMMANDS_PROBE).await;
    let out = run(&sb, artifacts::COMMANDS_PROBE, nowhere(), &say("fixed"))
        .await
        .unwrap();
    assert_eq!(
        out.answer,
        Answer::Ok(r#"ok("status=0\nstdout=\nstderr=")"#.into())
    );
    assert_eq!(*person.asked.lock().unwrap(), ["run fixed: sh -c true sh?"]);
    assert!(out.logs.transcript[0].ends_with("-> yes (operator)"));
    // The console was shown the answer and the command as they happened.
    let notes = person.notes.lock().unwrap().clone();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[1].starts_with("command: sh -c true sh -> exit 0"),
        "{notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_commands_shows_no_more_than_the_transcript_keeps() {
    let person = Arc::new(SlowPerson::default());
    let mut policy = lending(
        vec![sh("fixed", "true", ExtraArgs::None, Duration::from_secs(5))],
        OperatorAnswer::DenyAll,
    );
    policy.limits.transcript_lines = 3;
    let config = SandboxConfig {
        console: person.clone(),
        ..SandboxConfig::default()
    };
    let sb = Sandbox::new(policy, config).unwrap();
    let out = run(
        &sb,
        artifacts::COMMANDS_PROBE,
        nowhere(),
        &say("repeat:20:fixed"),
    )
    .await
    .unwrap();
    assert_eq!(
        out.answer,
        Answer::Ok(format!("ok({:?})", vec!["0"; 20].join(",")))
    );
    assert_eq!(
        (out.logs.transcript.len(), out.logs.dropped_transcript),
        (3, 17)
    );
    assert_eq!(person.notes.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_cannot_escape_its_timeout_nor_the_runs_wall_time() {
    let sleepy = sh(
        "sleepy",
        "sleep 30",
        ExtraArgs::None,
        Duration::from_millis(200),
    );
    let sb = sandbox(lending(vec![sleepy], OperatorAnswer::DenyAll));
    let started = Instant::now();
    assert_eq!(
        answer(&sb, "sleepy").await,
        Answer::Ok(r#"ok("status=-1\nstdout=\nstderr=")"#.into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A long timeout is cut to the run's wall time; calling it again and again does not
    // stretch the run.
    let patient = sh(
        "patient",
        "sleep 30",
        ExtraArgs::None,
        Duration::from_secs(60),
    );
    let mut policy = lending(vec![patient], OperatorAnswer::DenyAll);
    policy.limits.wall_time = Duration::from_millis(500);
    let sb = sandbox(policy);
    common::compile(&sb, artifacts::COMMANDS_PROBE).await;
    let started = Instant::now();
    let result = run(
        &sb,
        artifacts::COMMANDS_PROBE,
        nowhere(),
        &say("repeat:100:patient"),
    )
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    match result {
        Err(failure) => assert!(
            matches!(failure.error, RunError::WallDeadline { .. }),
            "{}",
            failure.error
        ),
        Ok(out) => assert!(
            matches!(out.answer, Answer::ProxyError(_)),
            "{:?}",
            out.answer
        ),
    }
}
