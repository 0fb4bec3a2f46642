//! The report of a fixed-size run (`throughput`, `latency`): the same files as a ramp's, with
//! the answer in words first.

use std::fmt::Write as _;
use std::path::Path;

use super::{plot_all, steps_table_markdown, write_samples_csv, write_steps_csv};
use super::{ReportError, XAxis};
use crate::model::{RunSummary, Sample};

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// The headline: what was measured, in one sentence.
pub fn headline(s: &RunSummary) -> String {
    let setup = format!(
        "{} publisher(s) → {} subscriber(s) over {} channel(s), {} B messages",
        s.publishers, s.subscribers, s.channels, s.size
    );
    let lat = format!(
        "latency p50 {}, p99 {}, p99.9 {}, max {}",
        ms(s.latency.p50_us),
        ms(s.latency.p99_us),
        ms(s.latency.p999_us),
        ms(s.latency.max_us)
    );
    match s.kind.as_str() {
        "throughput" => format!(
            "sustained {:.0} msg/s = {:.0} deliveries/s ({setup}; {lat}){}",
            s.rate,
            s.deliveries_per_sec,
            s.stopped_because
                .as_ref()
                .map(|w| format!("; fell behind {w}"))
                .unwrap_or_else(|| "; never fell behind up to --max-rate".into())
        ),
        _ => format!(
            "at {:.0} msg/s ({:.0} deliveries/s; {setup}): {lat}{}",
            s.rate,
            s.deliveries_per_sec,
            s.stopped_because
                .as_ref()
                .map(|w| format!("; not within the objective: {w}"))
                .unwrap_or_default()
        ),
    }
}

/// `summary.md` of a fixed-size run.
pub fn run_markdown(s: &RunSummary) -> String {
    let mut md = format!("# loadgen {}\n\n**{}**\n\n", s.kind, headline(s));
    let _ = writeln!(
        md,
        "Objective: delivery p99 within {}; a rate passes when every delivery arrives within it.\n",
        ms(s.slo_p99_us)
    );
    md.push_str("## Stages\n\n");
    md.push_str(&steps_table_markdown(&s.steps));
    let _ = write!(md, "\n## Command\n\n```\n{}\n```\n", s.command_line);
    md
}

/// Writes steps.csv, samples.csv, summary.json, summary.md and (with an `x` axis) the
/// per-stage plots into `dir`, and prints the headline.
pub fn write_run(
    dir: &Path,
    s: &RunSummary,
    samples: &[Sample],
    x: Option<XAxis>,
) -> Result<(), ReportError> {
    write_steps_csv(&dir.join("steps.csv"), &s.steps)?;
    write_samples_csv(&dir.join("samples.csv"), samples)?;
    let json = dir.join("summary.json");
    std::fs::write(&json, serde_json::to_string_pretty(s)?)
        .map_err(|source| ReportError::Io { path: json, source })?;
    let md = dir.join("summary.md");
    std::fs::write(&md, run_markdown(s)).map_err(|source| ReportError::Io { path: md, source })?;
    if let Some(x) = x {
        plot_all(dir, &s.steps, samples, s.slo_p99_us, x)?;
    }
    println!("{}", steps_table_markdown(&s.steps));
    println!("{}", headline(s));
    println!("report written to {}", dir.display());
    Ok(())
}
