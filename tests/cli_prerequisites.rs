//! The README's prerequisites walkthrough as a new user runs it, each command a process:
//! the example providers of `examples/install-catalog` are served by `courier provider run
//! install` and published with the lines they print; a call of the greeter, whose predicate
//! misses `acme:fonts/glyphs`, is declined without `--yes` and installs the glyphs first
//! with it; `courier updates check` lists the ledger, a newer glyphs installer is offered
//! and `courier updates apply --yes` puts it in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Killed, ServedRegistry, courier, generate_key, lines_of, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

fn catalog(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/install-catalog")
        .join(name)
}

#[test]
fn a_missing_prerequisite_is_installed_first_and_updated_later() {
    let dir = tempfile::tempdir().unwrap();
    let registry = ServedRegistry::start(&dir.path().join("registry"), &[]);
    let key_path = dir.path().join("vendor.key");
    let vendor = generate_key(&key_path);
    let mut kept = Vec::new();
    // Serves a catalog folder and publishes its proxy with the line the provider prints.
    let mut serve_and_publish = |folder: &str| {
        let mut p = courier();
        p.args(["provider", "run", "install", "--from"])
            .arg(catalog(folder))
            .arg("--data-dir")
            .arg(dir.path().join(folder))
            .stdout(Stdio::piped());
        let mut p = p.spawn().unwrap();
        let lines = lines_of(&mut p);
        kept.push(Killed(p));
        let line = wait_for(&lines, "courier publish");
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let mut publish = courier();
        registry.env(&mut publish);
        publish
            .args(&args)
            .arg("--key")
            .arg(&key_path)
            .stdout(Stdio::piped());
        let mut publish = publish.spawn().unwrap();
        let lines = lines_of(&mut publish);
        kept.push(Killed(publish));
        wait_for(&lines, "registered");
        line
    };
    let line = serve_and_publish("greeter");
    assert!(
        line.contains("echo-needs.wasm --name example/greeter"),
        "{line}"
    );
    let line = serve_and_publish("glyphs");
    assert!(
        line.contains("--name example/glyphs --version 1.4.0 --attr provides=acme:fonts/glyphs"),
        "{line}"
    );

    let managed = dir.path().join("managed");
    std::fs::create_dir(&managed).unwrap();
    let state = dir.path().join("client");
    let client = |args: &[&str]| -> Output {
        let mut c = courier();
        registry.env(&mut c);
        c.args(args)
            .args(["--trust", &vendor, "--dir"])
            .arg(&managed)
            .arg("--state-dir")
            .arg(&state);
        c.output().unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let say = r#"courier:echo/echo.say("hi")"#;

    // Unattended without --yes: the install is declined, nothing is installed.
    let out = client(&["call", say]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("declined: example/greeter 0.1.0 -> acme:fonts/glyphs ^1"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&managed).unwrap().count(), 0);

    let out = client(&["call", "--yes", say]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout).trim(), r#"ok("echo: hi")"#);
    assert!(
        stderr.contains(
            "installed acme:fonts/glyphs ^1 with example/glyphs 1.4.0 first: \
             installed acme:fonts/glyphs 1.4.0 (1 files)"
        ),
        "{stderr}"
    );
    let glyphs = managed.join("acme.fonts.glyphs/share/glyphs.txt");
    assert_eq!(
        std::fs::read_to_string(&glyphs).unwrap(),
        std::fs::read_to_string(catalog("glyphs").join("files/share/glyphs.txt")).unwrap()
    );
    // In place now: the next call installs nothing.
    let out = client(&["call", say]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("installed"));

    let out = client(&["updates", "check"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("everything is up to date"), "{stdout}");
    assert!(
        stdout.contains("acme:fonts/glyphs") && stdout.contains("example/greeter 0.1.0"),
        "{stdout}"
    );

    serve_and_publish("glyphs-1.5");
    let out = client(&["updates", "check", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["installed"][0]["version"], "1.4.0", "{json}");
    assert_eq!(json["installed"][0]["offered"], "1.5.0", "{json}");
    let out = client(&["updates", "apply", "--yes"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("updated acme:fonts/glyphs 1.4.0 -> 1.5.0"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&glyphs).unwrap(),
        std::fs::read_to_string(catalog("glyphs-1.5").join("files/share/glyphs.txt")).unwrap()
    );
    let out = client(&["updates", "check"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1.5.0") && stdout.contains("everything is up to date"),
        "{stdout}"
    );
}
