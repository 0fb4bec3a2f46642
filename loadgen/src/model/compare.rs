//! What a comparison measured: one [`Measurement`] per scenario, broker and metric, with every
//! run kept, so a reader can see the spread behind each median; and the project's targets as
//! goals to judge them by. Pure data; the measuring is in `scenario::compare`, the tables in
//! `report::compare`.

use serde::{Deserialize, Serialize};

/// The broker every ratio is taken against: ours.
pub const OURS: &str = "hubbub";

/// One metric of one broker in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub scenario: String,
    pub broker: String,
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// Every successful run's value, in the order measured.
    pub runs: Vec<f64>,
    /// Why runs failed (one entry per failed run), or what else a reader must know.
    pub notes: Vec<String>,
}

impl Measurement {
    /// The middle run (the upper middle of an even count); `None` if no run succeeded.
    pub fn median(&self) -> Option<f64> {
        super::median(self.runs.iter().copied())
    }
}

/// A goal from the project's targets: ours against the best of some peers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    pub scenario: &'static str,
    pub metric: &'static str,
    /// The peers whose best value counts.
    pub against: &'static [&'static str],
    /// Ours ÷ their best must be at least this (higher is better) or at most this (lower).
    pub factor: f64,
}

/// Whether a goal was met, and by what ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub goal: Goal,
    /// ours ÷ the best of `against`, and which peer that best was.
    pub ratio: f64,
    pub best: String,
    pub higher_is_better: bool,
    pub met: bool,
}

/// ours ÷ theirs for `metric` of `scenario`, for each broker that has a median.
pub fn ratio(all: &[Measurement], scenario: &str, metric: &str, broker: &str) -> Option<f64> {
    let median = |b: &str| find(all, scenario, metric, b)?.median();
    let (ours, theirs) = (median(OURS)?, median(broker)?);
    (theirs > 0.0).then(|| ours / theirs)
}

fn find<'a>(
    all: &'a [Measurement],
    scenario: &str,
    metric: &str,
    broker: &str,
) -> Option<&'a Measurement> {
    all.iter()
        .find(|m| m.scenario == scenario && m.metric == metric && m.broker == broker)
}

/// ours ÷ the best measured of `against` for one metric, and which peer was best; `None`
/// when ours or every such peer lacks a median.
pub fn against_best(
    all: &[Measurement],
    scenario: &str,
    metric: &str,
    against: &[&str],
) -> Option<(f64, String, bool)> {
    let ours = find(all, scenario, metric, OURS)?;
    let higher = ours.higher_is_better;
    let best = against
        .iter()
        .filter_map(|b| Some((*b, find(all, scenario, metric, b)?.median()?)))
        .reduce(|a, b| match (higher, b.1 > a.1) {
            (true, true) | (false, false) => b,
            _ => a,
        })?;
    Some((ours.median()? / best.1, best.0.to_string(), higher))
}

/// Judges `goal`: compares ours with the best measured peer among `goal.against`.
pub fn judge(all: &[Measurement], goal: Goal) -> Option<Verdict> {
    let (ratio, best, higher) = against_best(all, goal.scenario, goal.metric, goal.against)?;
    let met = if higher {
        ratio >= goal.factor
    } else {
        ratio <= goal.factor
    };
    Some(Verdict {
        goal,
        ratio,
        best,
        higher_is_better: higher,
        met,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(broker: &str, metric: &str, higher: bool, runs: &[f64]) -> Measurement {
        Measurement {
            scenario: "s".into(),
            broker: broker.into(),
            metric: metric.into(),
            unit: "u".into(),
            higher_is_better: higher,
            runs: runs.to_vec(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn medians_ratios_and_goals() {
        let all = vec![
            m("hubbub", "rate", true, &[30.0, 10.0, 20.0]),
            m("redis", "rate", true, &[8.0, 10.0]),
            m("nats", "rate", true, &[12.0]),
            m("mosquitto", "rate", true, &[]),
            m("hubbub", "p99", false, &[1.0]),
            m("redis", "p99", false, &[2.0]),
            m("nats", "p99", false, &[4.0]),
        ];
        assert_eq!(all[0].median(), Some(20.0));
        assert_eq!(all[1].median(), Some(10.0), "upper middle of two");
        assert_eq!(all[3].median(), None);
        assert_eq!(ratio(&all, "s", "rate", "redis"), Some(2.0));
        assert_eq!(ratio(&all, "s", "rate", "mosquitto"), None);
        let goal = |metric, factor| Goal {
            scenario: "s",
            metric,
            against: &["redis", "nats"],
            factor,
        };
        // Higher is better: the best peer is the larger one (nats, 12).
        let v = judge(&all, goal("rate", 1.5)).unwrap();
        assert_eq!(v.best, "nats");
        assert!((v.ratio - 20.0 / 12.0).abs() < 1e-9);
        assert!(v.met);
        assert!(!judge(&all, goal("rate", 2.0)).unwrap().met);
        // Lower is better: the best peer is the smaller one (redis, 2).
        let v = judge(&all, goal("p99", 0.6)).unwrap();
        assert_eq!((v.best.as_str(), v.ratio, v.met), ("redis", 0.5, true));
        assert!(!judge(&all, goal("p99", 0.4)).unwrap().met);
    }
}
