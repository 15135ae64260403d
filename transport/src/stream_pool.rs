//! Request streams kept for reuse on one connection. A stream carries requests one after
//! the other (the peer answers each in order and keeps reading until the stream ends), so
//! once a client is warm a request costs one frame each way and no stream set-up or
//! tear-down: on loopback that halves the cost of a small request.

use crate::{FrameBuffer, TransportError, write_frame};
use serde::{Serialize, de::DeserializeOwned};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most idle streams kept per connection.
const POOL_MAX: usize = 8;

/// A stream idle this long is finished rather than reused (servers finish their side after
/// 30 s of silence).
pub const POOL_IDLE: Duration = Duration::from_secs(10);

/// A request stream: its two halves and the buffer its answers are read through.
type Stream = (quinn::SendStream, quinn::RecvStream, FrameBuffer);

type Idle = Vec<(Stream, Instant)>;

/// Idle request streams of one connection, freshest last.
#[derive(Debug, Default)]
pub struct StreamPool {
    idle: Mutex<Idle>,
}

impl StreamPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    fn idle(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Idle streams kept now.
    pub fn len(&self) -> usize {
        self.idle().len()
    }

    /// Whether no stream is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The freshest idle stream not too old; older ones are finished.
    fn take(&self) -> Option<Stream> {
        let mut idle = self.idle();
        while let Some((mut stream, at)) = idle.pop() {
            if at.elapsed() < POOL_IDLE {
                return Some(stream);
            }
            let _ = stream.0.finish();
        }
        None
    }

    fn put(&self, mut stream: Stream) {
        let mut idle = self.idle();
        if idle.len() < POOL_MAX {
            idle.push((stream, Instant::now()));
        } else {
            let _ = stream.0.finish();
        }
    }

    /// Sends `request` on a kept stream of `conn` (or a new one) and reads one answer of at
    /// most `max` bytes. The stream is kept for the next request when `reusable(&answer)`
    /// (the caller knows which answers end a stream). A kept stream that fails is replaced
    /// once by a new one. Dropping the future mid-way drops its stream, never returns it.
    pub async fn request<Req, Resp>(
        &self,
        conn: &quinn::Connection,
        request: &Req,
        max: usize,
        reusable: impl Fn(&Resp) -> bool,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        if let Some(stream) = self.take()
            && let Ok(resp) = self.exchange(stream, request, max, &reusable).await
        {
            return Ok(resp);
        }
        let (send, recv) = conn.open_bi().await?;
        self.exchange((send, recv, FrameBuffer::new()), request, max, &reusable)
            .await
    }

    async fn exchange<Req, Resp>(
        &self,
        (mut send, mut recv, mut frames): Stream,
        request: &Req,
        max: usize,
        reusable: &impl Fn(&Resp) -> bool,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        write_frame(&mut send, request).await?;
        let resp = frames
            .read::<Resp>(&mut recv, max)
            .await?
            .ok_or(TransportError::Truncated)?;
        if reusable(&resp) {
            self.put((send, recv, frames));
        } else {
            let _ = send.finish();
        }
        Ok(resp)
    }
}
