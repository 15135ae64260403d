//! The guest proxies of `proxies/`, built for `wasm32-wasip2` by this crate's build script: each
//! component's bytes as a constant, a table of them by name, and the stable on-disk paths
//! (`<target>/proxies/wasm32-wasip2/release/<name>.wasm`, `-` in a name becoming `_`).
//!
//! Proxies built from Rust `std` also import `wasi:cli/*`, `wasi:io/*`, `wasi:clocks/*`,
//! `wasi:filesystem/*` and (for `hostile-sockets`) `wasi:sockets/*`; the client satisfies
//! those with harmless implementations.

use std::path::PathBuf;

/// Includes the component `<stem>.wasm` that the build script copied into `OUT_DIR`.
macro_rules! component {
    ($stem:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $stem, ".wasm"))
    };
}

/// `echo`: exports `courier:echo/echo@0.1.0`; `say(m)` is the provider's `say` answer to `m`.
/// Imports `courier:proxy/provider@0.1.0` only.
pub const ECHO: &[u8] = component!("echo");

/// `echo-digest`: exports echo like `echo`, with real guest work in front (about 120 KB): `say(m)`
/// is the provider's `say` answer to `m [<summary>]`, where the summary ranks `m`'s words and
/// gives the count, sum, mean and spread of the numbers in it. The cold-call benchmark's
/// 100 KB-class proxy. Imports `courier:proxy/provider@0.1.0` only.
pub const ECHO_DIGEST: &[u8] = component!("echo_digest");

/// `kv`: exports `courier:kv/store@0.1.0`, each function one provider call in the kv payload
/// encoding. Imports `courier:proxy/provider@0.1.0` only.
pub const KV: &[u8] = component!("kv");

/// `echo-operator`: exports echo; `say` shows the message to the operator, asks `proceed?`,
/// reads every host fact and calls the provider only if confirmed. It answers
/// `confirmed=<bool> facts=<k=v,...> answer=<provider answer | skipped>`. Imports
/// `courier:proxy/{provider, host-info, operator}@0.1.0`.
pub const ECHO_OPERATOR: &[u8] = component!("echo_operator");

/// `patch`: exports `courier:patch/delivery@0.1.0` (inventory, recommend, apply, remove):
/// inventories the machine, asks its provider what applies, confirms with the operator,
/// installs with rollback into the managed directory the policy preopens, reports.
/// Imports `courier:proxy/{provider, host-info, operator, commands}@0.1.0`.
pub const PATCH: &[u8] = component!("patch");

/// `echo-needs`: exports echo like `echo` (`say(m)` is the provider's `say` answer to `m`)
/// and `courier:proxy/prerequisites@0.1.0`: `missing()` asks the provider's `needs`
/// method what the service needs and answers what of it is not in place, from the install
/// markers of the managed directory (the `managed-dir` fact, or `/managed`) and the
/// `packages` fact. Imports `courier:proxy/{provider, host-info}@0.1.0`.
pub const ECHO_NEEDS: &[u8] = component!("echo_needs");

/// `installer`: exports `courier:proxy/installer@0.1.0` and
/// `courier:proxy/prerequisites@0.1.0`: `install()` fetches the provider's `plan` and
/// installs it into the managed directory (staged, swapped in, marker last), `remove()`
/// removes what an install of the plan's interface put there, `missing()` is the same
/// predicate as `echo-needs`. Imports `courier:proxy/{provider, host-info}@0.1.0`.
pub const INSTALLER: &[u8] = component!("installer");

/// `hostile-loop`: exports echo; `say` never returns (only an epoch deadline or fuel stops it).
pub const HOSTILE_LOOP: &[u8] = component!("hostile_loop");

/// `hostile-alloc`: exports echo; `say` allocates and writes memory without bound.
pub const HOSTILE_ALLOC: &[u8] = component!("hostile_alloc");

/// `hostile-recurse`: exports echo; `say` recurses without bound until the stack overflows.
pub const HOSTILE_RECURSE: &[u8] = component!("hostile_recurse");

