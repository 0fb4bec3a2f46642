//! What the coordinator and its worker processes say to each other: one JSON object per line
//! on the worker's stdin (requests) and stdout (replies and progress).

use std::net::{IpAddr, SocketAddr};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::model::ErrorCounts;
use crate::proto::Proto;

/// Coordinator → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToWorker {
    /// Open `count` more subscribers. Subscriber number `n` (from `first_index`) subscribes to
    /// channel `n % channels`; with `round = n / channels` it connects to
    /// `targets[round % targets.len()]` from `sources[round / targets.len() % sources.len()]`.
    /// So each channel's subscribers are spread over every target (with several brokers in a
    /// hub, messages must cross the hub), and each (source, target) pair gets an even share.
    Connect {
        first_index: u64,
        count: u64,
        targets: Vec<SocketAddr>,
        sources: Vec<IpAddr>,
        channels: u64,
        timeout_ms: u64,
        /// Connects in flight at once.
        concurrency: usize,
        /// Deliveries later than this count as late.
        slo_us: u64,
        /// The protocol the target(s) speak.
        proto: Proto,
    },
    /// Report deliveries and lost connections since the last report, and start afresh.
    Report,
    /// Close everything and exit.
    Exit,
}

/// Worker → coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromWorker {
    /// The reply to `Connect`.
    Connected {
        ok: u64,
        /// `(channel, subscribers added)`, for channels that gained any.
        per_channel: Vec<(u64, u64)>,
        errors: ErrorCounts,
        connect_hist: HistData,
        elapsed_ms: u64,
    },
    /// The reply to `Report`.
    Report {
        delivered: u64,
        late: u64,
        latency_hist: HistData,
        /// Subscribers that lost their connection since the last report.
        errors: ErrorCounts,
        clients: u64,
    },
    /// Sent unasked once a second.
    Progress { delivered_total: u64, clients: u64 },
}

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

    #[test]
    fn requests_are_tagged_json_lines() {
        let line = serde_json::to_string(&ToWorker::Report).unwrap();
        assert_eq!(line, r#"{"op":"report"}"#);
        assert!(matches!(
            serde_json::from_str(&line).unwrap(),
            ToWorker::Report
        ));
    }
}
