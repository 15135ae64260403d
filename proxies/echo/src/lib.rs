//! The echo proxy: forwards each message to its provider's `say` method and returns the answer.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/echo-proxy@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

use bindings::courier::proxy::provider;
use bindings::exports::courier::echo::echo::Guest;

struct Proxy;

impl Guest for Proxy {
    fn say(message: String) -> Result<String, String> {
        let answer = provider::call("say", message.as_bytes())?;
        String::from_utf8(answer).map_err(|_| "the provider answered with invalid UTF-8".to_owned())
    }
}