/// `hostile-huge`: exports echo; `say` returns `Ok` with a 64 MiB string.
pub const HOSTILE_HUGE: &[u8] = component!("hostile_huge");

/// `hostile-trap`: exports echo; `say` panics, which is a wasm `unreachable` trap.
pub const HOSTILE_TRAP: &[u8] = component!("hostile_trap");

/// `hostile-files`: exports echo; `say` tries `read_dir("/")` and `read("/etc/passwd")` and
/// answers `Ok("read_dir=ok:<names>|err:<error>\npasswd=ok:<contents>|err:<error>")`.
pub const HOSTILE_FILES: &[u8] = component!("hostile_files");

/// `hostile-sockets`: exports echo; `say(port)` tries `TcpStream::connect("127.0.0.1:<port>")`
/// and answers `Ok("connected")` or `Err(<error text>)`. Imports `wasi:sockets/*`.
pub const HOSTILE_SOCKETS: &[u8] = component!("hostile_sockets");

/// `hostile-import`: exports echo and imports `evil:net/raw@0.1.0`, which no courier host
/// provides: the client must refuse to instantiate it.
pub const HOSTILE_IMPORT: &[u8] = component!("hostile_import");

/// `commands-probe`: exports echo and imports `courier:proxy/commands@0.1.0` only; `say`
/// runs the lent command its message names (`NAME|ARG|...`, or `names`, or
/// `repeat:N:NAME`) and answers `status=<n>\nstdout=<text>\nstderr=<text>` or the host's
/// refusal as its error. For the client's tests of lent commands.
pub const COMMANDS_PROBE: &[u8] = component!("commands_probe");

/// Every proxy by name (the crate directory under `proxies/`), in this order.
pub const ALL: &[(&str, &[u8])] = &[
    ("echo", ECHO),
    ("echo-digest", ECHO_DIGEST),
    ("kv", KV),
    ("echo-operator", ECHO_OPERATOR),
    ("patch", PATCH),
    ("echo-needs", ECHO_NEEDS),
    ("installer", INSTALLER),
    ("hostile-loop", HOSTILE_LOOP),
    ("hostile-alloc", HOSTILE_ALLOC),
    ("hostile-recurse", HOSTILE_RECURSE),
    ("hostile-huge", HOSTILE_HUGE),
    ("hostile-trap", HOSTILE_TRAP),
    ("hostile-files", HOSTILE_FILES),
    ("hostile-sockets", HOSTILE_SOCKETS),
    ("hostile-import", HOSTILE_IMPORT),
    ("commands-probe", COMMANDS_PROBE),
];

/// The directory the guest build writes the components to:
/// `<target>/proxies/wasm32-wasip2/release`.
pub const DIR: &str = env!("COURIER_PROXIES_DIR");

/// The component bytes of the proxy called `name` (e.g. `"echo"`, `"hostile-loop"`).
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    ALL.iter()
        .find(|(known, _)| *known == name)
        .map(|(_, bytes)| *bytes)
}

