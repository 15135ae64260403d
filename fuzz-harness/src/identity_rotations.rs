//! Fuzz target `identity_rotations`: arbitrary certificate chains through the pin verifier
//! that follows rotations of the registry's TLS identity
//! (`PinnedVerifier::following_rotations`, which decodes the rotation statements) and
//! through the one that does not (`PinnedVerifier::new`, what provider connections use).
//! A chain is built from the input: certificates of the fuzz keys, rotation statements
//! between them with arbitrary validity, raw bytes, and damaged (bit-flipped, truncated)
//! copies of any of them; the input also picks the pin and the time of the check.
//!
//! Oracle: nothing panics, and **nothing moves a pin unsigned**. The only secret keys in
//! the fuzzer's reach are the fuzz keys ([`KEY_SEEDS`], Ed25519, whose signatures are
//! deterministic). So when the following verifier accepts a key other than the pinned one,
//! there is a path of statements from the pin to the presented key, each carrying exactly
//! the signature the key reached so far makes over exactly its bytes and each valid at the
//! time of the check, and the reported move names the pin, the presented key and the
//! earliest end along such a path; a pin that is no fuzz key's never moves. The plain
//! verifier accepts the pinned key only. When the chain holds only undamaged certificates,
//! the outcome (accepted, with which move, or refused and why) equals a model of the rule
//! in `docs/protocol.md`; the seed corpus holds such chains, made by [`seeds`] and checked
//! by its test.

use courier_protocol::SpkiPin;
use courier_transport::{PinMove, PinnedVerifier, RotationRefused, rotation_statement_between};
use ed25519_dalek::{Signer, SigningKey};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

/// Seeds of the fuzz keys.
pub const KEY_SEEDS: [[u8; 32]; 3] = [[0x71; 32], [0x72; 32], [0x73; 32]];
/// Certificates beyond this many in one chain are ignored.
const MAX_CERTIFICATES: usize = 16;

/// One step of building a chain, as the input encodes it (first byte: the kind, modulo 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The self-signed certificate of fuzz key `.0` (modulo the number of keys).
    Certificate(u8),
    /// A rotation statement signed by fuzz key `signer` naming fuzz key `subject`, valid
    /// from `starts` (unix seconds) for `length` seconds.
    Statement {
        /// The key that signs (modulo the number of keys).
        signer: u8,
        /// The key it names (modulo the number of keys).
        subject: u8,
        /// Start of its validity, unix seconds.
        starts: u32,
        /// Length of its validity, seconds.
        length: u32,
    },
    /// Arbitrary bytes as a certificate.
    Raw(Vec<u8>),
    /// The previous certificate with byte `at` (modulo its length) xored with `with`.
    Flip {
        /// Which byte.
        at: u16,
        /// What it is xored with.
        with: u8,
    },
    /// The previous certificate cut to `.0` bytes.
    Truncate(u16),
}

/// What the model knows of an undamaged certificate.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// The fuzz key it certifies.
    key: usize,
    /// The fuzz key that signed it.
    signer: usize,
    starts: u64,
    ends: u64,
}

/// A certificate of the chain: its bytes, and what it is if undamaged.
#[derive(Debug, Clone)]
struct Cert {
    der: Vec<u8>,
    known: Option<Known>,
}

/// What an input decodes to.
#[derive(Debug)]
struct Scenario {
    /// The fuzz key pinned, or `None` for a pin no key has.
    pinned: Option<usize>,
    now: u64,
    /// The presented certificate first, then the intermediates.
    chain: Vec<Cert>,
}

/// The fuzz keys: their signing keys, PKCS#8 forms, self-signed certificates and pins.
struct Keys {
    signing: Vec<SigningKey>,
    pkcs8: Vec<Vec<u8>>,
    certs: Vec<Cert>,
    pins: Vec<SpkiPin>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let pkcs8: Vec<Vec<u8>> = KEY_SEEDS.iter().map(ed25519_pkcs8).collect();
        let certs: Vec<Cert> = pkcs8
            .iter()
            .enumerate()
            .map(|(i, der)| self_signed(i, der))
            .collect();
        let pins = certs
            .iter()
            .map(|c| courier_transport::spki_pin(&c.der).unwrap_or_else(|e| unreachable!("{e}")))
            .collect();
        Keys {
            signing: KEY_SEEDS.iter().map(SigningKey::from_bytes).collect(),
            pkcs8,
            certs,
            pins,
        }
    })
}

