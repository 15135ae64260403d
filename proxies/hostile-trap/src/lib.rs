//! Hostile test proxy: `say` panics; with `panic = "abort"` that is a wasm `unreachable` trap.

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
    fn say(message: String) -> Result<String, String> {
        if black_box(true) {
            panic!("hostile-trap: deliberate panic on {message:?}");
        }
        Ok(message)
    }
}
