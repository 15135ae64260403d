//! Hostile test proxy: `say` returns a 64 MiB string; the client must cap what it copies out.

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

/// The size of the answer: 64 MiB.
const HUGE: usize = 64 << 20;

impl Guest for Proxy {
    fn say(_message: String) -> Result<String, String> {
        Ok(black_box("x".repeat(HUGE)))
    }
}
