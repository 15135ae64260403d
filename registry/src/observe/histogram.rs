//! A latency histogram of fixed buckets made of atomics: an observation is a short scan
//! of the bounds and two relaxed adds (its bucket, the sum), with no lock (the Prometheus
//! client's own histogram takes a lock per observation). Read at scrape time as the
//! buckets the Prometheus client encodes (it sums them into cumulative ones).

use super::Counter;
use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds: 25 µs to 1 s. A lookup on loopback takes
/// 25-150 µs (README, "Registry" benchmarks), so the low buckets are the fine ones.
pub(crate) const BOUNDS_NS: [u64; 12] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    1_000_000_000,
];

/// Counts per bucket (the last one above every bound) and the sum, in nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [Counter; BOUNDS_NS.len() + 1],
    sum_ns: Counter,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
    /// (upper bound in seconds, observations in that bucket alone), the bounds ascending,
    /// the last one infinite.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Records one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(BOUNDS_NS.len());
        self.buckets[i].inc();
        self.sum_ns.add(ns);
    }

    /// The histogram now. Observations that land while it is read may be counted in the
    /// buckets and not yet in the sum (or the other way), as with any lock-free reader.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = BOUNDS_NS
            .iter()
            .map(|b| *b as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds.zip(self.buckets.iter().map(Counter::get)).collect();
        HistogramSnapshot {
            sum_seconds: self.sum_ns.get() as f64 / 1e9,
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets_cumulatively() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(25));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (25e-6, 2));
        assert_eq!(s.buckets[3].1, 0, "250 µs");
        assert_eq!(s.buckets[4], (500e-6, 1));
        assert_eq!(s.buckets[11], (1.0, 0));
        assert_eq!(*s.buckets.last().unwrap(), (f64::INFINITY, 1));
        assert!((s.sum_seconds - 5.000335).abs() < 1e-9);
    }
}
