//! Admission caps of the server, so that one peer's flood does not stop the others: a rate
//! limit for request rates (per connection and for the whole registry), a count of
//! connections per peer address, a cap on one-shot requests in flight, and [`AnswerRoom`] for
//! large answers (per peer address and for the whole registry).
//!
//! Bytes in flight are capped elsewhere: per stream and per connection by QUIC flow control
//! ([`courier_transport::ServerLimits`]), and for large frames across all connections by
//! the server's large-frame budget.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests per second, with a burst of as many (0 means no cap): `governor`'s generic cell
/// rate algorithm, one compare-and-swap per request with no lock to contend for at tens of
/// thousands of requests per second.
pub struct RateLimit<C: Clock = DefaultClock> {
    limiter: Option<RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>>,
}

impl RateLimit {
    /// A cap of `per_sec` requests per second with a burst of `per_sec` (0: unlimited).
    pub fn new(per_sec: u32) -> Self {
        Self::with_clock(per_sec, DefaultClock::default())
    }
}

impl<C: Clock> RateLimit<C> {
    /// [`RateLimit::new`] on another clock (for tests).
    pub fn with_clock(per_sec: u32, clock: C) -> Self {
        Self {
            limiter: NonZeroU32::new(per_sec)
                .map(|n| RateLimiter::direct_with_clock(Quota::per_second(n), clock)),
        }
    }

    /// Takes one request's place now; `false` when the rate is used up.
    pub fn admit(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }
}

/// Live connections per peer address, capped, and each address's room for large answers.
#[derive(Debug)]
pub struct PeerConnections {
    cap: usize,
    room_per_peer: usize,
    counts: Mutex<HashMap<IpAddr, PeerEntry>>,
}

/// One peer address: its live connections and the room its large answers may hold.
#[derive(Debug)]
struct PeerEntry {
    connections: usize,
    room: Arc<Semaphore>,
}

/// One admitted connection of a peer; dropping it frees the slot.
#[derive(Debug)]
pub struct PeerSlot {
    peers: Arc<PeerConnections>,
    ip: IpAddr,
    room: Arc<Semaphore>,
}

impl PeerSlot {
    /// The room for large answers of this peer address (shared by its connections).
    pub fn room(&self) -> &Arc<Semaphore> {
        &self.room
    }
}

impl PeerConnections {
    /// At most `cap` live connections per address (at least 1), whose large answers hold at
    /// most `room_per_peer` bytes together.
    pub fn new(cap: usize, room_per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            room_per_peer: room_per_peer.min(Semaphore::MAX_PERMITS),
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<IpAddr, PeerEntry>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, or `None` if it has `cap` already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut counts = self.counts();
        let entry = counts.entry(ip).or_insert_with(|| PeerEntry {
            connections: 0,
            room: Arc::new(Semaphore::new(self.room_per_peer)),
        });
        if entry.connections >= self.cap {
            return None;
        }
        entry.connections += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
            room: entry.room.clone(),
        })
    }

    /// Live connections from `ip`.
    #[cfg(test)]
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts().get(&ip).map_or(0, |e| e.connections)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.peers.counts();
        if let Some(e) = counts.get_mut(&self.ip) {
            e.connections -= 1;
            if e.connections == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Why a large answer got no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// None freed in time: the peer may try again later.
    Busy,
    /// It could never fit (larger than the peer's or the registry's whole room).
    TooLarge,
}

/// Bytes of one large answer, counted against its peer address's room and the registry's,
/// until it is dropped (once the peer has taken the answer, or it was given up).
#[derive(Debug)]
pub struct AnswerRoom {
    peer: OwnedSemaphorePermit,
    all: OwnedSemaphorePermit,
}

impl AnswerRoom {
    /// Room for `bytes` in `peer` and then `all`, waiting at most `wait` in all.
    pub async fn reserve(
        peer: &Arc<Semaphore>,
        all: &Arc<Semaphore>,
        bytes: usize,
        wait: Duration,
    ) -> Result<AnswerRoom, NoRoom> {
        let n = u32::try_from(bytes).map_err(|_| NoRoom::TooLarge)?;
        let deadline = tokio::time::Instant::now() + wait;
        let take = |s: &Arc<Semaphore>| {
            let s = s.clone();
            async move {
                tokio::time::timeout_at(deadline, s.acquire_many_owned(n))
                    .await
                    .map_err(|_| NoRoom::Busy)?
                    .map_err(|_| NoRoom::Busy)
            }
        };
        let peer = take(peer).await?;
        let all = take(all).await?;
        Ok(AnswerRoom { peer, all })
    }

