//! TLS identities: a self-signed certificate whose key is pinned by its SPKI hash, kept
//! on disk with the rotation statements of the keys it replaced.

use crate::TransportError;
use courier_protocol::SpkiPin;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A TLS certificate and its private key. Peers pin [`Identity::pin`].
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pin: SpkiPin,
    /// Rotations kept for peers pinned to earlier keys: pairs of an old key's certificate
    /// and the statement it signed, oldest first.
    rotations: Vec<CertificateDer<'static>>,
}

/// A rotation done by [`Identity::rotate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityRotation {
    /// The key replaced.
    pub from: SpkiPin,
    /// The new key.
    pub to: SpkiPin,
    /// End of the overlap, seconds since the Unix epoch: until then peers pinned to
    /// `from` reach the registry and move their pin.
    pub overlap_ends: u64,
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
/// The new identity of a rotation under way, until its statement is written.
const NEXT_CERT_FILE: &str = "tls-next-cert.der";
const NEXT_KEY_FILE: &str = "tls-next-key.der";
/// The directory of rotation statements: `NNNN.issuer.der` (the old certificate) and
/// `NNNN.statement.der` (signed by the old key).
const ROTATIONS_DIR: &str = "tls-rotations";

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
            rotations: Vec::new(),
        })
    }

    /// Loads the identity kept in `dir`, or generates one and stores it there (key file mode
    /// 0600). Returns the identity and whether it was created now.
    /// A rotation kept in `dir` is presented with it; one interrupted before its
    /// statement was written is dropped, one interrupted after is finished.
    pub fn load_or_generate(dir: &Path) -> Result<(Self, bool), TransportError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        finish_rotation(dir)?;
        if cert_path.exists() && key_path.exists() {
            let mut id = Self::from_der(std::fs::read(&cert_path)?, std::fs::read(&key_path)?)?;
            id.rotations = load_rotations(dir)?
                .into_iter()
                .flat_map(|(issuer, statement)| [issuer, statement])
                .map(CertificateDer::from)
                .collect();
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

    /// Replaces the identity kept in `dir` with a new key, and keeps a statement signed by
    /// the old key that names the new one, valid for `overlap` from now. The new identity
    /// is what [`Identity::load_or_generate`] loads next, presented with the statement.
    pub fn rotate(dir: &Path, overlap: Duration) -> Result<IdentityRotation, TransportError> {
        let (old, created) = Self::load_or_generate(dir)?;
        if created {
            return Err(TransportError::Certificate(format!(
                "no identity in {} to rotate (a new one was made)",
                dir.display()
            )));
        }
        let next = Self::generate()?;
        let end = SystemTime::now() + overlap;
        let statement = crate::rotation::rotation_statement(
            old.key.secret_pkcs8_der(),
            next.key.secret_pkcs8_der(),
            end,
        )?;
        // The statement is the commit point: written after the new identity, before it
        // replaces the old one.
        courier_durable::write_atomic(&dir.join(NEXT_KEY_FILE), next.key.secret_pkcs8_der())?;
        courier_durable::write_atomic(&dir.join(NEXT_CERT_FILE), next.cert.as_ref())?;
        let rotations = dir.join(ROTATIONS_DIR);
        std::fs::create_dir_all(&rotations)?;
        let seq = load_rotations(dir)?.len() + 1;
        courier_durable::write_atomic(
            &rotations.join(format!("{seq:04}.issuer.der")),
            old.cert.as_ref(),
        )?;
        courier_durable::write_new(
            &rotations.join(format!("{seq:04}.statement.der")),
            &statement,
        )?;
        courier_durable::sync_parent(&rotations)?;
        finish_rotation(dir)?;
        Ok(IdentityRotation {
            from: old.pin,
            to: next.pin,
            overlap_ends: end.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    }

    /// The certificate chain for rustls: the certificate, then the rotations kept.
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.cert.clone())
            .chain(self.rotations.iter().cloned())
            .collect()
    }

    /// How many rotations are presented with the certificate.
    pub fn rotations(&self) -> usize {
        self.rotations.len() / 2
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// A kept rotation: the old key's certificate and the statement it signed (DER).
type KeptRotation = (Vec<u8>, Vec<u8>);

/// The rotations kept in `dir`, oldest first.
fn load_rotations(dir: &Path) -> Result<Vec<KeptRotation>, TransportError> {
    let rotations = dir.join(ROTATIONS_DIR);
    let mut out = Vec::new();
    for seq in 1.. {
        let issuer = rotations.join(format!("{seq:04}.issuer.der"));
        let statement = rotations.join(format!("{seq:04}.statement.der"));
        if !issuer.exists() || !statement.exists() {
            break;
        }
        out.push((std::fs::read(issuer)?, std::fs::read(statement)?));
    }
    Ok(out)
}

/// Completes a rotation a crash interrupted: its new identity replaces the old one if its
/// statement was written, and is dropped if not.
fn finish_rotation(dir: &Path) -> Result<(), TransportError> {
    let next_cert = dir.join(NEXT_CERT_FILE);
    let next_key = dir.join(NEXT_KEY_FILE);
    if !next_cert.exists() {
        // The key may have been moved already; a key alone never replaces anything.
        if next_key.exists() {
            std::fs::remove_file(&next_key)?;
        }
        return Ok(());
    }
    let next_pin = spki_pin(&std::fs::read(&next_cert)?)?;
    let committed = load_rotations(dir)?
        .iter()
        .any(|(_, statement)| spki_pin(statement).is_ok_and(|p| p == next_pin));
    if committed {
        if next_key.exists() {
            std::fs::rename(&next_key, dir.join(KEY_FILE))?;
        }
        std::fs::rename(&next_cert, dir.join(CERT_FILE))?;
    } else {
        std::fs::remove_file(&next_cert)?;
        if next_key.exists() {
            std::fs::remove_file(&next_key)?;
        }
    }
    courier_durable::sync_dir(dir)?;
    Ok(())
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
