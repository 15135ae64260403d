//! Admission caps of the server, so that one peer's flood does not stop the others: a token
//! bucket for request rates (per connection and for the whole registry), a count of
//! connections per peer address, and a cap on one-shot requests in flight.
//!
//! Bytes in flight are capped elsewhere: per stream and per connection by QUIC flow control
//! ([`courier_transport::ServerLimits`]), and for large frames across all connections by
//! the server's large-frame budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

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

/// Live connections per peer address, capped.
#[derive(Debug)]
pub struct PeerConnections {
    cap: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection of a peer; dropping it frees the slot.
#[derive(Debug)]
pub struct PeerSlot {
    peers: Arc<PeerConnections>,
    ip: IpAddr,
}

impl PeerConnections {
    /// At most `cap` live connections per address (at least 1).
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection from `ip`, or `None` if it has `cap` already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let mut counts = self.counts();
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }

    /// Live connections from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.peers.counts();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
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
        let peers = PeerConnections::new(2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let s1 = peers.admit(a).unwrap();
        let s2 = peers.admit(a).unwrap();
        assert!(peers.admit(a).is_none());
        let s3 = peers.admit(b).unwrap();
        drop(s1);
        assert_eq!(peers.count(a), 1);
        let s4 = peers.admit(a).unwrap();
        drop((s2, s3, s4));
        assert_eq!(peers.count(a), 0);
        assert!(peers.counts().is_empty());
    }
}
