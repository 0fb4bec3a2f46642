//! What `loadgen memory` leaves behind: every run in `memory.csv`, the summary in
//! `summary.json`, and `memory.png`, where an idle connection's bytes go.

use std::path::Path;

use super::files::{write_json, write_rows, ReportError};
use super::plots::compare::grouped_bars;
use crate::model::compare::Measurement;
use crate::model::memory::{MemoryRun, MemorySummary};

/// Writes `memory.csv`, `summary.json` and `memory.png` into `dir`.
pub fn write_report(dir: &Path, summary: &MemorySummary) -> Result<(), ReportError> {
    super::create_dir(dir)?;
    write_rows(&dir.join("memory.csv"), summary.runs.iter())?;
    write_json(&dir.join("summary.json"), summary)?;
    let parts = per_connection_parts(summary);
    let groups: Vec<String> = parts.iter().map(|m| m.scenario.clone()).collect();
    let title = format!(
        "Memory per idle subscribed connection, {} connections ({})",
        summary.clients, summary.proto
    );
    let setup = format!(
        "{} at {}; {} idle connections, each subscribed to one of {} channels; {} run(s)",
        summary.proto,
        summary.target,
        summary.clients,
        summary.channels,
        summary.runs.len()
    );
    grouped_bars(
        &dir.join("memory.png"),
        (&title, &setup),
        "bytes per connection (bars: median; dots: each run)",
        &groups,
        &parts,
    )?;
    Ok(())
}

/// Where a connection's memory goes, as one measurement per part (broker heap and the
/// kernel's, both ends), each with every run, for the chart.
fn per_connection_parts(summary: &MemorySummary) -> Vec<Measurement> {
    let part = |name: &str, runs: Vec<f64>| Measurement {
        runs,
        ..Measurement::new(
            name,
            &summary.proto.to_string(),
            "bytes_per_conn",
            "B",
            false,
        )
    };

    let runs = |f: fn(&MemoryRun) -> Option<f64>| summary.runs.iter().filter_map(f).collect();
    vec![
        part("broker RSS", runs(|r| Some(r.rss_per_conn))),
        part("broker anonymous", runs(|r| Some(r.anon_per_conn))),
        part("kernel slab, both ends", runs(|r| r.kernel_slab_per_conn)),
        part("kernel TCP buffers", runs(|r| r.kernel_tcp_per_conn)),
    ]
}
