//! Fuzz target `freshness`: arbitrary bytes as a `SignedFreshness` (decode, canonical
//! check, strict verification, shape rules), as the signed bytes themselves, and a verified
//! statement through the time check at a `now` the input picks.
//!
//! Oracle: nothing panics, and nothing unsigned verifies. The only secret key in the
//! fuzzer's reach is the fuzz vendor key ([`manifests::FUZZ_SEED`](crate::manifests::FUZZ_SEED));
//! the seed corpus holds statements it signed. So a statement that verifies must be that
//! key's, carry exactly the signature it makes over exactly those bytes, be canonical, and
//! be valid for a while no longer than an hour after it is issued; the time check accepts it
//! only between its issue and its expiry (with the skew given), and refuses it once expired.
//! Positive control: a decoded statement re-keyed to the fuzz key and signed verifies unless
//! its shape is wrong (never a signature error), and one flipped bit of its bytes or
//! signature, or a signature of the same bytes for the key-statement domain, is refused.

use crate::manifests::fuzz_key;
use courier_protocol::codec;
use courier_protocol::{
    FRESHNESS_DOMAIN, FreshnessError, FreshnessStatement, FreshnessTimeError, KEY_STATEMENT_DOMAIN,
    MAX_FRESHNESS_VALIDITY_MS, SignedFreshness, SigningKey, VendorKey, sign,
};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let key = fuzz_key();
    let now = pick(data);
    // The input as a statement off the wire (served with a candidate, or published).
    if let Ok(signed) = codec::decode::<SignedFreshness>(data) {
        check_signed(&signed, &key, now);
        if let Ok(statement) = signed.peek() {
            control(&statement, &key, now);
        }
    }
    // The input as the signed bytes, under a signature taken from its tail.
    let mut signature = [0u8; 64];
    let tail = &data[data.len().saturating_sub(64)..];
    signature[..tail.len()].copy_from_slice(tail);
    check_signed(
        &SignedFreshness {
            bytes: data.to_vec(),
            signature,
        },
        &key,
        now,
    );
    if let Ok(statement) = codec::decode::<FreshnessStatement>(data) {
        control(&statement, &key, now);
    }
}

/// A number the input picks (a time, a bit to flip).
fn pick(data: &[u8]) -> u64 {
    data.iter()
        .fold(0u64, |a, b| a.wrapping_mul(257) ^ u64::from(*b))
}

/// The "nothing unsigned verifies" oracle for one signed statement, and its time rules.
fn check_signed(signed: &SignedFreshness, key: &SigningKey, now: u64) {
    let _ = signed.peek();
    let _ = format!("{signed:?}");
    let Ok(verified) = signed.verify() else {
        return;
    };
    let statement = verified.into_inner();
    assert_eq!(
        statement.vendor,
        VendorKey::of(key),
        "a statement verified under a key nobody signed with"
    );
    assert_eq!(
        signed.signature,
        sign(key, FRESHNESS_DOMAIN, &signed.bytes),
        "a signature the key holder never made verified"
    );
    assert_eq!(
        codec::encode(&statement),
        signed.bytes,
        "non-canonical bytes verified"
    );
    check_times(&statement, now);
}

/// A verified statement counts from its issue to its expiry and at no other time.
fn check_times(statement: &FreshnessStatement, now: u64) {
    let (issued, expires) = (statement.issued_at_ms, statement.expires_at_ms);
    assert!(
        issued < expires && expires - issued <= MAX_FRESHNESS_VALIDITY_MS,
        "a statement valid from {issued} to {expires} verified"
    );
    assert!(
        !statement.services.is_empty(),
        "a statement naming nothing verified"
    );
    for name in statement.services.keys() {
        assert!(
            statement.version_of(name).is_some(),
            "{name}: no semver version"
        );
    }
    let _ = statement.to_string();
    assert_eq!(statement.check_time(issued, u64::MAX, 0), Ok(()));
    assert_eq!(statement.check_time(expires, u64::MAX, 0), Ok(()));
    if let Some(after) = expires.checked_add(1) {
        assert_eq!(
            statement.check_time(after, u64::MAX, 0),
            Err(FreshnessTimeError::Expired { ago_ms: 1 })
        );
    }
    for skew in [0, courier_protocol::FRESHNESS_SKEW_MS] {
        let max_age = now % (MAX_FRESHNESS_VALIDITY_MS + 1);
        match statement.check_time(now, max_age, skew) {
            Ok(()) => assert!(
                now.saturating_add(skew) >= issued
                    && now <= expires.saturating_add(skew)
                    && statement.age_ms(now) <= max_age.saturating_add(skew),
                "accepted at {now} (skew {skew}, max age {max_age}): {statement}"
            ),
            Err(FreshnessTimeError::NotYetValid { .. }) => {
                assert!(issued > now.saturating_add(skew));
            }
            Err(FreshnessTimeError::Expired { ago_ms }) => {
                assert!(now > expires.saturating_add(skew) && ago_ms == now - expires);
            }
            Err(FreshnessTimeError::TooOld { age_ms, .. }) => {
                assert!(age_ms > max_age.saturating_add(skew) && age_ms == now - issued);
            }
        }
    }
}

