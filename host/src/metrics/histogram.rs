//! Durations as a log-scale histogram: a fixed array of counts, so a call
//! costs one increment and the memory never grows, and a quantile is
//! within one bucket (about 19 %) of the truth.

use std::time::Duration;

/// Buckets per doubling of the duration.
const PER_OCTAVE: u32 = 4;
/// From 1 µs to 2^36 µs (19 hours): anything longer lands in the last.
const BUCKETS: usize = 36 * PER_OCTAVE as usize + 1;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let us = d.as_micros().max(1) as f64;
        let i = (us.log2() * f64::from(PER_OCTAVE)).ceil() as usize;
        self.counts[i.min(BUCKETS - 1)] += 1;
        self.total += 1;
    }

    /// The duration that `q` (0–1) of the calls took at most, in
    /// milliseconds (a bucket's upper edge); `None` before any call.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let us = 2f64.powf(i as f64 / f64::from(PER_OCTAVE));
                return Some(us.round() / 1e3);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        // 1 ms … 100 ms, one call each.
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((50.0..=50.0 * 1.19).contains(&p50), "{p50}");
        assert!((99.0..=99.0 * 1.19).contains(&p99), "{p99}");
        assert_eq!(h.total, 100);
        // Out of range both ways is clamped, not a panic.
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(1 << 40));
        assert_eq!(h.total, 102);
    }
}
