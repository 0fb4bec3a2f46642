//! The regression check CI runs: a committed baseline of ratios (hubbub ÷ the best of its
//! peers, measured in the same run), and a comparison of a new run against it.
//!
//! Ratios, not absolute rates: CI machines are shared and their speed drifts from run to run
//! by more than any regression worth catching, but Redis and NATS slow down with them. A ratio
//! measured minutes apart on the same machine moves far less than either rate does.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::model::compare::{against_best, Measurement, Ratio};

/// `benches/baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// How the ratios were measured, for whoever refreshes them.
    pub measured_by: String,
    pub entries: Vec<Entry>,
}

/// One ratio to hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub scenario: String,
    pub metric: String,
    /// The peers whose best value the ratio is taken against.
    pub against: Vec<String>,
    /// hubbub ÷ the best of `against`, when the baseline was measured.
    pub ratio: f64,
    /// How much worse than `ratio` a run may be before it fails, as a fraction (0.3 = 30%).
    pub tolerance: f64,
}

/// How one entry fared.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub entry: Entry,
    /// The ratio measured now, with its 95% interval; `None` when a broker had no run.
    pub ratio: Option<Ratio>,
    /// Measured relative to the baseline, oriented so that above 1 is better: now ÷ then
    /// for a metric where higher is better, then ÷ now where lower is.
    pub relative: Option<f64>,
    /// Fails only when the whole interval is past the tolerance: a drop the runs cannot tell
    /// from noise is not a regression.
    pub passed: bool,
}

impl Check {
    /// One line for the CI log: the scenario, both ratios, and by how much it moved.
    pub fn line(&self) -> String {
        let e = &self.entry;
        let head = format!(
            "{} {} (hubbub ÷ best of {})",
            e.scenario,
            e.metric,
            e.against.join(", ")
        );
        match (self.ratio, self.relative) {
            (Some(now), Some(rel)) => format!(
                "{} {head}: {:.2}× now ({:.2}–{:.2}), {:.2}× in the baseline: {:.0}% {} \
                 (tolerance {:.0}%)",
                if self.passed { "ok  " } else { "FAIL" },
                now.ratio,
                now.low,
                now.high,
                e.ratio,
                (rel - 1.0).abs() * 100.0,
                if rel >= 1.0 { "better" } else { "worse" },
                e.tolerance * 100.0
            ),
            _ => format!("FAIL {head}: not measured (a broker had no successful run)"),
        }
    }
}

/// Checks every entry of `baseline` against the measurements of a run.
pub fn check(baseline: &Baseline, all: &[Measurement]) -> Vec<Check> {
    baseline
        .entries
        .iter()
        .map(|e| {
            let against: Vec<&str> = e.against.iter().map(String::as_str).collect();
            let now = against_best(all, &e.scenario, &e.metric, &against);
            let oriented = |higher: bool, r: f64| match higher {
                true => r / e.ratio,
                false => e.ratio / r,
            };
            let relative = now.as_ref().map(|(r, _, h)| oriented(*h, r.ratio));
            // The interval's end most favourable to hubbub.
            let best_case = now.as_ref().map(|(r, _, h)| match h {
                true => oriented(true, r.high),
                false => oriented(false, r.low),
            });
            Check {
                entry: e.clone(),
                ratio: now.map(|n| n.0),
                relative,
                passed: best_case.is_some_and(|r| r >= 1.0 - e.tolerance),
            }
        })
        .collect()
}

/// The baseline a run would set: each entry of `template` with this run's ratio.
pub fn refreshed(template: &Baseline, all: &[Measurement]) -> anyhow::Result<Baseline> {
    let mut next = template.clone();
    for (e, c) in next.entries.iter_mut().zip(check(template, all)) {
        e.ratio = c.ratio.map(|r| r.ratio).with_context(|| {
            format!(
                "{} {}: not measured, so no baseline can be set",
                e.scenario, e.metric
            )
        })?;
    }
    Ok(next)
}

pub fn read(path: &Path) -> anyhow::Result<Baseline> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a baseline", path.display()))
}

pub fn write(path: &Path, baseline: &Baseline) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(baseline)? + "\n";
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(broker: &str, metric: &str, higher: bool, v: f64) -> Measurement {
        Measurement {
            runs: vec![v],
            ..Measurement::new("s", broker, metric, "", higher)
        }
    }

    fn entry(metric: &str, ratio: f64) -> Entry {
        Entry {
            scenario: "s".into(),
            metric: metric.into(),
            against: vec!["redis".into(), "nats".into()],
            ratio,
            tolerance: 0.25,
        }
    }

    #[test]
    fn a_ratio_that_falls_past_the_tolerance_fails() {
        let all = vec![
            m("hubbub", "rate", true, 30.0),
            m("redis", "rate", true, 10.0),
            m("nats", "rate", true, 15.0),
            m("hubbub", "p99", false, 1.0),
            m("redis", "p99", false, 2.0),
        ];
        let baseline = Baseline {
            measured_by: "test".into(),
            // Now: rate 30/15 = 2.0 against 2.5 (20% worse); p99 1/2 = 0.5 against 0.25
            // (lower is better: half as good); "lost" is not measured at all.
            entries: vec![entry("rate", 2.5), entry("p99", 0.25), entry("lost", 1.0)],
        };
        let checks = check(&baseline, &all);
        assert_eq!(checks[0].ratio.map(|r| r.ratio), Some(2.0));
        assert!((checks[0].relative.unwrap() - 0.8).abs() < 1e-9);
        assert!(checks[0].passed, "20% worse is within 25%");
        assert_eq!(checks[1].relative, Some(0.5));
        assert!(!checks[1].passed);
        assert!(!checks[2].passed);
        assert_eq!(
            checks[1].line(),
            "FAIL s p99 (hubbub ÷ best of redis, nats): 0.50× now (0.50–0.50), 0.25× in the \
             baseline: 50% worse (tolerance 25%)"
        );
        assert!(checks[2].line().contains("not measured"));
        let next = refreshed(
            &Baseline {
                measured_by: "test".into(),
                entries: vec![entry("rate", 2.5)],
            },
            &all,
        )
        .unwrap();
        assert_eq!(next.entries[0].ratio, 2.0);
        assert!(refreshed(&baseline, &all).is_err());
    }

    #[test]
    fn a_drop_the_runs_cannot_tell_from_noise_passes() {
        let runs = |broker: &str, v: &[f64]| Measurement {
            runs: v.to_vec(),
            ..Measurement::new("s", broker, "rate", "", true)
        };
        // Median ratio 1.4 against a baseline of 2.0 (30% worse, past 25%), but the runs
        // spread so widely that the interval reaches 1.9: not a measurable regression.
        let all = vec![
            runs("hubbub", &[14.0, 19.0, 8.0, 14.0, 20.0]),
            runs("redis", &[10.0, 10.0, 10.0, 10.0, 10.0]),
        ];
        let baseline = Baseline {
            measured_by: "test".into(),
            entries: vec![Entry {
                against: vec!["redis".into()],
                ..entry("rate", 2.0)
            }],
        };
        let c = &check(&baseline, &all)[0];
        assert!((c.relative.unwrap() - 0.7).abs() < 1e-9, "{c:?}");
        assert!(c.passed, "{}", c.line());
        // The same median with tight runs is a regression.
        let tight = vec![
            runs("hubbub", &[14.0, 14.1, 13.9, 14.0, 14.0]),
            runs("redis", &[10.0, 10.0, 10.0, 10.0, 10.0]),
        ];
        assert!(!check(&baseline, &tight)[0].passed);
    }
}
