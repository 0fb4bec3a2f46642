//! What a fan-out sweep leaves behind: one row per run (`fanout.csv`), the medians at each
//! subscriber count (`summary.md` and the terminal table), and the chart. Pure formatting of
//! what [`super`] measured, apart from the one function that writes the files.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{Opts, Run, Spec};
use crate::model::median;
use crate::report::plots::sweep::plot_fanout_sweep;

/// One row of `fanout.csv`: one run; the field order is the column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub subscribers: usize,
    /// 1, 2, … within its subscriber count.
    pub run: usize,
    /// Messages published in the run, by all publishers together.
    pub publishes: u64,
    /// Messages received, by all subscribers together: publishes × subscribers.
    pub deliveries: u64,
    /// From the first publish to the last delivery, to the microsecond.
    pub elapsed_s: f64,
    /// To 0.1.
    pub deliveries_per_sec: f64,
    /// Messages published per second, to 0.1.
    pub publishes_per_sec: f64,
}

impl RunRow {
    pub fn new(spec: &Spec, run: usize, r: &Run) -> Self {
        let secs = r.elapsed.as_secs_f64();
        let publishes = spec.publishers as u64 * spec.publishes;
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        RunRow {
            subscribers: spec.subscribers,
            run,
            publishes,
            deliveries: r.deliveries,
            elapsed_s: (secs * 1e6).round() / 1e6,
            deliveries_per_sec: tenth(r.deliveries as f64 / secs),
            publishes_per_sec: tenth(publishes as f64 / secs),
        }
    }
}

/// The runs at one subscriber count, summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct CountMedian {
    pub subscribers: usize,
    pub runs: usize,
    /// Per run (the same in every run of a count).
    pub publishes: u64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub publishes_per_sec: f64,
}

/// The medians of the runs at each subscriber count, by ascending count.
pub fn medians(rows: &[RunRow]) -> Vec<CountMedian> {
    let mut counts: Vec<usize> = rows.iter().map(|r| r.subscribers).collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .into_iter()
        .filter_map(|subscribers| {
            let runs: Vec<&RunRow> = rows
                .iter()
                .filter(|r| r.subscribers == subscribers)
                .collect();
            let first = runs.first()?;
            Some(CountMedian {
                subscribers,
                runs: runs.len(),
                publishes: first.publishes,
                deliveries: first.deliveries,
                deliveries_per_sec: median(runs.iter().map(|r| r.deliveries_per_sec))?,
                publishes_per_sec: median(runs.iter().map(|r| r.publishes_per_sec))?,
            })
        })
        .collect()
}

/// The medians of a sweep as a plain-text table, for the terminal.
pub(super) fn medians_text(medians: &[CountMedian]) -> String {
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

/// What was measured, in a line short enough for the chart's subtitle: `broker` is
/// "hubbub started by loadgen" or "{proto} at {addr}".
pub(super) fn setup_text(opts: &Opts, broker: &str) -> String {
    let work = match opts.deliveries {
        Some(n) => format!("about {} deliveries per run", grouped(n)),
        None => format!("{} publishes per publisher per run", opts.publishes),
    };
    format!(
        "{}, {}, {} B messages, {work}, {} per subscriber count; {broker}",
        plural(opts.publishers, "publisher"),
        plural(opts.channels, "channel"),
        opts.size,
        plural(opts.repeat, "run"),
    )
}

/// 2000000 as "2,000,000".
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// "1 run", "3 runs".
pub(super) fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Writes `fanout.csv`, `summary.md` and `fanout.png` into `dir`.
pub(super) fn write_report(dir: &Path, setup: &str, rows: &[RunRow]) -> anyhow::Result<()> {
    let csv_path = dir.join("fanout.csv");
    let mut csv = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    for row in rows {
        csv.serialize(row)?;
    }
    csv.flush()
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let md_path = dir.join("summary.md");
    std::fs::write(&md_path, summary_markdown(setup, &medians(rows), &command))
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    plot_fanout_sweep(&dir.join("fanout.png"), rows, setup)?;
    Ok(())
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
