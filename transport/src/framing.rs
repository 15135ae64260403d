//! Frames over QUIC streams: a 4-byte length, then a postcard body, capped before allocation.

use crate::TransportError;
use courier_protocol::codec;
use courier_protocol::limits::FRAME_HEADER_LEN;
use serde::{Serialize, de::DeserializeOwned};

/// Writes one frame.
pub async fn write_frame<T: Serialize + ?Sized>(
    send: &mut quinn::SendStream,
    value: &T,
) -> Result<(), TransportError> {
    // Handing quinn the buffer itself saves it a copy and an allocation.
    send.write_chunk(codec::encode_frame(value).into()).await?;
    Ok(())
}

/// Reads the one frame of a stream that carries one (an answer on its own stream), of at
/// most `max` body bytes.
pub async fn read_one<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<T, TransportError> {
    FrameBuffer::new()
        .read(recv, max)
        .await?
        .ok_or(TransportError::Truncated)
}

/// Sends one request on a new bidirectional stream and reads one response.
pub async fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
    conn: &quinn::Connection,
    request: &Req,
    max_response: usize,
) -> Result<Resp, TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, request).await?;
    send.finish()?;
    read_one(&mut recv, max_response).await
}

/// A [`FrameBuffer`] larger than this is let go once empty.
const KEPT_CAPACITY: usize = 64 << 10;

/// Room for a large frame while it is read, asked for once its header is in and before its
/// body is buffered (the registry's budget for large requests across all connections).
pub trait FrameBudget {
    /// Held while the frame's bytes are.
    type Permit;

    /// Room for a frame of `len` body bytes, or why there is none.
    fn admit(&self, len: usize) -> impl Future<Output = Result<Self::Permit, TransportError>>;
}

/// No budget: every frame within its cap is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unbudgeted;

impl FrameBudget for Unbudgeted {
    type Permit = ();

    async fn admit(&self, _len: usize) -> Result<(), TransportError> {
        Ok(())
    }
}

/// The one frame reader: reads the frames of a stream through a buffer. A small frame
/// usually arrives in one QUIC chunk, so each frame costs one read of the stream instead of
/// two (header, then body). Bytes past a frame stay buffered for the next one; the buffer
/// never holds more than one frame of at most `max` bytes plus one chunk.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next frame of at most `max` body bytes. `Ok(None)` when the stream ends between
    /// frames: finished, reset, or its connection gone, since a peer going away between
    /// requests is the normal end of a kept stream.
    pub async fn read<T: DeserializeOwned>(
        &mut self,
        recv: &mut quinn::RecvStream,
        max: usize,
    ) -> Result<Option<T>, TransportError> {
        self.read_within(recv, max, &Unbudgeted).await
    }

    /// [`FrameBuffer::read`], asking `budget` for room for each frame before its body is
    /// buffered, and holding that room until the frame is decoded and its bytes let go.
    pub async fn read_within<T: DeserializeOwned, B: FrameBudget>(
        &mut self,
        recv: &mut quinn::RecvStream,
        max: usize,
        budget: &B,
    ) -> Result<Option<T>, TransportError> {
        // Held until the frame is decoded and its bytes let go.
        let mut room = None;
        loop {
            if room.is_none()
                && let Some(header) = self.buf.first_chunk::<{ FRAME_HEADER_LEN }>()
            {
                // The frame's size is known (and within `max`): room for it first, then the
                // buffer grows once.
                let len = codec::frame_len(*header, max)?;
                room = Some(budget.admit(len).await?);
                self.buf
                    .reserve((FRAME_HEADER_LEN + len).saturating_sub(self.buf.len()));
            }
            if let Some((body, rest)) = codec::split_frame(&self.buf, max)? {
                let value = codec::decode(body);
                let used = self.buf.len() - rest.len();
                self.buf.drain(..used);
                if self.buf.is_empty() && self.buf.capacity() > KEPT_CAPACITY {
                    // A large frame passed: do not keep its buffer with an idle stream.
                    self.buf = Vec::new();
                }
                drop(room);
                return Ok(Some(value?));
            }
            let want = (max + FRAME_HEADER_LEN).saturating_sub(self.buf.len());
            match recv.read_chunk(want.max(1), true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err(TransportError::Truncated),
                Err(
                    quinn::ReadError::ConnectionLost(_)
                    | quinn::ReadError::Reset(_)
                    | quinn::ReadError::ClosedStream,
                ) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Identity, ServerLimits, client_endpoint, connect, server_endpoint};
    use std::time::Duration;

    /// A stream whose peer writes `parts` one after the other (flushed apart), then ends it.
    async fn stream_of(
        parts: Vec<Vec<u8>>,
    ) -> (quinn::Endpoint, quinn::Connection, quinn::RecvStream) {
        let id = Identity::generate().unwrap();
        let server = server_endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &id,
            &ServerLimits::default(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let accept = server.clone();
        tokio::spawn(async move {
            let conn = accept.accept().await.unwrap().await.unwrap();
            let mut send = conn.open_uni().await.unwrap();
            for part in parts {
                send.write_all(&part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            send.finish().unwrap();
            conn.closed().await;
        });
        let ep = client_endpoint(addr).unwrap();
        let conn = connect(&ep, addr, id.pin(), Duration::from_secs(5))
            .await
            .unwrap();
        let recv = conn.accept_uni().await.unwrap();
        (server, conn, recv)
    }

    #[tokio::test]
    async fn frames_together_split_and_at_the_end() {
        let a = codec::encode_frame(&"first".to_string());
        let b = codec::encode_frame(&"second".to_string());
        let c = codec::encode_frame(&"x".repeat(100_000));
        let mut together = a.clone();
        together.extend_from_slice(&b);
        together.extend_from_slice(&c[..3]);
        let parts = vec![together, c[3..50_000].to_vec(), c[50_000..].to_vec()];
        let (_server, _conn, mut recv) = stream_of(parts).await;
        let mut frames = FrameBuffer::new();
        let mut next = async || frames.read::<String>(&mut recv, 1 << 20).await.unwrap();
        assert_eq!(next().await.as_deref(), Some("first"));
        assert_eq!(next().await.as_deref(), Some("second"));
        assert_eq!(next().await.unwrap().len(), 100_000);
        assert_eq!(next().await, None);
        assert!(
            frames.buf.capacity() <= KEPT_CAPACITY,
            "a large frame's buffer is let go"
        );
    }

    #[tokio::test]
    async fn an_oversized_or_cut_frame_is_an_error() {
        let big = codec::encode_frame(&"x".repeat(2_000));
        let (_server, _conn, mut recv) = stream_of(vec![big]).await;
        let err = FrameBuffer::new()
            .read::<String>(&mut recv, 1_000)
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Codec(_)), "{err}");

        let cut = codec::encode_frame(&"hello".to_string());
        let (_server, _conn, mut recv) = stream_of(vec![cut[..6].to_vec()]).await;
        let err = FrameBuffer::new()
            .read::<String>(&mut recv, 1_000)
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Truncated), "{err}");
    }
}
