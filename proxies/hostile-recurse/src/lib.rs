//! Hostile test proxy: `say` recurses without bound; each frame keeps a buffer alive across the
//! call, so the recursion cannot become a loop. The stack overflow traps.

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

/// One level deeper; the work after the recursive call keeps it from being a tail call.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    let mut frame = [0u8; 256];
    frame[(depth % 256) as usize] = depth as u8;
    let frame = black_box(frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = dive(black_box(depth + 1));
    below.wrapping_add(u64::from(frame[(depth % 7) as usize]))
}

impl Guest for Proxy {
    fn say(_message: String) -> Result<String, String> {
        Ok(format!("depth {}", dive(0)))
    }
}
