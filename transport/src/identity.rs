//! TLS identities: a self-signed certificate whose key is pinned by its SPKI hash.

use crate::TransportError;
use courier_protocol::SpkiPin;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;

/// A TLS certificate and its private key. Peers pin [`Identity::pin`].
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pin: SpkiPin,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

const CERT_FILE: &str = "tls-cert.der";
const KEY_FILE: &str = "tls-key.der";

/// The SPKI pin of a DER certificate.
pub fn spki_pin(cert_der: &[u8]) -> Result<SpkiPin, TransportError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
    Ok(SpkiPin::of_spki(cert.tbs_certificate.subject_pki.raw))
}

impl Identity {
    /// Generates a fresh ECDSA P-256 key and a self-signed certificate for it.
    pub fn generate() -> Result<Self, TransportError> {
        let ck = rcgen::generate_simple_self_signed(vec!["courier".to_string()])
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let cert = ck.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        Self::from_der(cert.to_vec(), key.secret_pkcs8_der().to_vec())
    }

    /// Builds an identity from DER certificate and PKCS#8 key bytes.
    pub fn from_der(cert: Vec<u8>, key: Vec<u8>) -> Result<Self, TransportError> {
        let pin = spki_pin(&cert)?;
        Ok(Self {
            cert: CertificateDer::from(cert),
            key: PrivatePkcs8KeyDer::from(key),
            pin,
        })
    }

    /// Loads the identity kept in `dir`, or generates one and stores it there (key file mode
    /// 0600). Returns the identity and whether it was created now.
    pub fn load_or_generate(dir: &Path) -> Result<(Self, bool), TransportError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            let id = Self::from_der(std::fs::read(&cert_path)?, std::fs::read(&key_path)?)?;
            return Ok((id, false));
        }
        std::fs::create_dir_all(dir)?;
        let id = Self::generate()?;
        courier_durable::write_atomic(&key_path, id.key.secret_pkcs8_der())?;
        courier_durable::write_atomic(&cert_path, id.cert.as_ref())?;
        Ok((id, true))
    }

    /// The pin peers must use: SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub fn pin(&self) -> SpkiPin {
        self.pin
    }

    /// The certificate chain for rustls.
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_with_same_pin() {
        let dir = std::env::temp_dir().join(format!("courier-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, created) = Identity::load_or_generate(&dir).unwrap();
        assert!(created);
        let (b, created) = Identity::load_or_generate(&dir).unwrap();
        assert!(!created);
        assert_eq!(a.pin(), b.pin());
        assert_ne!(a.pin(), Identity::generate().unwrap().pin());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