/// The stable on-disk path of the proxy called `name`, as built by the guest build:
/// `<target>/proxies/wasm32-wasip2/release/<name with - as _>.wasm`. The path is computed
/// from the name; for a name not in [`ALL`] it names a file that does not exist.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{}.wasm", name.replace('-', "_")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use wasmparser::{Parser, Payload, Validator};

    /// `\0asm`, then the component-model version 0x0d and layer 1.
    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    /// The top-level imports and exports of a component, by name.
    fn interfaces(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
        let (mut imports, mut exports) = (Vec::new(), Vec::new());
        // Nested modules and components are flattened by `parse_all`; only the outer
        // component's own sections (depth 0) describe what the host sees.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.unwrap() {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(section) if depth == 0 => {
                    for import in section {
                        imports.push(import.unwrap().name.name.to_owned());
                    }
                }
                Payload::ComponentExportSection(section) if depth == 0 => {
                    for export in section {
                        exports.push(export.unwrap().name.name.to_owned());
                    }
                }
                _ => {}
            }
        }
        (imports, exports)
    }

    fn courier_imports(imports: &[String]) -> Vec<&str> {
        let mut own: Vec<&str> = imports
            .iter()
            .map(String::as_str)
            .filter(|name| !name.starts_with("wasi:"))
            .collect();
        own.sort_unstable();
        own
    }

    #[test]
    fn every_artifact_is_a_nontrivial_valid_component() {
        for (name, bytes) in ALL {
            assert_eq!(bytes[..8], COMPONENT_HEADER, "{name} is not a component");
            assert!(
                bytes.len() > 4 * 1024,
                "{name} is only {} bytes",
                bytes.len()
            );
            Validator::new().validate_all(bytes).unwrap();
            println!("{name}: {} bytes", bytes.len());
        }
    }

    #[test]
    fn all_lists_every_built_proxy() {
        let mut listed: Vec<&str> = ALL.iter().map(|(name, _)| *name).collect();
        listed.sort_unstable();
        let mut built: Vec<&str> = env!("COURIER_PROXY_NAMES").split(',').collect();
        built.sort_unstable();
        assert_eq!(listed, built);
    }

    #[test]
    fn by_name_and_path_find_the_built_files() {
        for (name, bytes) in ALL {
            assert_eq!(by_name(name), Some(*bytes));
            assert_eq!(std::fs::read(path(name)).unwrap(), *bytes, "{name}");
        }
        assert_eq!(by_name("nope"), None);
        assert!(path("echo").ends_with("proxies/wasm32-wasip2/release/echo.wasm"));
        assert!(path("hostile-loop").ends_with("hostile_loop.wasm"));
    }

    #[test]
    fn components_import_and_export_what_their_worlds_say() {
        let echo = ["courier:echo/echo@0.1.0".to_owned()];
        let provider = "courier:proxy/provider@0.1.0";
        for (name, bytes) in ALL {
            let (imports, exports) = interfaces(bytes);
            let own = courier_imports(&imports);
            match *name {
                "kv" => {
                    assert_eq!(exports, ["courier:kv/store@0.1.0"]);
                    assert_eq!(own, [provider]);
                }
                "echo" | "echo-digest" => {
                    assert_eq!(exports, echo);
                    assert_eq!(own, [provider]);
                }
                "echo-operator" => {
                    assert_eq!(exports, echo);
                    assert_eq!(
                        own,
                        [
                            "courier:proxy/host-info@0.1.0",
                            "courier:proxy/operator@0.1.0",
                            provider,
                        ]
                    );
                }
                "patch" => {
                    assert_eq!(exports, ["courier:patch/delivery@0.1.0"]);
                    assert_eq!(
                        own,
                        [
                            "courier:proxy/commands@0.1.0",
                            "courier:proxy/host-info@0.1.0",
                            "courier:proxy/operator@0.1.0",
                            provider,
                        ]
                    );
                }
                "echo-needs" | "installer" => {
                    let service = if *name == "installer" {
                        "courier:proxy/installer@0.1.0"
                    } else {
                        "courier:echo/echo@0.1.0"
                    };
                    let mut sorted = exports.clone();
                    sorted.sort_unstable();
                    assert_eq!(sorted, [service, "courier:proxy/prerequisites@0.1.0"]);
                    assert_eq!(own, ["courier:proxy/host-info@0.1.0", provider]);
                }
                "commands-probe" => {
                    assert_eq!(exports, echo);
                    assert_eq!(own, ["courier:proxy/commands@0.1.0"]);
                }
                "hostile-import" => {
                    assert_eq!(exports, echo);
                    assert_eq!(own, ["evil:net/raw@0.1.0"]);
                }
                _ => {
                    assert_eq!(exports, echo, "{name}");
                    assert!(own.is_empty(), "{name} imports {own:?}");
                }
            }
        }
        let (sockets, _) = interfaces(HOSTILE_SOCKETS);
        assert!(sockets.iter().any(|name| name.starts_with("wasi:sockets/")));
    }
}
