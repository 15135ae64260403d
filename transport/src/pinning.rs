//! Server certificate verification by SPKI pin: the peer's key must hash to the pin (or,
//! for a verifier that follows rotations, be reached from it by rotation statements the
//! pinned key signed, see `rotation.rs`), and the TLS 1.3 handshake signature must verify
//! with that key. Names and CAs play no part.

use crate::rotation::{Followed, PinMove, RotationRefused, follow};
use courier_protocol::SpkiPin;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};

/// Accepts the pinned server key and, if asked to, a key that rotations signed by the
/// pinned key lead to.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: SpkiPin,
    follow_rotations: bool,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Seen>,
}

/// What the verifier saw of the peer's certificates.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The pin of the key the peer presented.
    pub presented: Option<SpkiPin>,
    /// The rotation that led from the pin to it.
    pub moved: Option<PinMove>,
    /// Why a rotation the peer presented did not hold.
    pub refused: Option<RotationRefused>,
}

impl PinnedVerifier {
    /// A verifier accepting exactly `pin`, verifying handshake signatures with
    /// `provider`'s algorithms.
    pub fn new(pin: SpkiPin, provider: &CryptoProvider) -> Arc<Self> {
        Self::build(pin, false, provider)
    }

    /// A verifier accepting `pin` or a key valid, unexpired rotations out of it lead to.
    pub fn following_rotations(pin: SpkiPin, provider: &CryptoProvider) -> Arc<Self> {
        Self::build(pin, true, provider)
    }

    fn build(pin: SpkiPin, follow_rotations: bool, provider: &CryptoProvider) -> Arc<Self> {
        Arc::new(Self {
            pin,
            follow_rotations,
            algorithms: provider.signature_verification_algorithms,
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The pin this verifier starts from.
    pub fn pinned(&self) -> SpkiPin {
        self.pin
    }

    /// The pin the peer presented, if a certificate was seen.
    pub fn seen(&self) -> Option<SpkiPin> {
        self.outcome().presented
    }

    /// What the verifier saw: the key presented, and the rotation followed or refused.
    pub fn outcome(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = crate::spki_pin(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let mut seen = Seen {
            presented: Some(got),
            ..Seen::default()
        };
        let accepted = if got == self.pin {
            true
        } else if self.follow_rotations {
            match follow(
                self.pin,
                got,
                intermediates,
                now.as_secs(),
                &self.algorithms,
            ) {
                Followed::Reached(moved) => {
                    seen.moved = moved;
                    true
                }
                Followed::NoPath => false,
                Followed::Refused(why) => {
                    seen.refused = Some(why);
                    false
                }
            }
        } else {
            false
        };
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        if accepted {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
