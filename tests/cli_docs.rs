//! Shell completions and manual pages, generated from the clap grammar: they name the real
//! commands, bash's completes them, and `man --dir` writes a page per subcommand. A reader
//! that stops early (`courier man | head`) ends the command as it ends any Unix tool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{courier, run_ok};
use std::process::Command;

/// Commands every generated text must know about.
const COMMANDS: [&str; 6] = ["registry", "publish", "call", "leases", "provider", "man"];

#[test]
fn completions_name_the_real_commands_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let script = run_ok(courier().args(["completions", shell]));
        for command in COMMANDS {
            assert!(script.contains(command), "{shell} script lacks {command}");
        }
    }
    let out = courier().args(["completions", "tcsh"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn bash_completes_commands_and_example_services() {
    let script = run_ok(courier().args(["completions", "bash"]));
    // Sourced from a file: the script is longer than one argument may be (128 KiB).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("courier.bash");
    std::fs::write(&file, &script).unwrap();
    // Load the script, then ask it as bash would after `courier p<TAB>` and after
    // `courier provider run <TAB>`.
    let complete = |words: &str, current: usize| {
        let program = format!(
            "source '{}'\nCOMP_WORDS=({words}); COMP_CWORD={current}; \
             _courier courier \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let commands = complete("courier p", 1);
    assert_eq!(
        commands.split_whitespace().collect::<Vec<_>>(),
        ["publish", "provider"]
    );
    let services = complete("courier provider run ''", 3);
    let services: Vec<&str> = services.split_whitespace().collect();
    assert!(
        services.contains(&"echo") && services.contains(&"kv"),
        "{services:?}"
    );
}

#[test]
fn the_manual_page_lists_the_commands() {
    let page = run_ok(courier().arg("man"));
    assert!(page.contains(".TH courier 1"), "{page}");
    for command in COMMANDS {
        assert!(
            page.contains(&format!("courier\\-{command}(1)")),
            "no {command}"
        );
    }
}

#[test]
fn man_dir_writes_a_page_per_subcommand_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        courier()
            .args(["man", "--dir"])
            .arg(dir.path().join("man1")),
    );
    assert!(out.contains("manual pages written"), "{out}");
    let page = |name: &str| std::fs::read_to_string(dir.path().join("man1").join(name)).unwrap();
    assert!(page("courier.1").contains(".TH courier 1"));
    let serve = page("courier-registry-serve.1");
    assert!(serve.contains(".TH courier-registry-serve 1"), "{serve}");
    // Options with their environment variables.
    assert!(serve.contains("COURIER_DATA_DIR"), "{serve}");
    assert!(page("courier-provider-run.1").contains("\\-\\-data\\-dir"));
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // `courier man | head -0`: the reader has closed the pipe before the command writes.
    let mut child = courier()
        .arg("man")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {stderr}");
    assert!(stderr.is_empty(), "nothing said about the pipe: {stderr}");
}
