//! What `loadgen memory` measured: each run's readings and their medians (`summary.json`).

use serde::{Deserialize, Serialize};

use crate::proto::Proto;

/// One run's readings; sizes in bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryRun {
    pub run: usize,
    pub clients: usize,
    pub channels: usize,
    /// The broker's memory before the first run, with no client connected.
    pub rss_baseline: u64,
    /// The broker's memory just before this run (what it kept from earlier runs).
    pub rss_idle: u64,
    /// The broker's memory while holding this run's clients.
    pub rss_after: u64,
    pub rss_anon_baseline: u64,
    pub rss_anon_after: u64,
    /// `(rss_after - rss_baseline) / clients`.
    pub rss_per_conn: f64,
    pub anon_per_conn: f64,
    /// Machine-wide TCP buffer memory; empty where /proc/net/sockstat was unreadable.
    pub kernel_tcp_before: Option<u64>,
    pub kernel_tcp_after: Option<u64>,
    pub kernel_tcp_per_conn: Option<f64>,
    /// Machine-wide slab memory; empty where /proc/meminfo was unreadable.
    pub kernel_slab_before: Option<u64>,
    pub kernel_slab_after: Option<u64>,
    pub kernel_slab_per_conn: Option<f64>,
    /// Seconds from the last acknowledgement until the broker's memory settled.
    pub settle_s: f64,
}

/// Everything one `loadgen memory` measured (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemorySummary {
    pub target: String,
    pub proto: Proto,
    pub embedded: bool,
    pub clients: usize,
    pub channels: usize,
    pub runs: Vec<MemoryRun>,
    pub median_rss_per_conn: f64,
    pub median_anon_per_conn: f64,
    pub median_kernel_tcp_per_conn: Option<f64>,
    pub median_kernel_slab_per_conn: Option<f64>,
    pub command_line: String,
    /// Where the figures came from: commit, versions, machine.
    #[serde(default)]
    pub provenance: Option<super::provenance::Provenance>,
}