/// The PKCS#8 (v1) encoding of the Ed25519 key with `seed`.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    PREFIX.iter().chain(seed).copied().collect()
}

/// The self-signed certificate of key `index` (what a registry identity is).
fn self_signed(index: usize, pkcs8: &[u8]) -> Cert {
    let key = rcgen::KeyPair::try_from(pkcs8).unwrap_or_else(|e| unreachable!("{e}"));
    let der = rcgen::CertificateParams::new(vec!["courier".to_string()])
        .and_then(|p| p.self_signed(&key))
        .unwrap_or_else(|e| unreachable!("{e}"))
        .der()
        .to_vec();
    let (starts, ends) = validity(&der).unwrap_or_else(|| unreachable!("made here"));
    Cert {
        der,
        known: Some(Known {
            key: index,
            signer: index,
            starts,
            ends,
        }),
    }
}

/// A certificate's validity in unix seconds, as the verifier reads it.
fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    let secs = |t: i64| u64::try_from(t).unwrap_or(0);
    Some((
        secs(v.not_before.timestamp()),
        secs(v.not_after.timestamp()),
    ))
}

impl Op {
    /// Appends the op's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Certificate(k) => out.extend([0, *k]),
            Op::Statement {
                signer,
                subject,
                starts,
                length,
            } => {
                out.extend([1, *signer, *subject]);
                out.extend(starts.to_le_bytes());
                out.extend(length.to_le_bytes());
            }
            Op::Raw(bytes) => {
                out.push(2);
                let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
                out.extend(len.to_le_bytes());
                out.extend(&bytes[..usize::from(len)]);
            }
            Op::Flip { at, with } => {
                out.push(3);
                out.extend(at.to_le_bytes());
                out.push(*with);
            }
            Op::Truncate(len) => {
                out.push(4);
                out.extend(len.to_le_bytes());
            }
        }
    }
}

/// An input: the pin (a fuzz key's index below 0xf0, else a pin no key has), the time of
/// the check (u32, unix seconds), then the ops.
pub fn encode(pin: u8, now: u32, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![pin];
    out.extend(now.to_le_bytes());
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// Reads the input's fields; running out ends the input.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes: [u8; N] = self.0.get(..N)?.try_into().ok()?;
        self.0 = &self.0[N..];
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn op(&mut self) -> Option<Op> {
        Some(match self.u8()? % 5 {
            0 => Op::Certificate(self.u8()?),
            1 => Op::Statement {
                signer: self.u8()?,
                subject: self.u8()?,
                starts: self.u32()?,
                length: self.u32()?,
            },
            2 => {
                let len = self.u16()?;
                Op::Raw(self.take(usize::from(len))?.to_vec())
            }
            3 => Op::Flip {
                at: self.u16()?,
                with: self.u8()?,
            },
            _ => Op::Truncate(self.u16()?),
        })
    }
}

impl Scenario {
    fn decode(data: &[u8]) -> Option<Self> {
        let keys = keys();
        let n = keys.certs.len();
        let mut r = Reader(data);
        let pin = r.u8()?;
        let pinned = (pin < 0xf0).then_some(usize::from(pin) % n);
        let now = u64::from(r.u32()?);
        let mut chain: Vec<Cert> = Vec::new();
        while chain.len() < MAX_CERTIFICATES
            && let Some(op) = r.op()
        {
            match op {
                Op::Certificate(k) => chain.push(keys.certs[usize::from(k) % n].clone()),
                Op::Statement {
                    signer,
                    subject,
                    starts,
                    length,
                } => chain.push(statement(
                    usize::from(signer) % n,
                    usize::from(subject) % n,
                    u64::from(starts),
                    u64::from(starts) + u64::from(length),
                )),
                Op::Raw(der) => chain.push(Cert { der, known: None }),
                Op::Flip { at, with } => {
                    if let Some(last) = chain.last_mut()
                        && !last.der.is_empty()
                    {
                        let at = usize::from(at) % last.der.len();
                        last.der[at] ^= with;
                        last.known = None;
                    }
                }
                Op::Truncate(len) => {
                    if let Some(last) = chain.last_mut() {
                        last.der.truncate(usize::from(len));
                        last.known = None;
                    }
                }
            }
        }
        Some(Self { pinned, now, chain })
    }
}

