//! Transport errors.

use courier_protocol::SpkiPin;
use courier_protocol::codec::CodecError;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Reading or writing identity files, or binding a socket.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A certificate could not be made or parsed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The address does not resolve or is malformed.
    #[error("cannot resolve {0:?}")]
    Address(String),
    /// The connection could not be started.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The peer presented a TLS key other than the pinned one.
    #[error("peer presented TLS key {got}, but {expected} is pinned")]
    PinMismatch {
        /// The pinned key.
        expected: SpkiPin,
        /// The key the peer presented.
        got: SpkiPin,
    },
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream ended before a whole frame arrived.
    #[error("stream ended before a whole frame arrived")]
    Truncated,
    /// Reading from a stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// A frame was refused by the codec (too large, malformed).
    #[error("frame: {0}")]
    Codec(#[from] CodecError),
    /// A frame found no room in its reader's budget.
    #[error("no room for a frame: {0}")]
    NoRoom(&'static str),
    /// The operation took longer than its deadline.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The peer presented a key other than the pinned one with a rotation out of the
    /// pinned key that does not hold (expired: the overlap is over; or forged).
    #[error("peer presented TLS key {presented}, but {pinned} is pinned and {reason}")]
    RotationRefused {
        /// The pinned key.
        pinned: SpkiPin,
        /// The key the peer presented.
        presented: SpkiPin,
        /// Why the rotation does not hold.
        reason: Box<crate::RotationRefused>,
    },
}

impl From<quinn::ReadExactError> for TransportError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::FinishedEarly(_) => TransportError::Truncated,
            quinn::ReadExactError::ReadError(e) => TransportError::Read(e),
        }
    }
}

impl From<quinn::ClosedStream> for TransportError {
    fn from(_: quinn::ClosedStream) -> Self {
        TransportError::Write(quinn::WriteError::ClosedStream)
    }
}
