//! What one side of a comparison measured (a rate and latency percentiles, or a size), and
//! the ratio of two of them.

use std::time::Duration;

/// Throughput and latencies of one run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Operations per second over the run, if the run was timed as a whole.
    pub per_sec: Option<f64>,
    /// Latencies of the single operations, in nanoseconds, sorted.
    lat: Vec<u64>,
}

impl Run {
    /// A run of `lat` (ns) that took `elapsed` in all (`None`: not a throughput run).
    pub fn new(mut lat: Vec<u64>, elapsed: Option<Duration>) -> Run {
        lat.sort_unstable();
        let per_sec = elapsed.map(|e| lat.len() as f64 / e.as_secs_f64().max(1e-9));
        Run { per_sec, lat }
    }

    /// The latency at quantile `q` (0.0..=1.0).
    pub fn at(&self, q: f64) -> Duration {
        if self.lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.lat.len() - 1) as f64 * q).round() as usize;
        Duration::from_nanos(self.lat[i])
    }

    /// The median latency.
    pub fn p50(&self) -> Duration {
        self.at(0.5)
    }

    /// The 99th percentile latency.
    pub fn p99(&self) -> Duration {
        self.at(0.99)
    }

    /// The longest latency.
    pub fn max(&self) -> Duration {
        self.at(1.0)
    }

    /// "98,300/s, p50 0.61 ms, p99 1.02 ms" (the rate only for throughput runs).
    pub fn describe(&self) -> String {
        let lat = format!("p50 {}, p99 {}", human(self.p50()), human(self.p99()));
        match self.per_sec {
            Some(r) => format!("{}/s, {lat}", thousands(r)),
            None => lat,
        }
    }
}

/// A duration as µs below 1 ms (with a decimal below 10 µs), as ms below 1 s, else as s.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A ratio with two significant digits at least (0.0012, 0.18, 4.3, 12).
pub fn ratio(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (1 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{x:.digits$}")
}

/// 98300.4 as "98,300".
pub fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rate() {
        let r = Run::new((1..=100).rev().collect(), Some(Duration::from_secs(2)));
        assert_eq!(r.per_sec, Some(50.0));
        assert_eq!(r.p50(), Duration::from_nanos(51));
        assert_eq!(r.max(), Duration::from_nanos(100));
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(human(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(human(Duration::from_nanos(5_999)), "6.0 µs");
        assert_eq!(human(Duration::from_nanos(45_400)), "45 µs");
        assert_eq!(human(Duration::from_millis(7820)), "7.82 s");
        assert_eq!(ratio(0.001204), "0.0012");
        assert_eq!(ratio(0.183), "0.18");
        assert_eq!(ratio(4.34), "4.3");
        assert_eq!(ratio(12.4), "12");
    }
}
