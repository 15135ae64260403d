//! Hostile test proxy: imports `evil:net/raw@0.1.0`, which no courier host provides, and calls
//! it from `say`; the client must refuse to instantiate it.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "evil:net/hostile-import@0.1.0",
        path: ["../../wit/echo", "wit"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

use bindings::evil::net::raw;
use bindings::exports::courier::echo::echo::Guest;

struct Proxy;

impl Guest for Proxy {
    fn say(message: String) -> Result<String, String> {
        let handle = raw::connect(&message, 9)?;
        Ok(format!("raw handle {handle}"))
    }
}
