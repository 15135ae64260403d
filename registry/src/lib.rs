//! courier's registry (the service manager): vendors register signed WebAssembly proxies
//! under leases, clients find them by interface, operators watch the leases.
//!
//! Layers, from the inside out:
//! - [`lease_table`]: the pure, sans-IO lease table (time passed in, no IO).
//! - [`catalog`] and [`matcher`]: registrations indexed by interface, ranked matching.
//! - [`events`]: sequence-numbered events, a bounded ring and live fan-out.
//! - [`keys`]: the key book, key rotations and revocations in force.
//! - [`store`]: redb plus content-addressed component blobs.
//! - [`registry`]: the state and operations glued together, synchronous, testable alone.
//! - [`server`]: the thin tokio/quinn driver, with the admission caps of [`limits`].

pub mod catalog;
pub mod events;
pub mod keys;
pub mod lease_table;
pub mod limits;
pub mod matcher;
pub mod registry;
pub mod server;
pub mod store;

pub use lease_table::{LeasePolicy, LeaseTable, Millis};
pub use registry::{
    FindError, FlushStats, GrantError, LeaseError, OpenError, ReadError, RegisterError, Registry,
    RegistryConfig, ReportError, StatementRefused,
};
pub use server::{RegistryHandle, ServeError, serve};
