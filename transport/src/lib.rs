//! courier's QUIC transport, shared by the registry, providers and clients: TLS identities
//! kept on disk, SPKI pinning instead of certificate authorities, ALPN `courier/1`, and
//! framed request/response streams. This crate moves bytes; what they mean is `courier-protocol`.

pub mod endpoint;
pub mod error;
pub mod framing;
pub mod identity;
pub mod pinning;
pub mod provider;
pub mod registry_client;
pub mod stream_pool;

pub use endpoint::{ServerLimits, client_endpoint, connect, resolve, server_endpoint};
pub use error::TransportError;
pub use framing::{FrameBudget, FrameBuffer, Unbudgeted, call, read_one, write_frame};
pub use identity::{Identity, spki_pin};
pub use provider::{HelloError, provider_hello};
pub use registry_client::{ClientError, EventStream, RegistryClient};
pub use stream_pool::StreamPool;
