//! What the coordinator and its worker processes say to each other: one JSON object per line
//! on the worker's stdin (requests) and stdout (replies and progress).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::plan::Placement;
use super::schedule::Schedule;
use crate::model::histogram::HistData;
use crate::model::ErrorCounts;
use crate::proto::credentials::Credentials;
use crate::proto::tls::TlsOpts;
use crate::proto::Proto;

/// Coordinator → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToWorker {
    /// Open `count` more subscribers. Subscriber number `n` (from `first_index`) subscribes to
    /// channel `n % channels`, connected to a target from a source as
    /// [`plan::placement`](super::plan::placement) says.
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
        /// TLS, when its CA is given: each worker loads the files itself.
        #[serde(default)]
        tls: TlsOpts,
        /// What each subscriber presents in its handshake (boxed: the message's other kinds
        /// are small).
        #[serde(default)]
        auth: Box<Credentials>,
        /// How the subscribers are spread over the targets.
        #[serde(default)]
        placement: Placement,
    },
    /// From now on count only the messages whose intended send time (their stamp) falls in
    /// `from_ns..to_ns`, each second of it apart; start afresh. The warm-up before `from_ns`
    /// and anything late from an earlier hold are not counted.
    Measure { from_ns: u64, to_ns: u64 },
    /// Report deliveries and lost connections since the last report, and start afresh.
    Report,
    /// Connect `count` publishers to `targets` (`--agents`: the publishers run on the agents'
    /// hosts too); replied to with `PublishersReady`.
    Publishers {
        count: usize,
        targets: Vec<SocketAddr>,
        proto: Proto,
        #[serde(default)]
        tls: TlsOpts,
        #[serde(default)]
        auth: Box<Credentials>,
        timeout_ms: u64,
    },
    /// Publish this worker's publishers' share of `schedule` (their place in it is
    /// `schedule.publishers`); replied to with `Published` when the schedule is over.
    Publish { schedule: Schedule },
    /// This worker's machine's monotonic clock less the coordinator's: from now on every
    /// time the worker reads is corrected by it. Sent first, to a worker on an agent's host.
    Clock { offset_ns: i64 },
    /// Close everything and exit.
    Exit,
}

/// A worker's state, sent every [`PROGRESS_EVERY`] for the live line and the samples.
///
/// Stamped with the time it was taken, so the coordinator can divide the deliveries between
/// two reports by the time between them: totals read at the coordinator's own ticks, a second
/// apart but at any point of the worker's, swing between zero and twice the rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// When it was taken, in nanoseconds on the machine-wide monotonic clock
    /// ([`stamp::now_ns`](super::stamp::now_ns)).
    pub at_ns: u64,
    /// Deliveries since the worker started.
    pub delivered_total: u64,
    /// Subscribers connected now.
    pub clients: u64,
    /// Of the `Connect` in progress (0 when none): subscribers connected and failed so far.
    pub connected: u64,
    pub connect_failed: u64,
    /// The worker's own CPU time (user and system) since it started, and its resident set:
    /// the coordinator cannot read another host's /proc.
    #[serde(default)]
    pub cpu_ns: u64,
    #[serde(default)]
    pub rss_bytes: u64,
    /// Its machine's /proc/uptime (seconds since boot, and idle seconds summed over the
    /// cores), in nanoseconds, and its cores: the machine's CPU, the kernel's work included.
    #[serde(default)]
    pub machine_up_ns: u64,
    #[serde(default)]
    pub machine_idle_ns: u64,
    #[serde(default)]
    pub machine_cores: u32,
}

/// How often a worker reports its progress: often enough that a report read at any moment is
/// at most this stale.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

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
        /// Why the first subscriber that failed did, naming the server: counts by kind
        /// alone cannot tell a broker that sends garbage from one that hangs up.
        #[serde(default)]
        first_error: Option<String>,
    },
    /// The reply to `Report`.
    Report {
        delivered: u64,
        late: u64,
        latency_hist: HistData,
        /// The same deliveries' latencies, one histogram per second of the measured window
        /// (by intended send time), for the interval log and the per-second rates.
        intervals: Vec<HistData>,
        /// Subscribers that lost their connection since the last report.
        errors: ErrorCounts,
        clients: u64,
    },
    /// Sent unasked every [`PROGRESS_EVERY`].
    Progress(Progress),
    /// The reply to `Publishers`: how many connected, or why not.
    PublishersReady {
        connected: usize,
        #[serde(default)]
        error: Option<String>,
    },
    /// The reply to `Publish`: what this worker's publishers sent in the counted window, per
    /// channel.
    Published { per_channel: Vec<u64> },
}

#[cfg(test)]
mod tests {
    use super::*;

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
