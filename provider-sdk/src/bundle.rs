//! Building and signing a proxy bundle: the manifest is filled from the component's own type
//! information (its real exports and imports), never from what the vendor believes is in it.

use courier_protocol::{
    ContentHash, FreshnessStatement, InspectError, Manifest, ManifestError, Register,
    SignedFreshness, SignedManifest, SigningKey, SpkiPin, VendorKey, Verified, VerifyError,
    inspect,
};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a manifest stays valid unless [`BundleBuilder::validity`] says otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A signed manifest and the component it commits to: what a vendor registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The signed manifest.
    pub manifest: SignedManifest,
    /// The component bytes.
    pub component: Vec<u8>,
}

impl Bundle {
    /// The registration request for this bundle, asking for a lease of `ttl`.
    pub fn register_request(&self, ttl: Duration) -> Register {
        Register {
            manifest: self.manifest.clone(),
            component: self.component.clone(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            staged: false,
        }
    }

    /// A freshness statement by `key` (the bundle's vendor) that this bundle's version is
    /// the current one of its service, from now for `validity` (at most an hour). The lease
    /// keeper publishes one at registration and every few minutes; a client refuses a
    /// candidate without a fresh one.
    pub fn freshness(
        &self,
        key: &SigningKey,
        validity: Duration,
    ) -> Result<SignedFreshness, BundleError> {
        let manifest = self
            .manifest
            .peek()
            .map_err(|_| BundleError::Missing("manifest"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| BundleError::Clock)?;
        let now_ms = u64::try_from(now.as_millis()).map_err(|_| BundleError::Clock)?;
        let validity_ms = u64::try_from(validity.as_millis()).map_err(|_| BundleError::Clock)?;
        let statement = FreshnessStatement::new(
            VendorKey::of(key),
            [(manifest.name, manifest.version)],
            now_ms,
            validity_ms,
        );
        Ok(SignedFreshness::sign(&statement, key))
    }

    /// Checks the bundle as a registry would, apart from time and ownership: the signature,
    /// the manifest's rules, and that the component is exactly the committed bytes.
    pub fn verify(&self) -> Result<Verified<Manifest>, VerifyError> {
        let manifest = self.manifest.verify()?;
        manifest.check_component(&self.component)?;
        Ok(manifest)
    }
}

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A required field was not set.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The component's interfaces could not be read.
    #[error("cannot read the component: {0}")]
    Inspect(#[from] InspectError),
    /// The component exports no versioned service interface.
    #[error("the component exports no service interface")]
    NoExports,
    /// An interface chosen with [`BundleBuilder::only_export`] is not exported.
    #[error("the component does not export {0}")]
    NotExported(String),
    /// The manifest breaks a rule (name, version, sizes, ...).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The clock is before 1970 or the validity overflows.
    #[error("system clock or validity out of range")]
    Clock,
}

/// Builds a [`Bundle`]: `BundleBuilder::new(bytes).name(..).version(..).endpoint(..)
/// .provider_pin(..).sign(&key)`.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    component: Vec<u8>,
    name: Option<String>,
    version: Option<String>,
    endpoints: Vec<String>,
    provider_pin: Option<SpkiPin>,
    attributes: BTreeMap<String, String>,
    validity: Duration,
    issued_at: Option<SystemTime>,
    only_exports: Vec<String>,
}

impl BundleBuilder {
    /// Starts a bundle for the component `bytes`.
    pub fn new(component: impl Into<Vec<u8>>) -> Self {
        Self {
            component: component.into(),
            name: None,
            version: None,
            endpoints: Vec::new(),
            provider_pin: None,
            attributes: BTreeMap::new(),
            validity: DEFAULT_VALIDITY,
            issued_at: None,
            only_exports: Vec::new(),
        }
    }

    /// The service name (e.g. `acme/echo`). Required.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The proxy's version (semver). Required.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds a provider endpoint (`host:port`). At least one is required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// The pin of the provider's TLS key. Required.
    pub fn provider_pin(mut self, pin: SpkiPin) -> Self {
        self.provider_pin = Some(pin);
        self
    }

    /// Sets an attribute clients can match on.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// How long the manifest stays valid from its issue time (default 30 days).
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// The issue time (default: the system clock when the manifest is built).
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.issued_at = Some(at);
        self
    }

    /// Publishes only this exported interface (full name with version); may be repeated.
    /// By default every exported interface is listed.
    pub fn only_export(mut self, interface: impl Into<String>) -> Self {
        self.only_exports.push(interface.into());
        self
    }

    /// The manifest this builder describes for `vendor`, validated but not signed.
    pub fn manifest(&self, vendor: VendorKey) -> Result<Manifest, BundleError> {
        let interfaces = inspect(&self.component)?;
        let mut exports = interfaces.exports;
        if !self.only_exports.is_empty() {
            for wanted in &self.only_exports {
                if !exports.iter().any(|e| &e.interface == wanted) {
                    return Err(BundleError::NotExported(wanted.clone()));
                }
            }
            exports.retain(|e| self.only_exports.contains(&e.interface));
        }
        if exports.is_empty() {
            return Err(BundleError::NoExports);
        }
        let issued = self.issued_at.unwrap_or_else(SystemTime::now);
        let issued_at_ms = millis_since_epoch(issued)?;
        let validity_ms =
            u64::try_from(self.validity.as_millis()).map_err(|_| BundleError::Clock)?;
        let manifest = Manifest {
            name: self.name.clone().ok_or(BundleError::Missing("name"))?,
            version: self
                .version
                .clone()
                .ok_or(BundleError::Missing("version"))?,
            exports,
            imports: interfaces.imports,
            attributes: self.attributes.clone(),
            endpoints: self.endpoints.clone(),
            provider_pin: self
                .provider_pin
                .ok_or(BundleError::Missing("provider pin"))?,
            issued_at_ms,
            not_after_ms: issued_at_ms
                .checked_add(validity_ms)
                .ok_or(BundleError::Clock)?,
            component_hash: ContentHash::of(&self.component),
            component_size: self.component.len() as u64,
            vendor_key: vendor,
        };
        if manifest.endpoints.is_empty() {
            return Err(BundleError::Missing("endpoint"));
        }
        manifest.validate()?;
        Ok(manifest)
    }

    /// Builds the manifest for `key`'s public key and signs it.
    pub fn sign(self, key: &SigningKey) -> Result<Bundle, BundleError> {
        let manifest = self.manifest(VendorKey::of(key))?;
        Ok(Bundle {
            manifest: SignedManifest::sign(&manifest, key),
            component: self.component,
        })
    }
}

fn millis_since_epoch(t: SystemTime) -> Result<u64, BundleError> {
    let since = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| BundleError::Clock)?;
    u64::try_from(since.as_millis()).map_err(|_| BundleError::Clock)
}
