//! Admission caps of the server, so that one peer's flood does not stop the others: a token
//! bucket for request rates (per connection and for the whole registry), a count of
//! connections per peer address, a cap on one-shot requests in flight, and [`Room`] for
//! large answers (per peer address and for the whole registry).
//!
//! Bytes in flight are capped elsewhere: per stream and per connection by QUIC flow control
//! ([`courier_transport::ServerLimits`]), and for large frames across all connections by
//! the server's large-frame budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests per second, with a burst of as many (0 means no cap): the generic cell rate
/// algorithm (a token bucket kept as one "theoretical arrival time" in an atomic), so that
/// admitting a request is one compare-and-swap, with no lock to contend for at tens of
/// thousands of requests per second.
#[derive(Debug)]
pub struct RateLimit {
    /// Nanoseconds between two requests at the full rate; 0: no cap.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run: the burst.
    burst_ns: u64,
    origin: Instant,
    /// The theoretical arrival time of the next request, in ns since `origin`.
    tat: AtomicU64,
}

impl RateLimit {
    /// A cap of `per_sec` requests per second with a burst of `per_sec` (0: unlimited).
    pub fn new(per_sec: u32) -> Self {
        let interval_ns = if per_sec == 0 {
            0
        } else {
            1_000_000_000 / u64::from(per_sec)
        };
        Self {
            interval_ns,
            burst_ns: interval_ns.saturating_mul(u64::from(per_sec)),
            origin: Instant::now(),
            tat: AtomicU64::new(0),
        }
    }

    /// Takes one request's place at `now`; `false` when the rate is used up.
    pub fn admit(&self, now: Instant) -> bool {
        if self.interval_ns == 0 {
            return true;
        }
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now + self.interval_ns > self.burst_ns {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + self.interval_ns,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
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
pub struct Room {
    peer: OwnedSemaphorePermit,
    all: OwnedSemaphorePermit,
}

impl Room {
    /// Room for `bytes` in `peer` and then `all`, waiting at most `wait` in all.
    pub async fn reserve(
        peer: &Arc<Semaphore>,
        all: &Arc<Semaphore>,
        bytes: usize,
        wait: Duration,
    ) -> Result<Room, NoRoom> {
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
        Ok(Room { peer, all })
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
    fn bucket_allows_the_burst_then_the_rate() {
        let r = RateLimit::new(10);
        let t0 = Instant::now();
        assert_eq!((0..20).filter(|_| r.admit(t0)).count(), 10);
        assert!(!r.admit(t0));
        // 300 ms later: three more.
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!((0..20).filter(|_| r.admit(t1)).count(), 3);
        // Idle for long: never more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..50).filter(|_| r.admit(t2)).count(), 10);
        // A clock reading from the past takes nothing back.
        assert!(!r.admit(t0));
        assert!((0..1000).all(|_| RateLimit::new(0).admit(t0)));
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
        let mut a = Room::reserve(&peer_a, &all, 8, wait).await.unwrap();
        // The same peer has 2 left; another peer may take what is left in all.
        assert_eq!(
            Room::reserve(&peer_a, &all, 3, wait).await.unwrap_err(),
            NoRoom::Busy
        );
        let b = Room::reserve(&peer_b, &all, 7, wait).await.unwrap();
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
        assert!(Room::never_fits(11, 10, 15));
        assert!(!Room::never_fits(10, 10, 15));
    }
}
