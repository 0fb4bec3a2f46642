//! What a fan-out sweep leaves behind: one row per run (`fanout.csv`), the medians at each
//! subscriber count (`summary.md` and the terminal table), and the chart. Pure formatting of
//! what `scenario::fanout` measured, apart from the one function that writes the files.

use std::path::Path;

use super::files::{write_json, write_rows, write_text, ReportError};
use crate::model::provenance::Provenance;

use crate::model::fanout::{medians, CountMedian, RunRow};
use crate::model::units::grouped;
use crate::report::plots::sweep::plot_fanout_sweep;

/// The medians of a sweep as a plain-text table, for the terminal.
pub fn medians_text(medians: &[CountMedian]) -> String {
    let mut text = format!(
        "\n{:>11}  {:>19}  {:>21}  {:>12}\n",
        "subscribers", "median deliveries/s", "min–max", "bottleneck"
    );
    for m in medians {
        let s = m.deliveries_per_sec;
        text += &format!(
            "{:>11}  {:>19.0}  {:>21}  {:>12}\n",
            m.subscribers,
            s.median,
            format!("{:.0}–{:.0}", s.min, s.max),
            bottleneck_words(m)
        );
    }
    text
}

/// The runs' bottleneck classes, e.g. "window-bound" or "window-bound 2, machine-bound 1".
fn bottleneck_words(m: &CountMedian) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for b in &m.bottlenecks {
        match counts.iter_mut().find(|(name, _)| name == b) {
            Some((_, n)) => *n += 1,
            None => counts.push((b.clone(), 1)),
        }
    }
    match counts.as_slice() {
        [(only, _)] => only.clone(),
        _ => counts
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `summary.json` of a fan-out sweep.
#[derive(Debug, serde::Serialize)]
pub struct FanoutSummary<'a> {
    pub setup: &'a str,
    pub runs: &'a [RunRow],
    pub provenance: &'a Provenance,
}

/// Writes `fanout.csv`, `summary.json`, `summary.md` and `fanout.png` into `dir`.
pub fn write_report(
    dir: &Path,
    setup: &str,
    rows: &[RunRow],
    provenance: &Provenance,
) -> Result<(), ReportError> {
    write_rows(&dir.join("fanout.csv"), rows.iter())?;
    let summary = FanoutSummary {
        setup,
        runs: rows,
        provenance,
    };
    write_json(&dir.join("summary.json"), &summary)?;
    let md = summary_markdown(setup, &medians(rows), provenance);
    write_text(&dir.join("summary.md"), &md)?;
    plot_fanout_sweep(&dir.join("fanout.png"), rows, setup)
}

/// `summary.md`: the medians at each subscriber count, the command that measured them, and
/// when and on what.
pub fn summary_markdown(setup: &str, medians: &[CountMedian], provenance: &Provenance) -> String {
    let mut md = format!(
        "# loadgen fanout: throughput as fan-out grows\n\n{setup}.\n\n\
         | subscribers | runs | median deliveries/s | min–max | messages published/s \
         | steady runs | what set the rate |\n\
         |---:|---:|---:|---|---:|---:|---|\n"
    );
    for m in medians {
        let s = m.deliveries_per_sec;
        md += &format!(
            "| {} | {} | {} | {}–{} | {} | {} of {} | {} |\n",
            m.subscribers,
            m.runs,
            grouped(s.median.round() as u64),
            grouped(s.min.round() as u64),
            grouped(s.max.round() as u64),
            grouped(m.publishes_per_sec.round() as u64),
            m.runs - m.unsteady,
            m.runs,
            bottleneck_words(m)
        );
    }
    md += "\nA delivery is one message received by one subscriber; every subscriber receives \
           every message. Each run publishes through a warm-up that is not counted, then counts \
           deliveries second by second; a run is steady when its per-second rates vary by at \
           most 10% (coefficient of variation) and drift by at most 10% across the window. \
           What set the rate: broker-bound (the broker's threads saturated), client-bound \
           (loadgen saturated: the figure is a lower bound for the broker), window-bound \
           (neither: the in-flight window and the latency), machine-bound (the cores together). \
           The median is the middle run (the upper middle of an even count). Every run, with \
           its CPU figures: `fanout.csv`; chart: `fanout.png`.\n";
    md += &format!(
        "\n## Command\n\n```\n{}\n```\n\nMeasured on {}.\n",
        provenance.command,
        provenance.line()
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(subscribers: usize, run: usize, deliveries_per_sec: f64) -> RunRow {
        crate::model::fanout::example_row(
            subscribers,
            run,
            1_000 * subscribers as u64,
            deliveries_per_sec,
        )
    }

    #[test]
    fn summary_has_a_row_per_count_and_the_command() {
        let rows = [row(1, 1, 2_500_000.0), row(1000, 1, 4_000_000.0)];
        let md = summary_markdown(
            "1 publisher",
            &medians(&rows),
            &Provenance {
                command: "loadgen fanout --x".into(),
                ..Provenance::default()
            },
        );
        assert!(
            md.contains(
                "| 1 | 1 | 2,500,000 | 2,500,000–2,500,000 | 2,500,000 | 1 of 1 | window-bound |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 1000 | 1 | 4,000,000 | 4,000,000–4,000,000 | 4,000 | 1 of 1 | window-bound |"
            ),
            "{md}"
        );
        assert!(md.contains("```\nloadgen fanout --x\n```"), "{md}");
        let text = medians_text(&medians(&rows));
        assert_eq!(text.lines().count(), 4, "{text}");
    }
}
