//! What a fan-out sweep leaves behind: one row per run (`fanout.csv`), the medians at each
//! subscriber count (`summary.md` and the terminal table), and the chart. Pure formatting of
//! what `scenario::fanout` measured, apart from the one function that writes the files.

use std::path::Path;

use super::files::{write_rows, write_text, ReportError};

use crate::model::fanout::{medians, CountMedian, RunRow};
use crate::model::units::grouped;
use crate::report::plots::sweep::plot_fanout_sweep;

/// The medians of a sweep as a plain-text table, for the terminal.
pub fn medians_text(medians: &[CountMedian]) -> String {
    let mut text = format!(
        "\n{:>11}  {:>19}  {:>27}\n",
        "subscribers", "median deliveries/s", "median messages published/s"
    );
    for m in medians {
        text += &format!(
            "{:>11}  {:>19.0}  {:>27.0}\n",
            m.subscribers, m.deliveries_per_sec, m.publishes_per_sec
        );
    }
    text
}

/// Writes `fanout.csv`, `summary.md` and `fanout.png` into `dir`.
pub fn write_report(dir: &Path, setup: &str, rows: &[RunRow]) -> Result<(), ReportError> {
    write_rows(&dir.join("fanout.csv"), rows.iter())?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let md = summary_markdown(setup, &medians(rows), &command);
    write_text(&dir.join("summary.md"), &md)?;
    plot_fanout_sweep(&dir.join("fanout.png"), rows, setup)
}

/// `summary.md`: the medians at each subscriber count and the command that measured them.
pub fn summary_markdown(setup: &str, medians: &[CountMedian], command: &str) -> String {
    let mut md = format!(
        "# loadgen fanout: throughput as fan-out grows\n\n{setup}.\n\n\
         | subscribers | runs | publishes per run | deliveries per run \
         | median deliveries/s | median messages published/s |\n\
         |---:|---:|---:|---:|---:|---:|\n"
    );
    for m in medians {
        md += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            m.subscribers,
            m.runs,
            grouped(m.publishes),
            grouped(m.deliveries),
            grouped(m.deliveries_per_sec.round() as u64),
            grouped(m.publishes_per_sec.round() as u64)
        );
    }
    md += "\nA delivery is one message received by one subscriber; every subscriber receives \
           every message. The median is the middle run (the upper middle of an even count). \
           Every run: `fanout.csv`; chart: `fanout.png`.\n";
    md += &format!("\n## Command\n\n```\n{command}\n```\n");
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
        let md = summary_markdown("1 publisher", &medians(&rows), "loadgen fanout --x");
        assert!(
            md.contains("| 1 | 1 | 1,000 | 1,000 | 2,500,000 | 2,500,000 |"),
            "{md}"
        );
        assert!(
            md.contains("| 1000 | 1 | 1,000 | 1,000,000 | 4,000,000 | 4,000 |"),
            "{md}"
        );
        assert!(md.contains("```\nloadgen fanout --x\n```"), "{md}");
        let text = medians_text(&medians(&rows));
        assert_eq!(text.lines().count(), 4, "{text}");
    }
}
