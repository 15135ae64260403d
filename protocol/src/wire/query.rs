//! What a client asks for, and the candidates the registry answers with.

use super::LeaseId;
use crate::freshness::SignedFreshness;
use crate::signing::SignedManifest;
use serde::{Deserialize, Serialize};

/// What a client asks for: an interface, functions it needs, attribute constraints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceQuery {
    /// `namespace:package/interface`; with `@version` and no `version_req`, a version
    /// compatible with it (`^version`).
    pub interface: String,
    /// A semver requirement on the interface version (e.g. `^0.1`, `=0.1.2`), if any.
    pub version_req: Option<String>,
    /// Functions that must exist in the interface.
    pub functions: Vec<String>,
    /// Attribute constraints, all of which must hold.
    pub attributes: Vec<AttributeConstraint>,
    /// Most candidates wanted (the registry caps it).
    pub limit: u32,
}

/// A constraint on one manifest attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttributeConstraint {
    /// The attribute equals the value.
    Equals(String, String),
    /// The attribute is present.
    Present(String),
    /// The attribute is absent.
    Absent(String),
}

impl std::fmt::Display for AttributeConstraint {
    /// The CLI's form: `key=value`, `key`, `!key`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttributeConstraint::Equals(k, v) => write!(f, "{k}={v}"),
            AttributeConstraint::Present(k) => write!(f, "{k}"),
            AttributeConstraint::Absent(k) => write!(f, "!{k}"),
        }
    }
}

impl std::fmt::Display for ServiceQuery {
    /// `interface[@requirement][ with f, g][ where a=b, !c]`, for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.interface)?;
        if let Some(req) = &self.version_req {
            write!(f, "@{req}")?;
        }
        if !self.functions.is_empty() {
            write!(f, " with {}", self.functions.join(", "))?;
        }
        for (i, a) in self.attributes.iter().enumerate() {
            write!(f, "{}{a}", if i == 0 { " where " } else { ", " })?;
        }
        Ok(())
    }
}

/// One proxy that matches a query: metadata only, the payload is fetched by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The lease under which it is registered.
    pub lease: LeaseId,
    /// The signed manifest, for the client to verify itself.
    pub manifest: SignedManifest,
    /// The matched interface with its version.
    pub interface: String,
    /// Milliseconds left on the lease.
    pub remaining_ms: u64,
    /// The latest freshness statement of the candidate's vendor naming its service, if the
    /// registry holds one (the client verifies it, and refuses a candidate without one).
    pub freshness: Option<SignedFreshness>,
}
