//! Admission caps of the server, so that one peer's flood does not stop the others: a token
//! bucket for request rates (per connection and for the whole registry), a count of
//! connections per peer address, and a cap on one-shot requests in flight.
//!
//! Bytes in flight are capped elsewhere: per stream and per connection by QUIC flow control
//! ([`courier_transport::ServerLimits`]), and for large frames across all connections by
//! the server's large-frame budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Requests per second, with a burst of as many (0 means no cap).
#[derive(Debug)]
pub struct RateLimit {
    bucket: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A cap of `per_sec` requests per second with a burst of `per_sec` (0: unlimited).
    pub fn new(per_sec: u32) -> Self {
        Self {
            bucket: (per_sec > 0).then(|| {
                Mutex::new(Bucket {
                    per_sec: f64::from(per_sec),
                    tokens: f64::from(per_sec),
                    last: Instant::now(),
                })
            }),
        }
    }

    /// Takes one request's token at `now`; `false` when the rate is used up.
    pub fn admit(&self, now: Instant) -> bool {
        let Some(bucket) = &self.bucket else {
            return true;
        };
        let mut b = bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = b.last.max(now);
        b.tokens = (b.tokens + elapsed * b.per_sec).min(b.per_sec);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
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
