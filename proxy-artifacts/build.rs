//! Builds the guest workspace `proxies/` for `wasm32-wasip2` (one component per member) into
//! `<target>/proxies`, and copies the components into `OUT_DIR` for `include_bytes!`.
//!
//! The guests are built by a separate `cargo build --release` with its own target dir, so the
//! host build's flags, profile settings and compiler wrappers (clippy) never leak into them.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The guests' compilation target.
const WASM_TARGET: &str = "wasm32-wasip2";

/// The one line shown when the target is missing and cannot be installed.
const MISSING_TARGET: &str =
    "courier needs the wasm32-wasip2 target: run rustup target add wasm32-wasip2";

/// Environment variables of the host build that must not reach the guest build.
const LEAKY_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_TARGET",
    // `cargo clippy` (and `cargo fix`) run build scripts with these set; the guests must be
    // compiled by plain rustc, not linted.
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
];

/// Why the build script failed.
enum Failure {
    /// A one-line diagnosis (e.g. the missing target): nothing else is worth showing.
    Line(String),
    /// The guest build failed: its compiler output (on our stderr) must be shown too.
    GuestBuild(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Line(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::Line(message.to_owned())
    }
}

fn main() {
    match run() {
        Ok(()) => {}
        // `cargo::error` fails the build with exactly this line, hiding our stderr.
        Err(Failure::Line(message)) => println!("cargo::error={message}"),
        // A failing exit status makes cargo show our stderr: the guests' compiler errors.
        Err(Failure::GuestBuild(message)) => {
            println!("cargo::error={message}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<(), Failure> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("proxy-artifacts has no parent directory")?
        .to_path_buf();
    let proxies = root.join("proxies");
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target_dir = cargo_target_dir(&out_dir).join("proxies");
    let release_dir = target_dir.join(WASM_TARGET).join("release");

    let members = members(&proxies)?;
    emit_rerun_if_changed(&root, &proxies, &members)?;
    ensure_wasm_target()?;
    build_guests(&proxies, &target_dir)?;

    for member in &members {
        let file = format!("{}.wasm", member.replace('-', "_"));
        let built = release_dir.join(&file);
        fs::copy(&built, out_dir.join(&file))
            .map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    }
    println!(
        "cargo::rustc-env=COURIER_PROXIES_DIR={}",
        release_dir.display()
    );
    println!("cargo::rustc-env=COURIER_PROXY_NAMES={}", members.join(","));
    Ok(())
}

/// An environment variable cargo sets for build scripts.
fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (not run by cargo?)"))
}

/// The guest crates: the subdirectories of `proxies/` that hold a `Cargo.toml`, sorted.
fn members(proxies: &Path) -> Result<Vec<String>, String> {
    let entries =
        fs::read_dir(proxies).map_err(|e| format!("cannot read {}: {e}", proxies.display()))?;
    let mut members = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", proxies.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "target" && entry.path().join("Cargo.toml").is_file() {
            members.push(name);
        }
    }
    members.sort();
    Ok(members)
}

/// The target dir of the running build. `OUT_DIR` is
/// `<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`; the target dir is the one holding
/// cargo's `CACHEDIR.TAG`. An absolute `CARGO_TARGET_DIR` wins.
fn cargo_target_dir(out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    let profile_parent = out_dir.ancestors().nth(4).unwrap_or(out_dir);
    let tagged = |dir: &Path| dir.join("CACHEDIR.TAG").is_file();
    match profile_parent.parent() {
        Some(up) if !tagged(profile_parent) && tagged(up) => up.to_path_buf(),
        _ => profile_parent.to_path_buf(),
    }
}

/// Reruns this script only when a guest source, a Cargo file or a WIT file changes.
fn emit_rerun_if_changed(root: &Path, proxies: &Path, members: &[String]) -> Result<(), String> {
    let mut paths = vec![
        root.join("wit"),
        proxies.join("Cargo.toml"),
        proxies.join("Cargo.lock"),
        // Host crates the guests depend on by path.
        root.join("examples/patch-api/src"),
        root.join("examples/patch-api/Cargo.toml"),
        root.join("examples/install-api/src"),
        root.join("examples/install-api/Cargo.toml"),
    ];
    for member in members {
        let dir = proxies.join(member);
        let entries =
            fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            // Directories are scanned recursively by cargo; skip a stray in-place build.
            if entry.file_name() != "target" {
                paths.push(entry.path());
            }
        }
    }
    for path in paths {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");
    Ok(())
}

/// Makes sure the compiler cargo uses has the `wasm32-wasip2` standard library, installing it
/// with rustup when it is missing and rustup is there.
fn ensure_wasm_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let installed = || {
        Command::new(&rustc)
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .is_some_and(|sysroot| {
                Path::new(&sysroot)
                    .join("lib/rustlib")
                    .join(WASM_TARGET)
                    .is_dir()
            })
    };
    if installed() {
        return Ok(());
    }
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if added && installed() {
        println!("cargo::warning=installed the wasm32-wasip2 target with rustup");
        Ok(())
    } else {
        Err(MISSING_TARGET.to_owned())
    }
}

/// `cargo build --release --target wasm32-wasip2` of the whole guest workspace.
fn build_guests(proxies: &Path, target_dir: &Path) -> Result<(), Failure> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(proxies)
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(proxies.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        // Our stdout is read by cargo as instructions: keep the inner cargo off it.
        .stdout(Stdio::from(std::io::stderr()));
    for name in LEAKY_VARS {
        command.env_remove(name);
    }
    for (name, value) in env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PROFILE_") {
            command.env_remove(name.as_ref());
        }
        if name == "RUSTC_WRAPPER" && value.to_string_lossy().contains("clippy-driver") {
            command.env_remove("RUSTC_WRAPPER");
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build the proxies: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::GuestBuild(format!(
            "building the guest proxies in proxies/ failed ({status}); their compiler output follows"
        )))
    }
}