/// A rotation statement from key `signer` to key `subject`, as the registry makes them.
fn statement(signer: usize, subject: usize, starts: u64, ends: u64) -> Cert {
    let keys = keys();
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    match rotation_statement_between(
        &keys.pkcs8[signer],
        &keys.pkcs8[subject],
        at(starts),
        at(ends),
    ) {
        Ok(der) => Cert {
            der,
            known: Some(Known {
                key: subject,
                signer,
                starts,
                ends,
            }),
        },
        Err(e) => unreachable!("a statement from {starts} to {ends}: {e}"),
    }
}

/// What a verifier made of a chain.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    accepted: bool,
    moved: Option<PinMove>,
    refused: Option<RotationRefused>,
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let Some(scenario) = Scenario::decode(data) else {
        return;
    };
    let Some((end_entity, rest)) = scenario.chain.split_first() else {
        return;
    };
    let keys = keys();
    let pin = match scenario.pinned {
        Some(k) => keys.pins[k],
        None => SpkiPin::of_spki(b"a key no one in the fuzzer holds"),
    };
    let presented = courier_transport::spki_pin(&end_entity.der).ok();
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let end_entity_der = CertificateDer::from(end_entity.der.as_slice());
    let name = ServerName::try_from("courier").unwrap_or_else(|e| unreachable!("{e}"));
    let now = UnixTime::since_unix_epoch(Duration::from_secs(scenario.now));
    let provider = rustls::crypto::ring::default_provider();
    let verify = |verifier: &PinnedVerifier| {
        let accepted = verifier
            .verify_server_cert(&end_entity_der, &intermediates, &name, &[], now)
            .is_ok();
        let seen = verifier.outcome();
        assert_eq!(seen.presented, presented, "the presented key is reported");
        Outcome {
            accepted,
            moved: seen.moved,
            refused: seen.refused,
        }
    };

    let plain = verify(&PinnedVerifier::new(pin, &provider));
    let exact = Outcome {
        accepted: presented == Some(pin),
        moved: None,
        refused: None,
    };
    assert_eq!(plain, exact, "a verifier that follows no rotation");

    let following = verify(&PinnedVerifier::following_rotations(pin, &provider));
    assert!(
        !(following.accepted && following.refused.is_some()),
        "accepted a refused rotation: {following:?}"
    );
    assert!(
        following.accepted || following.moved.is_none(),
        "a move reported for a refused chain: {following:?}"
    );
    match &following.moved {
        None => assert!(
            !following.accepted || presented == Some(pin),
            "accepted another key without a move: {following:?}"
        ),
        Some(moved) => check_signed_path(moved, pin, presented, rest, scenario.now),
    }
    if let Some(pinned) = scenario.pinned
        && let Some(known) = scenario
            .chain
            .iter()
            .map(|c| c.known)
            .collect::<Option<Vec<Known>>>()
    {
        assert_eq!(
            following,
            model(pinned, &known, scenario.now),
            "the rule, on undamaged certificates"
        );
    }
}

