//! Frames over QUIC streams: a 4-byte length, then a postcard body, capped before allocation.

use crate::TransportError;
use courier_protocol::codec;
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

/// Reads one frame of at most `max` bytes; `Ok(None)` if the stream ended cleanly first.
pub async fn read_frame_opt<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<T>, TransportError> {
    let mut header = [0u8; codec::FRAME_HEADER_LEN];
    let mut got = 0;
    while got < header.len() {
        match recv.read(&mut header[got..]).await? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => return Err(TransportError::Truncated),
        }
    }
    let len = codec::frame_len(header, max)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Some(codec::decode(&body)?))
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<T, TransportError> {
    read_frame_opt(recv, max)
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
    read_frame(&mut recv, max_response).await
}

/// A [`FrameBuffer`] larger than this is let go once empty.
const KEPT_CAPACITY: usize = 64 << 10;

/// Reads the frames of one long-lived stream through a buffer: a small frame usually
/// arrives in one QUIC chunk, so each frame costs one read of the stream instead of two
/// (header, then body). Bytes past a frame stay buffered for the next one; the buffer never
/// holds more than one frame of at most `max` bytes plus one chunk.
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
        loop {
            if let Some((body, rest)) = codec::split_frame(&self.buf, max)? {
                let value = codec::decode(body);
                let used = self.buf.len() - rest.len();
                self.buf.drain(..used);
                if self.buf.is_empty() && self.buf.capacity() > KEPT_CAPACITY {
                    // A large frame passed: do not keep its buffer with an idle stream.
                    self.buf = Vec::new();
                }
                return Ok(Some(value?));
            }
            if let Some(header) = self.buf.first_chunk::<{ codec::FRAME_HEADER_LEN }>() {
                // The whole frame's size is known (and within `max`): grow once.
                let whole = codec::FRAME_HEADER_LEN + codec::frame_len(*header, max)?;
                self.buf.reserve(whole.saturating_sub(self.buf.len()));
            }
            let room = (max + codec::FRAME_HEADER_LEN).saturating_sub(self.buf.len());
            match recv.read_chunk(room.max(1), true).await {
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
