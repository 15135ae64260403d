//! Hostile test proxy: `say(port)` tries `TcpStream::connect("127.0.0.1:<port>")` and answers
//! `Ok("connected")` or `Err(<error text>)`.

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
        let port: u16 = message
            .trim()
            .parse()
            .map_err(|error| format!("bad port {message:?}: {error}"))?;
        match std::net::TcpStream::connect(("127.0.0.1", black_box(port))) {
            Ok(_stream) => Ok("connected".to_owned()),
            Err(error) => Err(error.to_string()),
        }
    }
}
