//! Latency histograms: every one in microseconds with the same bounds and precision, so any
//! two can be merged, and a lossless plain form for sending them between processes.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::Percentiles;

/// A histogram as `(value, count)` pairs: lossless at the histogram's precision, and plain
/// JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistData(pub Vec<(u64, u64)>);

/// Microseconds from 1 µs to 10 minutes at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl HistData {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        HistData(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Adds these counts into `into` (saturating at the histogram's range).
    pub fn merge_into(&self, into: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            into.saturating_record_n(value, count);
        }
    }
}

/// Latency percentiles of a histogram, zero when it is empty.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_trip() {
        let mut h = new_histogram();
        for v in [1, 10, 100, 1000, 1000, 123_456] {
            h.record(v).unwrap();
        }
        let json = serde_json::to_string(&HistData::from_histogram(&h)).unwrap();
        let back: HistData = serde_json::from_str(&json).unwrap();
        let mut merged = new_histogram();
        back.merge_into(&mut merged);
        assert_eq!(merged.len(), 6);
        assert_eq!(merged.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert_eq!(merged.max(), h.max());
    }
}
