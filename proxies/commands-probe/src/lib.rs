//! Test proxy for the lent commands: `say(message)` runs what the message names and
//! answers what happened, so the client's tests can try any name and arguments.
//!
//! - `names` answers `Ok` with the lent names, comma-separated;
//! - `NAME|ARG|ARG...` runs `NAME` with the arguments (split on `|`) and answers
//!   `Ok("status=<n>\nstdout=<text>\nstderr=<text>")`, or `Err(<the host's refusal>)`;
//! - `repeat:N:NAME` runs `NAME` (no arguments) N times and answers the last statuses.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:probe/commands-probe@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "wit"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

use bindings::courier::proxy::commands;
use bindings::exports::courier::echo::echo::Guest;

struct Proxy;

impl Guest for Proxy {
    fn say(message: String) -> Result<String, String> {
        if message == "names" {
            return Ok(commands::names().join(","));
        }
        if let Some(rest) = message.strip_prefix("repeat:") {
            let (count, name) = rest.split_once(':').ok_or("repeat:N:NAME")?;
            let count: u32 = count.parse().map_err(|_| "repeat:N:NAME")?;
            let mut statuses = Vec::new();
            for _ in 0..count {
                statuses.push(commands::run(name, &[])?.status.to_string());
            }
            return Ok(statuses.join(","));
        }
        let mut parts = message.split('|');
        let name = parts.next().unwrap_or_default();
        let args: Vec<String> = parts.map(str::to_owned).collect();
        let out = commands::run(name, &args)?;
        Ok(format!(
            "status={}\nstdout={}\nstderr={}",
            out.status, out.stdout, out.stderr
        ))
    }
}
