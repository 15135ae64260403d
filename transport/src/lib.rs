//! courier's QUIC transport, shared by the registry, providers and clients: TLS identities
//! kept on disk, SPKI pinning instead of certificate authorities, ALPN `courier/1`, and
//! framed request/response streams. This crate moves bytes; what they mean is `courier-protocol`.

mod endpoint;
mod error;
mod framing;
mod identity;
mod pin_book;
mod pinning;
mod provider;
mod registry_client;
mod rotation;
mod stream_pool;

pub use endpoint::{
    SERVER_NAME, ServerLimits, client_endpoint, connect, connect_following, resolve,
    server_endpoint,
};
pub use error::TransportError;
pub use framing::{FrameBudget, FrameBuffer, Unbudgeted, call, read_one, write_frame};
pub use identity::{Identity, IdentityRotation, spki_pin};
pub use pin_book::{PinBook, PinBookError};
pub use pinning::{PinnedVerifier, Seen};
pub use provider::{HelloError, close_code, provider_hello};
pub use registry_client::{
    CONNECT_TIMEOUT, ClientError, EventStream, LISTENER_BACKLOG, LeaseTable, Listener,
    NODE_CONNECT_TIMEOUT, NODE_REQUEST_TIMEOUT, RegistryClient,
};
pub use rotation::{PinMove, RotationRefused, rotation_statement, rotation_statement_between};
pub use stream_pool::{POOL_IDLE, StreamPool};
