//! The one place that knows the encoding: postcard values inside length-prefixed frames.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of postcard. Frames
//! longer than [`MAX_FRAME_LEN`](crate::limits::MAX_FRAME_LEN) are refused before anything is allocated, and every decode
//! failure is a [`CodecError`], never a panic.

use serde::{Serialize, de::DeserializeOwned};

use crate::limits::FRAME_HEADER_LEN;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The header announces more than the cap allows.
    #[error("frame of {len} bytes exceeds the cap of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// The input ends before the frame or value does.
    #[error("truncated input")]
    Truncated,
    /// The bytes are not a valid encoding of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A value decoded but bytes were left over.
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
}

/// Encodes a value. Encoding an in-memory value into a `Vec` cannot fail for our types.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap_or_else(|e| {
        // Only reachable with types postcard cannot represent (none of ours).
        unreachable!("postcard encoding failed: {e}")
    })
}

/// Decodes exactly one value from `bytes`, refusing trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CodecError::TrailingBytes(rest.len())),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Err(CodecError::Truncated),
        Err(e) => Err(CodecError::Malformed(e.to_string())),
    }
}

/// A value's text form: the hex of its encoding (signed statements kept in files).
pub fn to_hex<T: Serialize + ?Sized>(value: &T) -> String {
    hex::encode(encode(value))
}

/// Parses [`to_hex`]: hex (surrounding whitespace ignored), then exactly one value.
pub fn from_hex<T: DeserializeOwned>(text: &str) -> Result<T, CodecError> {
    let bytes = hex::decode(text.trim()).map_err(|e| CodecError::Malformed(format!("hex: {e}")))?;
    decode(&bytes)
}

/// Encodes a value as one frame: header then body, in one buffer (the body is written after
/// a placeholder header, which then gets the body's length).
pub fn encode_frame<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = postcard::to_extend(value, vec![0u8; FRAME_HEADER_LEN]).unwrap_or_else(|e| {
        // Only reachable with types postcard cannot represent (none of ours).
        unreachable!("postcard encoding failed: {e}")
    });
    let len = (out.len() - FRAME_HEADER_LEN) as u32;
    out[..FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    // The buffer grew by doubling; a large frame (a component) is kept until the peer
    // acknowledges it, so do not keep up to twice its size for that long.
    if out.capacity() - out.len() > 64 << 10 {
        out.shrink_to_fit();
    }
    out
}

/// Reads a frame header and checks the announced length against `max`.
pub fn frame_len(header: [u8; FRAME_HEADER_LEN], max: usize) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(CodecError::FrameTooLarge { len, max });
    }
    Ok(len)
}

/// A frame's body and the bytes after it.
pub type FrameSplit<'a> = (&'a [u8], &'a [u8]);

/// Splits one frame off the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<FrameSplit<'_>>, CodecError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
    let len = frame_len(header, max)?;
    let rest = &buf[FRAME_HEADER_LEN..];
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some(rest.split_at(len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_FRAME_LEN;
    use crate::wire::{Request, Response};
    use proptest::prelude::*;

    #[test]
    fn frame_round_trip() {
        let req = Request::Renew {
            lease: crate::LeaseId([9; 16]),
            ttl_ms: 30_000,
        };
        let frame = encode_frame(&req);
        let body = encode(&req);
        assert_eq!(frame[..FRAME_HEADER_LEN], (body.len() as u32).to_be_bytes());
        assert_eq!(frame[FRAME_HEADER_LEN..], body[..]);
        let (body, rest) = split_frame(&frame, MAX_FRAME_LEN).unwrap().unwrap();
        assert!(rest.is_empty());
        assert_eq!(decode::<Request>(body).unwrap(), req);
        assert_eq!(split_frame(&frame[..3], MAX_FRAME_LEN).unwrap(), None);
        assert_eq!(
            split_frame(&frame[..frame.len() - 1], MAX_FRAME_LEN).unwrap(),
            None
        );
    }

    #[test]
    fn oversized_frame_refused() {
        let header = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        assert!(matches!(
            frame_len(header, MAX_FRAME_LEN),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_and_trailing_refused() {
        let bytes = encode(&Request::Leases {
            filter: Default::default(),
            after: None,
            limit: 10,
        });
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode::<Request>(&longer),
            Err(CodecError::TrailingBytes(1))
        );
        let bytes = encode(&Request::Fetch {
            hash: crate::ContentHash([1; 32]),
            lease: None,
        });
        assert_eq!(decode::<Request>(&bytes[..10]), Err(CodecError::Truncated));
        assert!(matches!(
            decode::<Request>(&[250, 1, 2]),
            Err(CodecError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
            let _ = split_frame(&bytes, 1024);
        }
    }
}
