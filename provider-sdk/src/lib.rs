//! courier's vendor side: generate and keep vendor keys, build and sign proxy bundles from a
//! component's real interfaces, register them and keep their leases alive in the background,
//! and serve the provider's own service over QUIC.
//!
//! - [`keys`]: vendor signing keys and their private key files.
//! - [`bundle`]: [`BundleBuilder`] reads a component's exports and imports and signs a manifest.
//! - [`lease_keeper`]: [`LeaseKeeper`] registers, renews, re-registers, reconnects, cancels.
//! - `Bundle::register_once`: one registration and one freshness statement, no keeper.
//! - [`service`]: [`ServiceBuilder`] serves methods over QUIC; [`ProviderClient`] calls them.

pub mod bundle;
pub mod keys;
pub mod lease_keeper;
mod register_once;
pub mod service;

pub use bundle::{Bundle, BundleBuilder, BundleError, DEFAULT_VALIDITY};
pub use keys::{LoadKeyError, SaveKeyError, generate_key, load_key, public_key, save_key};
pub use lease_keeper::{
    DEFAULT_FRESHNESS_VALIDITY, KeeperConfig, LeaseKeeper, LeaseState, ShutdownError, WaitError,
};
pub use register_once::RegisterOnceError;
pub use service::{
    ClientOptions, HandlerResult, ProviderCallError, ProviderClient, ProviderConnectError,
    ServeError, ServiceBuilder, ServiceConfig, ServiceHandle,
};
