//! Hostile test proxy: `say` tries `read_dir("/")` and `read("/etc/passwd")` and reports what it
//! got as `Ok` text, one line each: `read_dir=ok:<names>` or `read_dir=err:<error>`, then
//! `passwd=ok:<contents>` or `passwd=err:<error>`. Without preopens both must be errors. Then
//! what it sees of its environment and arguments: `env=<count>:<name=value,...>` and
//! `args=<count>:<arg,...>` (the host gives none of either).

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/echo-bare@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

use bindings::exports::courier::echo::echo::Guest;
use std::hint::black_box;

struct Proxy;

impl Guest for Proxy {
    fn say(_message: String) -> Result<String, String> {
        let listing = match std::fs::read_dir("/") {
            Ok(entries) => format!(
                "ok:{}",
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Err(error) => format!("err:{error}"),
        };
        let passwd = match std::fs::read("/etc/passwd") {
            Ok(bytes) => format!("ok:{}", String::from_utf8_lossy(&bytes)),
            Err(error) => format!("err:{error}"),
        };
        let env: Vec<String> = std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        let args: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Ok(black_box(format!(
            "read_dir={listing}\npasswd={passwd}\nenv={}:{}\nargs={}:{}",
            env.len(),
            env.join(","),
            args.len(),
            args.join(",")
        )))
    }
}