/// "Nothing moves a pin unsigned": `moved` follows a path of statements in `chain`, each
/// signed (exactly as a fuzz key signs) by the key reached so far and valid at `now`.
fn check_signed_path(
    moved: &PinMove,
    pin: SpkiPin,
    presented: Option<SpkiPin>,
    chain: &[Cert],
    now: u64,
) {
    assert_eq!(moved.from, pin, "a move names the pin it starts from");
    assert_eq!(
        Some(moved.to),
        presented,
        "a move ends at the presented key"
    );
    assert_ne!(moved.from, moved.to, "a move goes somewhere");
    let keys = keys();
    // Each certificate a fuzz key signed, valid now: (signer's pin, subject's pin, end).
    let mut hops = Vec::new();
    for cert in chain {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&cert.der) else {
            continue;
        };
        let Some((starts, ends)) = validity(&cert.der) else {
            continue;
        };
        if now < starts || now > ends {
            continue;
        }
        let tbs = parsed.tbs_certificate.as_ref();
        let signature = parsed.signature_value.data.as_ref();
        let to = SpkiPin::of_spki(parsed.tbs_certificate.subject_pki.raw);
        for (k, key) in keys.signing.iter().enumerate() {
            if key.sign(tbs).to_bytes().as_slice() == signature {
                hops.push((keys.pins[k], to, ends));
            }
        }
    }
    let mut ends = Vec::new();
    paths(&hops, pin, moved.to, u64::MAX, &mut vec![pin], &mut ends);
    assert!(
        ends.contains(&moved.overlap_ends),
        "a pin moved from {pin} to {} until {} with no signed path ending then (paths end at {ends:?})",
        moved.to,
        moved.overlap_ends
    );
}

/// Collects into `out` the earliest end along every simple path of `hops` from `at` to
/// `to`.
fn paths(
    hops: &[(SpkiPin, SpkiPin, u64)],
    at: SpkiPin,
    to: SpkiPin,
    ends: u64,
    visited: &mut Vec<SpkiPin>,
    out: &mut Vec<u64>,
) {
    if at == to {
        out.push(ends);
        return;
    }
    for &(from, next, end) in hops {
        if from == at && !visited.contains(&next) {
            visited.push(next);
            paths(hops, next, to, ends.min(end), visited, out);
            visited.pop();
        }
    }
}

/// The rule, on undamaged certificates: from the pin, take the first (old certificate,
/// statement) pair whose old key is the key reached so far; the statement must be signed
/// by that key and valid now; until the presented key is reached.
fn model(pinned: usize, chain: &[Known], now: u64) -> Outcome {
    let keys = keys();
    let pin = |k: usize| keys.pins[k];
    let refuse = |refused| Outcome {
        accepted: false,
        moved: None,
        refused,
    };
    let Some((end_entity, rest)) = chain.split_first() else {
        return refuse(None);
    };
    let presented = end_entity.key;
    let mut current = pinned;
    let mut ends = u64::MAX;
    for _ in 0..=rest.len() / 2 {
        if current == presented {
            return Outcome {
                accepted: true,
                moved: (current != pinned).then_some(PinMove {
                    from: pin(pinned),
                    to: pin(presented),
                    overlap_ends: ends,
                }),
                refused: None,
            };
        }
        let Some(pair) = rest.chunks_exact(2).find(|p| p[0].key == current) else {
            return refuse(None);
        };
        let (old, statement) = (pair[0], pair[1]);
        let from = pin(current);
        if statement.signer != old.key {
            return refuse(Some(RotationRefused::BadSignature { from }));
        }
        if now < statement.starts {
            return refuse(Some(RotationRefused::NotYetValid {
                from,
                starts: statement.starts,
            }));
        }
        if now > statement.ends {
            return refuse(Some(RotationRefused::Expired {
                from,
                to: pin(statement.key),
                ended: statement.ends,
            }));
        }
        ends = ends.min(statement.ends);
        current = statement.key;
    }
    refuse(None)
}

