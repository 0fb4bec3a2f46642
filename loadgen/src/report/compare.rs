//! A comparison as tables: the markdown table of one scenario (every run, the median and its
//! range, whether the runs were steady, what set them, what the driver cost, hubbub ÷ each
//! broker with its 95% interval), one line per goal, and `comparison.csv` with a row per run.

use std::fmt::Write as _;
use std::path::Path;

use super::files::{write_rows, ReportError};
use crate::model::bottleneck::Class;
use crate::model::compare::{costly_drivers, find, ratio, ratio_of, Measurement, Ratio, Verdict};
use crate::model::units::{in_words, short, Style};

/// A measured value in its unit: counts of clients exactly, everything else short.
fn show(m: &Measurement, v: f64) -> String {
    match m.unit.as_str() {
        "clients" => format!("{v:.0}"),
        _ => short(v, Style::Table),
    }
}

/// "1.27× (1.20–1.33)", or "1.02× (0.97–1.08): no measurable difference".
pub fn ratio_words(r: &Ratio) -> String {
    let text = format!("{:.2}× ({:.2}–{:.2})", r.ratio, r.low, r.high);
    match r.not_measurable() {
        true => format!("{text}: no measurable difference"),
        false => text,
    }
}

/// The markdown table of one scenario: a row per broker and metric.
pub fn scenario_table(all: &[Measurement], scenario: &str) -> String {
    let mut md = String::from(
        "| broker | metric | median | min–max | runs | steady | what set it | loadgen µs per \
         delivery | hubbub ÷ broker (95% interval) | notes |\n\
         |---|---|---:|---|---|---|---|---:|---|---|\n",
    );
    let costly = costly_drivers(all, scenario);
    for m in all.iter().filter(|m| m.scenario == scenario) {
        let (median, range) = match m.spread() {
            Some(s) => (
                format!("{} {}", show(m, s.median), m.unit),
                format!("{}–{}", show(m, s.min), show(m, s.max)),
            ),
            None => ("failed".into(), "–".into()),
        };
        let runs: Vec<String> = m.runs.iter().map(|&v| show(m, v)).collect();
        let steady = match m.judged.len() {
            0 => "–".to_string(),
            n => format!("{} of {n}", n - m.unsteady()),
        };
        let class = m
            .usual_class()
            .map_or("–".into(), |(c, n)| match n == m.judged.len() {
                true => c.name().to_string(),
                false => format!("{} ({n} of {})", c.name(), m.judged.len()),
            });
        let cost = m.driver_cost().map_or("–".into(), |c| format!("{c:.3}"));
        let ratio = match m.broker.as_str() {
            crate::model::compare::OURS => "–".to_string(),
            b => ratio(all, scenario, &m.metric, b).map_or("–".into(), |r| ratio_words(&r)),
        };
        let mut notes = m.notes.clone();
        if let Some((_, f)) = costly.iter().find(|(b, _)| *b == m.broker) {
            // A costly driver handicaps a broker only where loadgen or the machine set the
            // figure; a broker that was its own limit was not held down by it.
            notes.push(match m.usual_class() {
                Some((c @ (Class::BrokerBound | Class::WindowBound | Class::RateBound), _)) => {
                    format!(
                        "loadgen spent {f:.1}× hubbub's CPU per delivery on it, but did not set \
                         the figure ({})",
                        c.name()
                    )
                }
                _ => format!(
                    "its driver costs loadgen {f:.1}× hubbub's CPU per delivery and loadgen or \
                     the machine set the figure: a handicap, so the figure is a lower bound"
                ),
            });
        }
        let better = if m.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        let _ = writeln!(
            md,
            "| {} | {} ({better}) | {median} | {range} | {} | {steady} | {class} | {cost} | {ratio} | {} |",
            m.broker,
            m.metric,
            runs.join(", "),
            notes.join("; ").replace('|', "/"),
        );
    }
    md
}

