//! Request streams kept for reuse on one connection. A stream carries requests one after
//! the other (the peer answers each in order and keeps reading until the stream ends), so
//! once a client is warm a request costs one frame each way and no stream set-up or
//! tear-down: on loopback that halves the cost of a small request.

use crate::{TransportError, read_frame, write_frame};
use serde::{Serialize, de::DeserializeOwned};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most idle streams kept per connection.
const POOL_MAX: usize = 8;

/// A stream idle this long is finished rather than reused (servers finish their side after
/// 30 s of silence).
pub const POOL_IDLE: Duration = Duration::from_secs(10);

type Idle = Vec<(quinn::SendStream, quinn::RecvStream, Instant)>;

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
    fn take(&self) -> Option<(quinn::SendStream, quinn::RecvStream)> {
        let mut idle = self.idle();
        while let Some((mut send, recv, at)) = idle.pop() {
            if at.elapsed() < POOL_IDLE {
                return Some((send, recv));
            }
            let _ = send.finish();
        }
        None
    }

    fn put(&self, mut send: quinn::SendStream, recv: quinn::RecvStream) {
        let mut idle = self.idle();
        if idle.len() < POOL_MAX {
            idle.push((send, recv, Instant::now()));
        } else {
            let _ = send.finish();
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
        let stream = conn.open_bi().await?;
        self.exchange(stream, request, max, &reusable).await
    }

    async fn exchange<Req, Resp>(
        &self,
        (mut send, mut recv): (quinn::SendStream, quinn::RecvStream),
        request: &Req,
        max: usize,
        reusable: &impl Fn(&Resp) -> bool,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        write_frame(&mut send, request).await?;
        let resp = read_frame::<Resp>(&mut recv, max).await?;
        if reusable(&resp) {
            self.put(send, recv);
        } else {
            let _ = send.finish();
        }
        Ok(resp)
    }
}
