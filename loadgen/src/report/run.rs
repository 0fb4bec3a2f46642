//! The report of a fixed-size run (`throughput`, `latency`): the same files as a ramp's, with
//! the answer in words first.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::csv::{write_samples_csv, write_steps_csv};
use super::files::ReportError;
use super::files::{write_json, write_text};
use super::plots::{plot_all, Context};
use super::summary::steps_table_markdown;
use crate::model::units::ms;
use crate::model::{LatencySummary, RunSummary, Sample};

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
    let interrupted = match s.interrupted {
        true => {
            " (interrupted: Ctrl-C or SIGTERM stopped it; the stages below were measured in full)"
        }
        false => "",
    };
    let mut md = format!(
        "# loadgen {}{interrupted}\n\n**{}**\n\n",
        s.kind,
        headline(s)
    );
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

/// Writes steps.csv, samples.csv, summary.json, summary.md and (given their context) the
/// per-stage plots into `dir`.
pub fn write_run(
    dir: &Path,
    s: &RunSummary,
    samples: &[Sample],
    plots: Option<&Context>,
) -> Result<(), ReportError> {
    write_files(dir, s, s, run_markdown(s), samples, plots)
}

/// The stalled subscribers' outcome and the healthy subscribers' numbers, in one line:
/// what a slow consumer cost the others.
pub fn stalled_line(s: &LatencySummary) -> String {
    let (delivered, expected) = s
        .run
        .steps
        .iter()
        .fold((0, 0), |(d, e), st| (d + st.delivered, e + st.expected));
    format!(
        "stalled subscribers: {}, closed by the broker during the run: {}; healthy subscribers: p99 {:.2} ms, delivered {delivered} of {expected}",
        s.stalled,
        s.stalled_disconnected,
        s.run.latency.p99_us as f64 / 1000.0,
    )
}

/// [`write_run`] for `loadgen latency`: `summary.json` also holds the stalled subscribers'
/// outcome, and with any stalled subscribers `summary.md` says what became of them.
pub fn write_latency_run(
    dir: &Path,
    s: &LatencySummary,
    samples: &[Sample],
) -> Result<(), ReportError> {
    let mut md = run_markdown(&s.run);
    if s.stalled > 0 {
        let slow: u64 = s.run.steps.iter().map(|st| st.broker_slow_consumers).sum();
        let _ = write!(
            md,
            "\n## Stalled subscribers\n\n{} subscriber(s) on every channel never read their \
             sockets; none is counted among the subscribers above. The broker closed {} of them \
             during the run (slow consumers in its STATS, hubbub only: {slow}).\n\n{}\n",
            s.stalled,
            s.stalled_disconnected,
            stalled_line(s)
        );
    }
    write_files(dir, &s.run, s, md, samples, None)
}

/// Writes the files of a fixed-size run: `json` is what goes into summary.json (`s` itself,
/// or a wrapper around it), `md` is summary.md.
fn write_files(
    dir: &Path,
    s: &RunSummary,
    json: &impl Serialize,
    md: String,
    samples: &[Sample],
    plots: Option<&Context>,
) -> Result<(), ReportError> {
    write_steps_csv(&dir.join("steps.csv"), &s.steps)?;
    write_samples_csv(&dir.join("samples.csv"), samples)?;
    write_json(&dir.join("summary.json"), json)?;
    write_text(&dir.join("summary.md"), &md)?;
    if let Some(ctx) = plots {
        plot_all(dir, &s.steps, samples, ctx)?;
    }
    Ok(())
}
