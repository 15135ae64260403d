//! An echo proxy that uses every courier host interface: it shows the message to the operator,
//! asks `proceed?`, reads all host facts, and calls its provider only if confirmed. It also
//! writes a line to stdout and one to stderr, which the client keeps in its log.
//!
//! `say` answers `confirmed=<bool> facts=<k=v,...> answer=<provider answer | skipped>`.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/echo-operator-proxy@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

use bindings::courier::proxy::{host_info, operator, provider};
use bindings::exports::courier::echo::echo::Guest;

struct Proxy;

impl Guest for Proxy {
    fn say(message: String) -> Result<String, String> {
        println!("echo-operator on stdout: {message}");
        eprintln!("echo-operator on stderr: {} bytes", message.len());
        operator::display(&format!("echo-operator: {message}"));
        let confirmed = operator::confirm("proceed?");
        let facts = host_info::all()
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(",");
        let answer = if confirmed {
            let bytes = provider::call("say", message.as_bytes())?;
            String::from_utf8(bytes)
                .map_err(|_| "the provider answered with invalid UTF-8".to_owned())?
        } else {
            "skipped".to_owned()
        };
        Ok(format!(
            "confirmed={confirmed} facts={facts} answer={answer}"
        ))
    }
}
