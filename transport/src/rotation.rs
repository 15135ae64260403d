//! Rotation of a TLS identity: a certificate for the new key issued and signed by the old
//! key, valid until the end of the overlap (the rotation statement), and the check that
//! follows such statements from a pinned key to the key a server presents.
//!
//! A server in its overlap sends, after its own certificate, a pair per rotation it keeps:
//! the old key's certificate (so the verifier has the old public key, which a pin alone
//! does not give) and the statement the old key signed. A verifier starts at its pin and
//! follows the pairs, each signed by the key reached so far and not expired, until it
//! reaches the presented key.

use crate::TransportError;
use courier_protocol::SpkiPin;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls_pki_types::CertificateDer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The subject name of a rotation statement, which says what the certificate is for.
const STATEMENT_NAME: &str = "courier registry identity rotation";

/// A pin moved by a rotation the pinned key signed (through a chain of rotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinMove {
    /// The pin that was given.
    pub from: SpkiPin,
    /// The key the server presented, which the rotation leads to.
    pub to: SpkiPin,
    /// When the overlap ends (the earliest end along the chain), seconds since the Unix
    /// epoch: after it, `from` no longer reaches the server.
    pub overlap_ends: u64,
}

/// Why a rotation presented by a server does not move a pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationRefused {
    /// The rotation out of the pinned key ended: the overlap is over.
    #[error("its rotation from {from} to {to} ended at {ended} (unix seconds)")]
    Expired {
        /// The key the statement is about.
        from: SpkiPin,
        /// The key it rotated to.
        to: SpkiPin,
        /// The end of the overlap, seconds since the Unix epoch.
        ended: u64,
    },
    /// The rotation out of the pinned key is not valid yet.
    #[error("its rotation from {from} is not valid before {starts} (unix seconds)")]
    NotYetValid {
        /// The key the statement is about.
        from: SpkiPin,
        /// Start of the statement's validity, seconds since the Unix epoch.
        starts: u64,
    },
    /// The rotation claims to come from the pinned key, but that key did not sign it.
    #[error("a rotation from {from} carries a signature that key did not make")]
    BadSignature {
        /// The key the statement claims to come from.
        from: SpkiPin,
    },
    /// A certificate of the chain does not parse.
    #[error("a rotation certificate does not parse: {0}")]
    Malformed(String),
}

/// What following a presented chain from a pin came to.
#[derive(Debug)]
pub(crate) enum Followed {
    /// The presented key is the pinned one, or rotations lead to it.
    Reached(Option<PinMove>),
    /// No rotation out of the pinned key was presented.
    NoPath,
    /// A rotation out of a key reached was presented but does not hold.
    Refused(RotationRefused),
}

/// A statement, signed by `old`'s key, that `new`'s key replaces it until `overlap_end`:
/// a certificate for `new`'s public key issued by `old`.
pub fn rotation_statement(
    old_key_pkcs8: &[u8],
    new_key_pkcs8: &[u8],
    overlap_end: SystemTime,
) -> Result<Vec<u8>, TransportError> {
    let now = SystemTime::now();
    let start = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
    rotation_statement_between(
        old_key_pkcs8,
        new_key_pkcs8,
        start.min(overlap_end),
        overlap_end,
    )
}

/// Like [`rotation_statement`], valid from `not_before` to `not_after` (whole seconds).
/// With Ed25519 keys the statement's bytes depend on nothing else, which is what the
/// `identity_rotations` fuzz target needs.
pub fn rotation_statement_between(
    old_key_pkcs8: &[u8],
    new_key_pkcs8: &[u8],
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Vec<u8>, TransportError> {
    let cert_err = |e: rcgen::Error| TransportError::Certificate(e.to_string());
    let old = rcgen::KeyPair::try_from(old_key_pkcs8).map_err(cert_err)?;
    let new = rcgen::KeyPair::try_from(new_key_pkcs8).map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, STATEMENT_NAME);
    params.not_before = offset_time(not_before)?;
    params.not_after = offset_time(not_after)?;
    let issuer_params =
        rcgen::CertificateParams::new(vec!["courier".to_string()]).map_err(cert_err)?;
    let issuer = rcgen::Issuer::new(issuer_params, old);
    let cert = params.signed_by(&new, &issuer).map_err(cert_err)?;
    Ok(cert.der().to_vec())
}

/// Follows the rotations in `intermediates` (pairs of the old key's certificate and the
/// statement it signed) from `pinned` to `presented`, at `now_secs`.
pub(crate) fn follow(
    pinned: SpkiPin,
    presented: SpkiPin,
    intermediates: &[CertificateDer<'_>],
    now_secs: u64,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Followed {
    let mut current = pinned;
    let mut ends = u64::MAX;
    // Each pair is used at most once, so a chain that loops ends.
    for _ in 0..=intermediates.len() / 2 {
        if current == presented {
            let moved = (current != pinned).then_some(PinMove {
                from: pinned,
                to: presented,
                overlap_ends: ends,
            });
            return Followed::Reached(moved);
        }
        let hop = intermediates
            .chunks_exact(2)
            .find(|pair| crate::spki_pin(&pair[0]).is_ok_and(|p| p == current));
        let Some(pair) = hop else {
            return Followed::NoPath;
        };
        match check_hop(current, &pair[0], &pair[1], now_secs, algorithms) {
            Ok((next, end)) => {
                ends = ends.min(end);
                current = next;
            }
            Err(refused) => return Followed::Refused(refused),
        }
    }
    Followed::NoPath
}

/// Checks that `statement` is signed by the key of `issuer` (whose pin is `from`) and
/// valid at `now_secs`; returns the key it rotates to and its end.
fn check_hop(
    from: SpkiPin,
    issuer: &[u8],
    statement: &[u8],
    now_secs: u64,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(SpkiPin, u64), RotationRefused> {
    let parse = |der| {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| c)
            .map_err(|e| RotationRefused::Malformed(e.to_string()))
    };
    let issuer = parse(issuer)?;
    let statement = parse(statement)?;
    let old_key = &issuer.tbs_certificate.subject_pki.subject_public_key.data;
    let signed = statement.tbs_certificate.as_ref();
    let signature = &statement.signature_value.data;
    let verifies = algorithms
        .all
        .iter()
        .any(|alg| alg.verify_signature(old_key, signed, signature).is_ok());
    if !verifies {
        return Err(RotationRefused::BadSignature { from });
    }
    let to = SpkiPin::of_spki(statement.tbs_certificate.subject_pki.raw);
    let validity = statement.validity();
    let starts = u64::try_from(validity.not_before.timestamp()).unwrap_or(0);
    let ended = u64::try_from(validity.not_after.timestamp()).unwrap_or(0);
    if now_secs < starts {
        return Err(RotationRefused::NotYetValid { from, starts });
    }
    if now_secs > ended {
        return Err(RotationRefused::Expired { from, to, ended });
    }
    Ok((to, ended))
}

/// `t` as the time type certificates are made with.
fn offset_time(t: SystemTime) -> Result<time::OffsetDateTime, TransportError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TransportError::Certificate("time before 1970".into()))?
        .as_secs();
    let secs =
        i64::try_from(secs).map_err(|_| TransportError::Certificate("time too far".into()))?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| TransportError::Certificate(e.to_string()))
}
