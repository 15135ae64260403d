//! Fuzz target `manifests`: arbitrary bytes as a `SignedManifest` (decode, canonical check,
//! strict verification), and as the signed manifest bytes themselves.
//!
//! Oracle: nothing panics, and nothing unsigned verifies. The only secret key anywhere in
//! the fuzzer's reach is [`FUZZ_SEED`] (the seed corpus holds manifests it signed), so a
//! manifest that verifies must be under that key, carry exactly the signature that key makes
//! over exactly those bytes (ed25519 signing is deterministic, and `verify_strict` refuses
//! the other encodings of the same signature), be canonical, and pass its shape rules. As a
//! positive control, a decoded manifest re-signed with that key verifies exactly when it
//! passes its shape rules, and any one flipped bit of its bytes or signature, or a signature
//! of the same bytes for another domain, is refused.

use courier_protocol::codec;
use courier_protocol::{AUTH_DOMAIN, MANIFEST_DOMAIN, sign};
use courier_protocol::{Manifest, SignedManifest, SigningKey, VendorKey, VerifyError};

/// Seed of the fuzz vendor key, the one key whose signatures the corpus holds.
pub const FUZZ_SEED: [u8; 32] = [0x42; 32];

/// The fuzz vendor's signing key.
pub fn fuzz_key() -> SigningKey {
    SigningKey::from_bytes(&FUZZ_SEED)
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let key = fuzz_key();
    // The input as a signed manifest off the wire (a candidate, a registration).
    if let Ok(signed) = codec::decode::<SignedManifest>(data) {
        check_signed(&signed, &key);
        if let Ok(manifest) = signed.peek() {
            control(&manifest, &key, data);
        }
    }
    // The input as the signed bytes, under a signature taken from the input's tail.
    let mut signature = [0u8; 64];
    let tail = &data[data.len().saturating_sub(64)..];
    signature[..tail.len()].copy_from_slice(tail);
    check_signed(
        &SignedManifest {
            bytes: data.to_vec(),
            signature,
        },
        &key,
    );
    if let Ok(manifest) = codec::decode::<Manifest>(data) {
        control(&manifest, &key, data);
    }
}

/// The "nothing unsigned verifies" oracle for one signed manifest.
fn check_signed(signed: &SignedManifest, key: &SigningKey) {
    let _ = signed.peek();
    let Ok(verified) = signed.verify() else {
        return;
    };
    assert_eq!(
        verified.vendor_key,
        VendorKey::of(key),
        "a manifest verified under a key nobody signed with"
    );
    assert_eq!(
        signed.signature,
        sign(key, MANIFEST_DOMAIN, &signed.bytes),
        "a signature the key holder never made verified"
    );
    assert_eq!(
        codec::encode(verified.get()),
        signed.bytes,
        "non-canonical bytes verified"
    );
    assert_eq!(verified.validate(), Ok(()), "an invalid manifest verified");
}

/// Positive control: `manifest` re-keyed and signed with `key` verifies exactly when it is
/// valid, and every tampering with it is refused.
fn control(manifest: &Manifest, key: &SigningKey, data: &[u8]) {
    let mut manifest = manifest.clone();
    manifest.vendor_key = VendorKey::of(key);
    let signed = SignedManifest::sign(&manifest, key);
    match (signed.verify(), manifest.validate()) {
        (Ok(verified), Ok(())) => assert_eq!(verified.get(), &manifest),
        (Err(VerifyError::Manifest(got)), Err(want)) => assert_eq!(got, want),
        (got, valid) => panic!("a freshly signed manifest: verify {got:?}, validate {valid:?}"),
    }
    check_signed(&signed, key);

    // One flipped bit anywhere, chosen by the input, is refused.
    let pick = data
        .iter()
        .fold(0usize, |a, b| a.wrapping_mul(31) ^ *b as usize);
    let bit = 1u8 << (pick % 8);
    if !signed.bytes.is_empty() {
        let mut tampered = signed.clone();
        let i = pick % tampered.bytes.len();
        tampered.bytes[i] ^= bit;
        assert!(tampered.verify().is_err(), "tampered bytes verified");
        check_signed(&tampered, key);
    }
    let mut tampered = signed.clone();
    tampered.signature[pick % 64] ^= bit;
    assert!(tampered.verify().is_err(), "a tampered signature verified");

    // A signature of the same bytes for another purpose is refused.
    let other_domain = SignedManifest {
        signature: sign(key, AUTH_DOMAIN, &signed.bytes),
        bytes: signed.bytes,
    };
    assert!(
        matches!(other_domain.verify(), Err(VerifyError::BadSignature)),
        "a signature made for another domain verified"
    );
}
