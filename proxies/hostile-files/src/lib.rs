//! Hostile test proxy: `say` tries `read_dir("/")` and `read("/etc/passwd")` and reports what it
//! got as `Ok` text, one line each: `read_dir=ok:<names>` or `read_dir=err:<error>`, then
//! `passwd=ok:<contents>` or `passwd=err:<error>`. Without preopens both must be errors.

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
        Ok(black_box(format!("read_dir={listing}\npasswd={passwd}")))
    }
}
