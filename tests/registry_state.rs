//! The `registry_state` oracle on random operation sequences, a few hundred per run, so
//! that `cargo test` explores beyond the committed corpus too (bounded: about a second).

use courier_fuzz_harness::registry_state::{Reached, case_from, check};

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_operation_sequences_keep_to_the_model() {
    let mut all = Reached::default();
    for seed in 1..=300u64 {
        let mut bytes = Bytes(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let len = 64 + (bytes.next() % 2048) as usize;
        let case = case_from(&bytes.fill(len));
        let outcome = std::panic::catch_unwind(|| check(&case));
        let Ok(r) = outcome else {
            panic!("seed {seed} breaks the oracle: {case:?}");
        };
        all.registered += r.registered;
        all.renewed += r.renewed;
        all.cancelled += r.cancelled;
        all.expired += r.expired;
        all.flushed += r.flushed;
        all.revoked += r.revoked;
        all.failed += r.failed;
        all.restarts += r.restarts;
        all.operator += r.operator;
        all.graced += r.graced;
    }
    // The cases reach every kind of change, not only refusals.
    let Reached {
        registered,
        renewed,
        cancelled,
        expired,
        flushed,
        revoked,
        failed,
        restarts,
        graced,
        operator,
    } = all;
    for (what, n) in [
        ("registered", registered),
        ("renewed", renewed),
        ("cancelled", cancelled),
        ("expired", expired),
        ("flushed", flushed),
        ("revoked", revoked),
        ("failed", failed),
        ("restarts", restarts),
        ("graced", graced),
        ("operator", operator),
    ] {
        assert!(n >= 20, "only {n} {what} in all: {all:?}");
    }
}
