//! A comparison as tables: the markdown table of one scenario (every run, the median, hubbub ÷
//! each broker), one line per goal, and `comparison.csv` with a row per run.

use std::fmt::Write as _;
use std::path::Path;

use super::files::{write_rows, ReportError};

use crate::model::compare::{ratio, Measurement, Verdict};
use crate::model::units::{short, Style};

/// A measured value in its unit: counts of clients exactly, everything else by [`human`].
fn show(m: &Measurement, v: f64) -> String {
    match m.unit.as_str() {
        "clients" => format!("{v:.0}"),
        _ => short(v, Style::Table),
    }
}

/// The markdown table of one scenario: a row per broker and metric, with the median, every
/// run, and ours ÷ theirs.
pub fn scenario_table(all: &[Measurement], scenario: &str) -> String {
    let mut md = String::from(
        "| broker | metric | median | runs | hubbub ÷ broker | notes |\n\
         |---|---|---:|---|---:|---|\n",
    );
    for m in all.iter().filter(|m| m.scenario == scenario) {
        let median = m
            .median()
            .map_or("failed".into(), |v| format!("{} {}", show(m, v), m.unit));
        let runs: Vec<String> = m.runs.iter().map(|&v| show(m, v)).collect();
        let ratio =
            ratio(all, scenario, &m.metric, &m.broker).map_or("–".into(), |r| format!("{r:.2}×"));
        let better = if m.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        let _ = writeln!(
            md,
            "| {} | {} ({better}) | {median} | {} | {ratio} | {} |",
            m.broker,
            m.metric,
            runs.join(", "),
            m.notes.join("; ").replace('|', "/"),
        );
    }
    md
}

/// One line per goal: the target, the measured ratio, met or not.
pub fn verdict_line(v: &Verdict) -> String {
    let op = if v.higher_is_better { "≥" } else { "≤" };
    format!(
        "{} `{}`: hubbub ÷ best of {} ({}) = **{:.2}×**, target {op} {}× — {}",
        v.goal.scenario,
        v.goal.metric,
        v.goal.against.join(" and "),
        v.best,
        v.ratio,
        v.goal.factor,
        if v.met { "met" } else { "**not met**" }
    )
}

/// One row of `comparison.csv`: one run of one metric of one broker, with its
/// measurement's median and ratio; a measurement without a successful run gets one row with
/// no run, no value and its notes.
#[derive(Debug, serde::Serialize)]
struct CsvRow<'a> {
    scenario: &'a str,
    broker: &'a str,
    metric: &'a str,
    unit: &'a str,
    higher_is_better: bool,
    run: Option<usize>,
    value: Option<f64>,
    median: Option<f64>,
    /// hubbub ÷ this broker, to four decimals.
    hubbub_ratio: Option<f64>,
    notes: String,
}

/// `comparison.csv`: one row per run (so the spread is there for anyone to plot), each with
/// its measurement's median and ratio.
pub fn write_csv(path: &Path, all: &[Measurement]) -> Result<(), ReportError> {
    let mut rows = Vec::new();
    for m in all {
        let row = |run: Option<usize>, value: Option<f64>| CsvRow {
            scenario: &m.scenario,
            broker: &m.broker,
            metric: &m.metric,
            unit: &m.unit,
            higher_is_better: m.higher_is_better,
            run,
            value,
            median: m.median(),
            hubbub_ratio: ratio(all, &m.scenario, &m.metric, &m.broker)
                .map(|r| (r * 1e4).round() / 1e4),
            notes: m.notes.join("; "),
        };
        if m.runs.is_empty() {
            rows.push(row(None, None));
        }
        for (i, &v) in m.runs.iter().enumerate() {
            rows.push(row(Some(i + 1), Some(v)));
        }
    }
    write_rows(path, rows.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compare::{judge, Goal};

    fn m(broker: &str, runs: &[f64]) -> Measurement {
        Measurement {
            scenario: "s".into(),
            broker: broker.into(),
            metric: "rate".into(),
            unit: "u".into(),
            higher_is_better: true,
            runs: runs.to_vec(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_row_per_broker_and_a_line_per_goal() {
        let all = vec![
            m("hubbub", &[30.0, 10.0, 20.0]),
            m("redis", &[8.0, 10.0]),
            m("mosquitto", &[]),
        ];
        let table = scenario_table(&all, "s");
        assert!(
            table
                .contains("| redis | rate (higher is better) | 10.000 u | 8.000, 10.000 | 2.00× |"),
            "{table}"
        );
        assert!(table.contains("| mosquitto | rate (higher is better) | failed |"));
        let goal = Goal {
            scenario: "s",
            metric: "rate",
            against: &["redis"],
            factor: 1.5,
        };
        let v = judge(&all, goal).unwrap();
        assert!(verdict_line(&v).contains("= **2.00×**, target ≥ 1.5× — met"));
    }
}
