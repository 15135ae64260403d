//! Hostile test proxy: `say` allocates 1 MiB blocks and writes to every page of each, without
//! bound; only the client's memory limit stops it.

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
    fn say(_message: String) -> Result<String, String> {
        const BLOCK: usize = 1 << 20;
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; BLOCK];
            for page in block.chunks_mut(4096) {
                page[0] = 0xA5;
            }
            hoard.push(black_box(block));
            black_box(&hoard);
        }
    }
}
