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