/// The seed corpus: one rotation in its overlap, the same after it and before it, a
/// chain of two rotations, a statement signed by another key, the pinned key itself, a
/// pin no key has, and damaged copies.
pub fn seeds() -> Vec<Vec<u8>> {
    const T: u32 = 1_800_000_000;
    const DAY: u32 = 86_400;
    let rotation = |signer, subject| Op::Statement {
        signer,
        subject,
        starts: T - DAY,
        length: 8 * DAY,
    };
    let one = [Op::Certificate(1), Op::Certificate(0), rotation(0, 1)];
    let two = [
        Op::Certificate(2),
        Op::Certificate(0),
        rotation(0, 1),
        Op::Certificate(1),
        Op::Statement {
            signer: 1,
            subject: 2,
            starts: T,
            length: 3 * DAY,
        },
    ];
    let forged = [Op::Certificate(1), Op::Certificate(0), rotation(2, 1)];
    let mut flipped = one.to_vec();
    flipped.push(Op::Flip { at: 200, with: 1 });
    let mut cut = one.to_vec();
    cut.push(Op::Truncate(100));
    let mut raw = vec![Op::Certificate(1), Op::Raw(b"not a certificate".to_vec())];
    raw.extend(one[1..].iter().cloned());
    vec![
        encode(0, T, &one),
        encode(0, T + 9 * DAY, &one),
        encode(0, T - 2 * DAY, &one),
        encode(0, T + DAY, &two),
        encode(1, T + DAY, &two),
        encode(0, T, &forged),
        encode(0, T, &[Op::Certificate(0)]),
        encode(0xff, T, &one),
        encode(0, T, &flipped),
        encode(0, T, &cut),
        encode(0, T, &raw),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The committed seed corpus holds what [`seeds`] makes (run with
    /// `COURIER_WRITE_ROTATION_SEEDS=1` to write it).
    #[test]
    fn seed_corpus_is_committed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/identity_rotations");
        for (i, seed) in seeds().iter().enumerate() {
            let path = dir.join(format!("seed-{i}"));
            if std::env::var_os("COURIER_WRITE_ROTATION_SEEDS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            assert_eq!(&std::fs::read(&path).unwrap(), seed, "{}", path.display());
            run(seed);
        }
    }

    /// The seeds reach each outcome of the rule: moves (one hop, two, from the middle of
    /// two), the pinned key itself, and each refusal.
    #[test]
    fn seeds_reach_every_outcome() {
        let keys = keys();
        let outcomes: Vec<Outcome> = seeds()
            .iter()
            .take(7)
            .map(|s| {
                let sc = Scenario::decode(s).unwrap();
                let known: Vec<Known> = sc.chain.iter().map(|c| c.known.unwrap()).collect();
                model(sc.pinned.unwrap(), &known, sc.now)
            })
            .collect();
        let moved = |o: &Outcome| o.moved.map(|m| (m.from, m.to));
        assert_eq!(moved(&outcomes[0]), Some((keys.pins[0], keys.pins[1])));
        assert!(matches!(
            outcomes[1].refused,
            Some(RotationRefused::Expired { .. })
        ));
        assert!(matches!(
            outcomes[2].refused,
            Some(RotationRefused::NotYetValid { .. })
        ));
        assert_eq!(moved(&outcomes[3]), Some((keys.pins[0], keys.pins[2])));
        assert_eq!(moved(&outcomes[4]), Some((keys.pins[1], keys.pins[2])));
        assert_eq!(
            outcomes[5].refused,
            Some(RotationRefused::BadSignature { from: keys.pins[0] })
        );
        assert!(outcomes[6].accepted && outcomes[6].moved.is_none());
        // A two-hop move ends with its earlier statement.
        let two_hop_end = outcomes[3].moved.unwrap().overlap_ends;
        assert_eq!(two_hop_end, u64::from(1_800_000_000u32 + 3 * 86_400));
    }

    /// Every single-byte change of a statement keeps to the oracle: a pin moves only if
    /// the signed part and the signature survived (a change elsewhere may leave both).
    #[test]
    fn every_single_byte_change_of_a_statement_keeps_to_the_oracle() {
        let one = [Op::Certificate(1), Op::Certificate(0)];
        let statement = Op::Statement {
            signer: 0,
            subject: 1,
            starts: 1_000,
            length: 1_000,
        };
        let len = statement_len();
        for at in 0..len {
            let mut ops = one.to_vec();
            ops.push(statement.clone());
            ops.push(Op::Flip {
                at: u16::try_from(at).unwrap(),
                with: 0x40,
            });
            run(&encode(0, 1_500, &ops));
        }
    }

    fn statement_len() -> usize {
        statement(0, 1, 1_000, 2_000).der.len()
    }
}