/// What TLS costs each broker: a row per broker measured in both halves of a TLS scenario,
/// its median without TLS (`plain`) and with it (`tls`), and TLS ÷ plain with its interval.
pub fn tls_cost_table(all: &[Measurement], plain: &str, tls: &str) -> String {
    let mut md = String::from(
        "| broker | metric | without TLS (median) | with TLS (median) | TLS ÷ plain (95% \
         interval) |\n|---|---|---:|---:|---|\n",
    );
    let median = |m: &Measurement| {
        m.median()
            .map_or("failed".into(), |v| format!("{} {}", show(m, v), m.unit))
    };
    for t in all.iter().filter(|m| m.scenario == tls) {
        let Some(p) = find(all, plain, &t.metric, &t.broker) else {
            continue;
        };
        let r = ratio_of(t, p).map_or("–".into(), |r| ratio_words(&r));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {r} |",
            t.broker,
            t.metric,
            median(p),
            median(t)
        );
    }
    md
}

/// One line per goal: the target, the measured ratio with its interval, met or not, and what
/// set hubbub's runs.
pub fn verdict_line(v: &Verdict) -> String {
    let op = if v.higher_is_better { "≥" } else { "≤" };
    let set = v
        .ours_class
        .map(|c| format!("; hubbub's runs {}", c.name()))
        .unwrap_or_default();
    format!(
        "{} `{}`: hubbub ÷ best of {} ({}) = **{}**, target {op} {}× — {}{set}",
        v.goal.scenario,
        v.goal.metric,
        in_words(v.goal.against),
        v.best,
        ratio_words(&v.ratio),
        v.goal.factor,
        if v.met { "met" } else { "**not met**" }
    )
}

/// One row of `comparison.csv`: one run of one metric of one broker, with what set it and its
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
    steady: Option<bool>,
    bottleneck: Option<&'static str>,
    broker_cpu_pct: Option<f64>,
    loadgen_cpu_pct: Option<f64>,
    loadgen_us_per_delivery: Option<f64>,
    median: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    /// hubbub ÷ this broker and its 95% interval, to four decimals.
    hubbub_ratio: Option<f64>,
    hubbub_ratio_low: Option<f64>,
    hubbub_ratio_high: Option<f64>,
    notes: String,
}

