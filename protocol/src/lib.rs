//! courier's protocol: the proxy manifest, signing and verification, wire messages and
//! framing. Everything here is a pure function over bytes: no IO, no clock, no tokio.
//!
//! Only this crate defines serialized types; the other crates convert to their own types at
//! the boundary. The codec (postcard) is confined to [`codec`].

pub mod codec;
pub mod limits;

mod component;
mod freshness;
mod hash;
mod interface;
mod manifest;
mod operator;
mod root;
mod signing;
mod statement;
mod wire;

pub use component::{ComponentInterfaces, InspectError, inspect};
pub use freshness::{
    FRESHNESS_DOMAIN, FRESHNESS_SKEW_MS, FreshnessError, FreshnessStatement, FreshnessTimeError,
    MAX_FRESHNESS_SERVICES, MAX_FRESHNESS_VALIDITY_MS, SignedFreshness,
};
pub use hash::{ContentHash, DigestParseError, SpkiPin};
pub use interface::{InterfaceName, InterfaceNameError, InterfaceRef};
pub use manifest::{CLOCK_SKEW_MS, Export, Manifest, ManifestError};
pub use operator::{OperatorStatement, SignedOperatorStatement};
pub use root::{
    Authority, AuthorityError, Delegation, DelegationError, DelegationStatement, MAX_DELEGATIONS,
    MAX_PATTERN_LEN, MAX_PATTERNS, MAX_ROOT_KEYS, NamePattern, NamePatternError, RootError, RootId,
    RootKeys, RootSignature, RootStatement, SignedDelegation, SignedRootStatement,
};
pub use signing::{
    AUTH_DOMAIN, KEY_STATEMENT_DOMAIN, MANIFEST_DOMAIN, OPERATOR_STATEMENT_DOMAIN, SignedManifest,
    SigningKey, VendorKey, VendorKeyParseError, Verified, VerifyError, auth_message, sign,
};
pub use signing::{DELEGATION_DOMAIN, ROOT_STATEMENT_DOMAIN};
pub use statement::{KeyAction, KeyStatement, SignedKeyStatement, StatementError};
pub use wire::*;

/// The wire protocol version carried in the first message of every connection.
pub const PROTOCOL_VERSION: u16 = 4;

/// The ALPN identifier every courier QUIC connection negotiates.
pub const ALPN: &[u8] = b"courier/1";