/// Positive control: `statement` re-keyed and signed with `key` verifies unless its shape
/// is wrong, and every tampering with it is refused.
fn control(statement: &FreshnessStatement, key: &SigningKey, now: u64) {
    let mut statement = statement.clone();
    statement.vendor = VendorKey::of(key);
    let signed = SignedFreshness::sign(&statement, key);
    match signed.verify() {
        Ok(verified) => assert_eq!(verified.get(), &statement),
        Err(FreshnessError::Verify(e)) => panic!("a freshly signed statement: {e}"),
        Err(_) => {}
    }
    check_signed(&signed, key, now);

    let bit = 1u8 << (now % 8);
    if !signed.bytes.is_empty() {
        let mut tampered = signed.clone();
        let i = usize::try_from(now % tampered.bytes.len() as u64).unwrap_or(0);
        tampered.bytes[i] ^= bit;
        assert!(tampered.verify().is_err(), "tampered bytes verified");
        check_signed(&tampered, key, now);
    }
    let mut tampered = signed.clone();
    tampered.signature[usize::try_from(now % 64).unwrap_or(0)] ^= bit;
    assert!(tampered.verify().is_err(), "a tampered signature verified");

    let other_domain = SignedFreshness {
        signature: sign(key, KEY_STATEMENT_DOMAIN, &signed.bytes),
        bytes: signed.bytes,
    };
    assert!(
        other_domain.verify().is_err(),
        "a signature made for another domain verified"
    );
}

/// The seed corpus: four statements the fuzz key signed (one service; several; one valid
/// the longest allowed; one already expired by any clock today), then, for the decoders'
/// error paths, the first truncated, with a flipped bit, and a statement valid too long.
pub fn seeds() -> Vec<Vec<u8>> {
    let key = fuzz_key();
    let vendor = VendorKey::of(&key);
    let statement = |services: &[(&str, &str)], issued: u64, validity: u64| {
        FreshnessStatement::new(
            vendor,
            services.iter().map(|(n, v)| (n.to_string(), v.to_string())),
            issued,
            validity,
        )
    };
    let one = statement(&[("fuzz/echo", "1.2.3")], 1_700_000_000_000, 600_000);
    let several = statement(
        &[("fuzz/echo", "2.0.0"), ("fuzz/kv", "0.1.0-rc.1+build.5")],
        1_700_000_300_000,
        600_000,
    );
    let longest = statement(&[("fuzz/echo", "1.0.0")], 0, MAX_FRESHNESS_VALIDITY_MS);
    let expired = statement(&[("fuzz/echo", "0.0.1")], 1, 1);
    let signed: Vec<Vec<u8>> = [&one, &several, &longest, &expired]
        .iter()
        .map(|s| codec::encode(&SignedFreshness::sign(s, &key)))
        .collect();
    let mut out = signed.clone();
    let first = &signed[0];
    out.push(first[..first.len() / 2].to_vec());
    let mut flipped = first.clone();
    flipped[first.len() / 3] ^= 0x10;
    out.push(flipped);
    let too_long = statement(&[("fuzz/echo", "1.0.0")], 0, MAX_FRESHNESS_VALIDITY_MS + 1);
    out.push(codec::encode(&SignedFreshness::sign(&too_long, &key)));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The committed seed corpus holds what [`super::seeds`] makes (run with
    /// `COURIER_WRITE_SEEDS=1` to write it), and the first four verify.
    #[test]
    fn seed_corpus_is_committed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/freshness");
        for (i, seed) in super::seeds().iter().enumerate() {
            let path = dir.join(format!("seed-{i}"));
            if std::env::var_os("COURIER_WRITE_SEEDS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            assert_eq!(&std::fs::read(&path).unwrap(), seed, "{}", path.display());
            let signed = courier_protocol::codec::decode::<courier_protocol::SignedFreshness>(seed);
            assert_eq!(signed.is_ok_and(|s| s.verify().is_ok()), i < 4, "seed {i}");
            super::run(seed);
        }
    }
}
