//! Fuzz target `roots`: arbitrary bytes as a `SignedRootStatement` and as a
//! `SignedDelegation` (decode, canonical check, threshold and strict verification), and a
//! decoded root statement with decoded delegations through `Authority`.
//!
//! Oracle: nothing panics, and nothing unsigned verifies. The only secret keys in the
//! fuzzer's reach are the fuzz root's ([`ROOT_SEEDS`]) and the fuzz online key
//! ([`ONLINE_SEED`]); the seed corpus holds statements they signed. So a root statement
//! that verifies as a first statement must carry, for at least its threshold of distinct
//! keys, exactly the signature that fuzz key makes over exactly those bytes, and be
//! canonical; a delegation that verifies must be the online key's, likewise. Authority
//! never grants a name its grant does not cover, nor after its expiry. Positive control: a
//! decoded statement re-keyed to the fuzz root and signed by two of its three keys verifies
//! exactly when its shape is valid, and by one key never.

use courier_protocol::codec;
use courier_protocol::{
    Authority, DELEGATION_DOMAIN, DelegationStatement, ROOT_STATEMENT_DOMAIN, RootKeys,
    RootStatement, SignedDelegation, SignedRootStatement, SigningKey, VendorKey, sign,
};

/// Seeds of the fuzz root's three keys (threshold 2).
pub const ROOT_SEEDS: [[u8; 32]; 3] = [[0x51; 32], [0x52; 32], [0x53; 32]];
/// Seed of the fuzz online key.
pub const ONLINE_SEED: [u8; 32] = [0x61; 32];

/// The fuzz root's signing keys.
pub fn root_keys() -> Vec<SigningKey> {
    ROOT_SEEDS.iter().map(SigningKey::from_bytes).collect()
}

/// The fuzz root: its three keys, two of which must sign.
pub fn fuzz_root() -> RootKeys {
    let keys = root_keys();
    RootKeys::new(keys.iter().map(VendorKey::of), 2).unwrap_or_else(|e| unreachable!("{e}"))
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let secrets: Vec<SigningKey> = root_keys()
        .into_iter()
        .chain([SigningKey::from_bytes(&ONLINE_SEED)])
        .collect();
    if let Ok(signed) = codec::decode::<SignedRootStatement>(data) {
        check_root(&signed, &secrets);
        if let Ok(statement) = signed.peek() {
            control(&statement);
        }
    }
    if let Ok(statement) = codec::decode::<RootStatement>(data) {
        control(&statement);
    }
    if let Ok(signed) = codec::decode::<SignedDelegation>(data) {
        check_delegation(&signed, &secrets);
    }
    // A root statement and delegations, however they came, through the authority rules.
    if let Ok((root, further)) = codec::decode::<(RootStatement, Vec<DelegationStatement>)>(data) {
        check_authority(&root, &further, data);
    }
}

/// "Nothing unsigned verifies" for a root statement.
fn check_root(signed: &SignedRootStatement, secrets: &[SigningKey]) {
    let Ok(verified) = signed.verify_first() else {
        return;
    };
    let keys = &verified.keys;
    let honest = secrets
        .iter()
        .filter(|k| keys.keys.contains(&VendorKey::of(k)))
        .filter(|k| {
            let made = sign(k, ROOT_STATEMENT_DOMAIN, &signed.bytes);
            signed
                .signatures
                .iter()
                .any(|s| s.key == VendorKey::of(k) && s.signature == made)
        })
        .count();
    assert!(
        honest >= usize::from(keys.threshold),
        "a root statement verified with {honest} signatures a key holder made, threshold {}",
        keys.threshold
    );
    assert_eq!(
        codec::encode(verified.get()),
        signed.bytes,
        "non-canonical bytes verified"
    );
}

