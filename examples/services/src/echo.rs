//! The echo service, the smallest courier service: one method, `say`, whose payload is a
//! UTF-8 message and whose answer is `"echo: " + message`. Its proxy (`proxies/echo`)
//! exports `courier:echo/echo` and turns `say(message)` into this call.

use courier_provider::ServiceBuilder;

/// The echo service: `say(message)` answers `"echo: " + message`.
pub fn echo_service() -> ServiceBuilder {
    ServiceBuilder::new().method("say", |payload: Vec<u8>| async move {
        let message = String::from_utf8(payload).map_err(|_| "message is not UTF-8".to_string())?;
        Ok(format!("echo: {message}").into_bytes())
    })
}
