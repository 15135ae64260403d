//! Server certificate verification by SPKI pin: the peer's key must hash to the pin, and
//! the TLS 1.3 handshake signature must verify with that key. Names and CAs play no part.

use courier_protocol::SpkiPin;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};

/// Accepts exactly one server key, the pinned one.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: SpkiPin,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<SpkiPin>>,
}

impl PinnedVerifier {
    /// A verifier for `pin`, verifying handshake signatures with `provider`'s algorithms.
    pub fn new(pin: SpkiPin, provider: &CryptoProvider) -> Arc<Self> {
        Arc::new(Self {
            pin,
            algorithms: provider.signature_verification_algorithms,
            seen: Mutex::new(None),
        })
    }

    /// The pin the peer presented, if a certificate was seen.
    pub fn seen(&self) -> Option<SpkiPin> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = crate::spki_pin(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(got);
        if got == self.pin {
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