/// "Nothing unsigned verifies" for a delegation.
fn check_delegation(signed: &SignedDelegation, secrets: &[SigningKey]) {
    let _ = signed.peek();
    let Ok(verified) = signed.verify() else {
        return;
    };
    let signer = secrets.iter().find(|k| VendorKey::of(k) == verified.parent);
    let Some(signer) = signer else {
        panic!("a delegation verified under a key nobody signed with");
    };
    assert_eq!(
        signed.signature,
        sign(signer, DELEGATION_DOMAIN, &signed.bytes),
        "a signature the key holder never made verified"
    );
}

/// What authority grants stays within the grant and its time.
fn check_authority(root: &RootStatement, further: &[DelegationStatement], data: &[u8]) {
    let authority = Authority { root, further };
    let now = data
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(257) ^ u64::from(*b));
    let keys = root
        .delegations
        .iter()
        .map(|d| d.key)
        .chain(further.iter().map(|s| s.delegation.key));
    for key in keys.take(64) {
        for s in further.iter().take(16) {
            let _ = authority.admit(s);
        }
        let Ok(grant) = authority.grant(&key) else {
            continue;
        };
        for name in grant.names.iter().map(|p| p.as_str()).take(8) {
            let name = name.trim_end_matches('*').to_string() + "x";
            if authority.authorize(&key, &name, now).is_ok() {
                assert!(grant.covers(&name) && now <= grant.not_after_ms);
            }
        }
    }
}

/// Positive control: the statement re-keyed to the fuzz root as its first statement
/// verifies under two of its keys exactly when its shape is valid, and never under one.
fn control(statement: &RootStatement) {
    let keys = root_keys();
    let mut s = statement.clone();
    s.keys = fuzz_root();
    s.root = s.keys.id();
    s.version = 1;
    let two = SignedRootStatement::sign(&s, &[&keys[0], &keys[2]]);
    match (two.verify_first(), s.check()) {
        (Ok(verified), Ok(())) => assert_eq!(verified.get(), &s),
        (Err(_), Err(_)) => {}
        (got, shape) => panic!("a freshly signed root statement: {got:?}, shape {shape:?}"),
    }
    let one = SignedRootStatement::sign(&s, &[&keys[1]]);
    assert!(
        one.verify_first().is_err(),
        "one of three keys (threshold 2) verified"
    );
}

/// The seed corpus: a root statement signed by two fuzz root keys, one by a single key, a
/// delegation by the online key, and a root statement with delegations for `Authority`.
pub fn seeds() -> Vec<Vec<u8>> {
    use courier_protocol::{Delegation, NamePattern};
    let keys = root_keys();
    let online = SigningKey::from_bytes(&ONLINE_SEED);
    let pattern = |s: &str| NamePattern::new(s).unwrap_or_else(|e| unreachable!("{e}"));
    let mut v1 = RootStatement::genesis(fuzz_root()).next(1);
    v1.delegations.push(Delegation {
        key: VendorKey::of(&online),
        names: vec![pattern("acme/*")],
        not_after_ms: 1_000_000,
    });
    let further = DelegationStatement {
        root: v1.root,
        parent: VendorKey::of(&online),
        delegation: Delegation {
            key: VendorKey::of(&keys[0]),
            names: vec![pattern("acme/echo")],
            not_after_ms: 500_000,
        },
        issued_at_ms: 2,
    };
    vec![
        codec::encode(&SignedRootStatement::sign(&v1, &[&keys[0], &keys[1]])),
        codec::encode(&SignedRootStatement::sign(&v1, &[&keys[2]])),
        codec::encode(&SignedDelegation::sign(&further, &online)),
        codec::encode(&(v1.clone(), vec![further])),
        codec::encode(&v1),
    ]
}

#[cfg(test)]
mod tests {
    /// The committed seed corpus holds what [`super::seeds`] makes (run with
    /// `COURIER_WRITE_ROOT_SEEDS=1` to write it).
    #[test]
    fn seed_corpus_is_committed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/roots");
        for (i, seed) in super::seeds().iter().enumerate() {
            let path = dir.join(format!("seed-{i}"));
            if std::env::var_os("COURIER_WRITE_ROOT_SEEDS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            assert_eq!(&std::fs::read(&path).unwrap(), seed, "{}", path.display());
            super::run(seed);
        }
    }
}
