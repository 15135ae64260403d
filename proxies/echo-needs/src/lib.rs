//! The echo-needs proxy: an echo proxy whose service needs prerequisites on the client.
//!
//! - `say(m)`: the provider's `say` answer to `m`, like the echo proxy.
//! - `missing()`: asks the provider what the service needs (`needs`) and answers what of it
//!   is not in place: a service whose install marker is absent from the managed directory
//!   (the `managed-dir` fact, or `courier_install_api::DEFAULT_MANAGED_DIR`) or names a
//!   version outside the requirement, a package absent from the `packages` fact.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/echo-needs-proxy@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

mod predicate;

use bindings::courier::proxy::provider;
use bindings::exports::courier::echo::echo;
use bindings::exports::courier::proxy::prerequisites::{self, Requirement};

struct Proxy;

impl echo::Guest for Proxy {
    fn say(message: String) -> Result<String, String> {
        let answer = provider::call("say", message.as_bytes())?;
        String::from_utf8(answer).map_err(|_| "the provider answered with invalid UTF-8".to_owned())
    }
}

impl prerequisites::Guest for Proxy {
    fn missing() -> Result<Vec<Requirement>, String> {
        predicate::missing()
    }
}