    /// The whole room of a semaphore that holds `total` bytes could never hold `bytes`.
    pub fn never_fits(bytes: usize, peer_total: usize, all_total: usize) -> bool {
        bytes > peer_total || bytes > all_total || u32::try_from(bytes).is_err()
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.all.num_permits()
    }

    /// Keeps only `bytes` of the room (what the encoded answer needs), giving the rest back.
    pub fn shrink_to(&mut self, bytes: usize) {
        let extra = self.bytes().saturating_sub(bytes);
        if extra > 0 {
            drop(self.peer.split(extra));
            drop(self.all.split(extra));
        }
    }

    /// Takes `more` bytes of room at once if both have them free.
    pub fn try_grow(&mut self, peer: &Arc<Semaphore>, all: &Arc<Semaphore>, more: usize) -> bool {
        let Ok(n) = u32::try_from(more) else {
            return false;
        };
        let Ok(p) = peer.clone().try_acquire_many_owned(n) else {
            return false;
        };
        let Ok(a) = all.clone().try_acquire_many_owned(n) else {
            return false;
        };
        self.peer.merge(p);
        self.all.merge(a);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_allows_the_burst_then_the_rate() {
        let clock = governor::clock::FakeRelativeClock::default();
        let r = RateLimit::with_clock(10, clock.clone());
        assert_eq!((0..20).filter(|_| r.admit()).count(), 10);
        assert!(!r.admit());
        // 300 ms later: three more.
        clock.advance(Duration::from_millis(300));
        assert_eq!((0..20).filter(|_| r.admit()).count(), 3);
        // Idle for long: never more than the burst.
        clock.advance(Duration::from_secs(60));
        assert_eq!((0..50).filter(|_| r.admit()).count(), 10);
        assert!((0..1000).all(|_| RateLimit::new(0).admit()));
    }

    #[test]
    fn peer_slots_are_counted_and_freed() {
        let peers = PeerConnections::new(2, 100);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let s1 = peers.admit(a).unwrap();
        let s2 = peers.admit(a).unwrap();
        assert!(peers.admit(a).is_none());
        let s3 = peers.admit(b).unwrap();
        drop(s1);
        assert_eq!(peers.count(a), 1);
        let s4 = peers.admit(a).unwrap();
        assert!(Arc::ptr_eq(s2.room(), s4.room()), "one room per address");
        assert!(!Arc::ptr_eq(s2.room(), s3.room()));
        drop((s2, s3, s4));
        assert_eq!(peers.count(a), 0);
        assert!(peers.counts().is_empty());
    }

    #[tokio::test]
    async fn room_is_counted_per_peer_and_in_all_and_shrinks() {
        let (peer_a, peer_b) = (Arc::new(Semaphore::new(10)), Arc::new(Semaphore::new(10)));
        let all = Arc::new(Semaphore::new(15));
        let wait = Duration::from_millis(20);
        let mut a = AnswerRoom::reserve(&peer_a, &all, 8, wait).await.unwrap();
        // The same peer has 2 left; another peer may take what is left in all.
        assert_eq!(
            AnswerRoom::reserve(&peer_a, &all, 3, wait)
                .await
                .unwrap_err(),
            NoRoom::Busy
        );
        let b = AnswerRoom::reserve(&peer_b, &all, 7, wait).await.unwrap();
        assert_eq!(all.available_permits(), 0);
        a.shrink_to(5);
        assert_eq!(
            (
                a.bytes(),
                peer_a.available_permits(),
                all.available_permits()
            ),
            (5, 5, 3)
        );
        assert!(a.try_grow(&peer_a, &all, 3));
        assert!(!a.try_grow(&peer_a, &all, 1));
        drop((a, b));
        assert_eq!(
            (peer_a.available_permits(), all.available_permits()),
            (10, 15)
        );
        assert!(AnswerRoom::never_fits(11, 10, 15));
        assert!(!AnswerRoom::never_fits(10, 10, 15));
    }
}
