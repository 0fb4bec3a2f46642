//! What a finished measurement leaves behind, and its interval log.

use std::path::PathBuf;

use hdrhistogram::Histogram;

use crate::model::hosts::{AgentReport, HostSample};
use crate::model::{Limits, Sample};

/// What a finished measurement leaves behind.
pub struct Finished {
    pub samples: Vec<Sample>,
    /// Each host's workers, second by second ("here", or an agent's address).
    pub hosts: Vec<HostSample>,
    /// The agents the workers ran on, with their clocks (`--agents`); empty when here.
    pub agents: Vec<AgentReport>,
    /// When the run started (stamps' clock, wall clock) and every hold's per-second
    /// histograms: [`Finished::write_interval_log`].
    pub(super) started: (u64, std::time::SystemTime),
    pub(super) intervals: Vec<(String, u64, Vec<Histogram<u64>>)>,
    pub limits: Limits,
    pub out: PathBuf,
    pub command_line: String,
    /// What was measured, in a line: the broker and the rig's shape.
    pub setup: String,
    pub provenance: crate::model::provenance::Provenance,
}

impl Finished {
    /// Writes `latency.hlog` into the report folder: every hold's latencies, a histogram per
    /// second (merged across the workers), as an HdrHistogram interval log.
    pub fn write_interval_log(&self) -> Result<(), crate::report::ReportError> {
        let intervals = self.intervals.iter().flat_map(|(tag, from_ns, seconds)| {
            seconds
                .iter()
                .enumerate()
                .map(move |(i, h)| crate::report::hlog::Interval {
                    tag: tag.clone(),
                    start_ns: from_ns + i as u64 * 1_000_000_000,
                    histogram: h,
                })
        });
        let (base_ns, base) = self.started;
        crate::report::hlog::write_hlog(&self.out.join("latency.hlog"), base, base_ns, intervals)
    }
}