/// `comparison.csv`: one row per run (so the spread is there for anyone to plot), each with
/// its measurement's median and ratio.
pub fn write_csv(path: &Path, all: &[Measurement]) -> Result<(), ReportError> {
    let four = |v: f64| (v * 1e4).round() / 1e4;
    let mut rows = Vec::new();
    for m in all {
        let r = ratio(all, &m.scenario, &m.metric, &m.broker);
        let spread = m.spread();
        let row = |run: Option<usize>| {
            let judged = run.and_then(|i| m.judged.get(i - 1));
            CsvRow {
                scenario: &m.scenario,
                broker: &m.broker,
                metric: &m.metric,
                unit: &m.unit,
                higher_is_better: m.higher_is_better,
                run,
                value: run.map(|i| m.runs[i - 1]),
                steady: judged.map(|j| j.steady),
                bottleneck: judged.map(|j| j.bottleneck.class.name()),
                broker_cpu_pct: judged.map(|j| four(j.bottleneck.broker.total_pct)),
                loadgen_cpu_pct: judged.map(|j| four(j.bottleneck.loadgen.total_pct)),
                loadgen_us_per_delivery: judged.map(|j| four(j.loadgen_us_per_delivery)),
                median: spread.map(|s| s.median),
                min: spread.map(|s| s.min),
                max: spread.map(|s| s.max),
                hubbub_ratio: r.map(|r| four(r.ratio)),
                hubbub_ratio_low: r.map(|r| four(r.low)),
                hubbub_ratio_high: r.map(|r| four(r.high)),
                notes: m.notes.join("; "),
            }
        };
        if m.runs.is_empty() {
            rows.push(row(None));
        }
        for i in 1..=m.runs.len() {
            rows.push(row(Some(i)));
        }
    }
    write_rows(path, rows.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::compare::{judge, Goal};

    fn m(broker: &str, runs: &[f64]) -> Measurement {
        let mut m = Measurement::new("s", broker, "rate", "u", true);
        m.runs = runs.to_vec();
        m
    }

    #[test]
    fn a_row_per_broker_and_a_line_per_goal() {
        let all = vec![
            m("hubbub", &[30.0, 10.0, 20.0]),
            m("redis", &[8.0, 10.0, 9.0]),
            m("mosquitto", &[]),
        ];
        let table = scenario_table(&all, "s");
        assert!(
            table.contains("| redis | rate (higher is better) | 9.000 u | 8.000–10.000 | 8.000, 10.000, 9.000 | – | – | – | 2.22× ("),
            "{table}"
        );
        assert!(table.contains("| mosquitto | rate (higher is better) | failed | – |"));
        let goal = Goal {
            scenario: "s".into(),
            metric: "rate",
            against: &["redis"],
            factor: 1.5,
        };
        let v = judge(&all, &goal).unwrap();
        let line = verdict_line(&v);
        assert!(line.contains("= **2.22× ("), "{line}");
        assert!(line.contains("target ≥ 1.5× — met"), "{line}");
    }

    #[test]
    fn a_costly_driver_is_a_handicap_only_where_loadgen_or_the_machine_set_the_figure() {
        use crate::model::bottleneck::{classify, Pacing, Usage};
        use crate::model::compare::Judged;
        let cpu = |total: f64, busiest: f64| Usage {
            total_pct: total,
            busiest_thread_pct: busiest,
            busiest_thread: "t".into(),
            threads: 2,
            available_cores: 2.0,
        };
        let run = |broker: Usage, loadgen: Usage, cost: f64| Judged {
            bottleneck: classify(&broker, &loadgen, 2.0, Pacing::Window),
            steady: true,
            loadgen_us_per_delivery: cost,
        };
        let mut ours = m("hubbub", &[10.0]);
        ours.judged = vec![run(cpu(80.0, 40.0), cpu(50.0, 25.0), 0.1)];
        // One broker thread pinned: its own limit, whatever loadgen spent.
        let mut serial = m("mosquitto", &[1.0]);
        serial.judged = vec![run(cpu(99.0, 99.0), cpu(86.0, 45.0), 10.0)];
        // Both spread over the cores and together filling them: loadgen's cost mattered.
        let mut crowded = m("nats", &[5.0]);
        crowded.judged = vec![run(cpu(110.0, 60.0), cpu(80.0, 45.0), 0.3)];
        let table = scenario_table(&[ours, serial, crowded], "s");
        assert!(
            table.contains(
                "loadgen spent 100.0× hubbub's CPU per delivery on it, but did not set the \
                 figure (broker-bound)"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "its driver costs loadgen 3.0× hubbub's CPU per delivery and loadgen or the \
                 machine set the figure: a handicap"
            ),
            "{table}"
        );
    }

    #[test]
    fn tls_costs_each_broker_its_tls_runs_over_its_plain_ones() {
        let mut all = Vec::new();
        for (scenario, broker, runs) in [
            ("c-plain", "redis", &[100.0, 100.0, 100.0][..]),
            ("c-tls", "redis", &[25.0, 25.0, 25.0]),
            ("c-plain", "nats", &[10.0]),
            ("c-tls", "nats", &[]),
            ("c-tls", "hubbub", &[5.0]),
        ] {
            let mut m = Measurement::new(scenario, broker, "rate", "/s", true);
            m.runs = runs.to_vec();
            all.push(m);
        }
        let table = tls_cost_table(&all, "c-plain", "c-tls");
        assert!(
            table.contains("| redis | rate | 100 /s | 25.000 /s | 0.25× (0.25–0.25) |"),
            "{table}"
        );
        assert!(
            table.contains("| nats | rate | 10.000 /s | failed | – |"),
            "{table}"
        );
        assert!(!table.contains("hubbub"), "no plain half, no row: {table}");
    }

    #[test]
    fn an_interval_over_one_says_so() {
        let r = Ratio {
            ratio: 1.02,
            low: 0.97,
            high: 1.08,
        };
        assert_eq!(
            ratio_words(&r),
            "1.02× (0.97–1.08): no measurable difference"
        );
    }
}
