//! Fuzz target `identity_rotations`: the body and oracle are
//! `courier_fuzz_harness::identity_rotations::run`, which the stable `cargo test` also
//! replays on this target's corpus and artifacts.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    courier_fuzz_harness::identity_rotations::run(data);
});
