//! What a comparison measured: one [`Measurement`] per scenario, broker and metric, with every
//! run kept (and, where the scenario judges it, what set each run and whether it was steady),
//! so a reader can see the spread behind each median; ratios with a bootstrap interval; and the
//! project's targets as goals to judge them by. Pure data; the measuring is in
//! `scenario::compare`, the tables in `report::compare`.

use serde::{Deserialize, Serialize};

use super::bottleneck::{Bottleneck, Class};
use super::stats::{ratio_interval, Spread};

/// The broker every ratio is taken against: ours.
pub const OURS: &str = "hubbub";

/// A driver whose CPU per delivery is more than this many times hubbub's handicaps its broker:
/// its figures are flagged.
pub const DRIVER_COST_FLAG: f64 = 1.5;

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
    /// For scenarios that judge their runs: one per run, in the same order.
    #[serde(default)]
    pub judged: Vec<Judged>,
    /// Why runs failed (one entry per failed run), or what else a reader must know.
    pub notes: Vec<String>,
}

/// What one run's figure rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    pub bottleneck: Bottleneck,
    /// Its per-second rates held still (see `stats::Steadiness`).
    pub steady: bool,
    /// loadgen's CPU per delivery, in microseconds: the cost of the protocol's driver.
    pub loadgen_us_per_delivery: f64,
}

impl Measurement {
    /// A measurement with no runs yet.
    pub fn new(scenario: &str, broker: &str, metric: &str, unit: &str, higher: bool) -> Self {
        Measurement {
            scenario: scenario.into(),
            broker: broker.into(),
            metric: metric.into(),
            unit: unit.into(),
            higher_is_better: higher,
            runs: Vec::new(),
            judged: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The middle run (the upper middle of an even count); `None` if no run succeeded.
    pub fn median(&self) -> Option<f64> {
        super::median(self.runs.iter().copied())
    }

    pub fn spread(&self) -> Option<Spread> {
        Spread::of(&self.runs)
    }

    /// The bottleneck class most of the judged runs had, and how many of them had it.
    pub fn usual_class(&self) -> Option<(Class, usize)> {
        let classes: Vec<Class> = self.judged.iter().map(|j| j.bottleneck.class).collect();
        classes
            .iter()
            .map(|c| (*c, classes.iter().filter(|d| *d == c).count()))
            .max_by_key(|&(_, n)| n)
    }

    /// Judged runs that were not steady.
    pub fn unsteady(&self) -> usize {
        self.judged.iter().filter(|j| !j.steady).count()
    }

    /// The median of loadgen's CPU per delivery over the judged runs.
    pub fn driver_cost(&self) -> Option<f64> {
        super::median(self.judged.iter().map(|j| j.loadgen_us_per_delivery))
    }
}

/// ours ÷ theirs, the medians', with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
}

impl Ratio {
    /// The interval holds 1.0: no difference the runs can show.
    pub fn not_measurable(&self) -> bool {
        self.low <= 1.0 && 1.0 <= self.high
    }
}

/// A goal from the project's targets: ours against the best of some peers.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub scenario: String,
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
    /// ours ÷ the best of `against`, with its interval, and which peer that best was.
    pub ratio: Ratio,
    pub best: String,
    pub higher_is_better: bool,
    pub met: bool,
    /// What set ours, most often, in this scenario.
    pub ours_class: Option<Class>,
}

pub fn find<'a>(
    all: &'a [Measurement],
    scenario: &str,
    metric: &str,
    broker: &str,
) -> Option<&'a Measurement> {
    all.iter()
        .find(|m| m.scenario == scenario && m.metric == metric && m.broker == broker)
}

/// ours ÷ `broker` for `metric` of `scenario`, with its interval, when both have runs.
pub fn ratio(all: &[Measurement], scenario: &str, metric: &str, broker: &str) -> Option<Ratio> {
    let ours = find(all, scenario, metric, OURS)?;
    let theirs = find(all, scenario, metric, broker)?;
    let (o, t) = (ours.median()?, theirs.median()?);
    let (low, high) = ratio_interval(&ours.runs, &theirs.runs)?;
    (t > 0.0).then(|| Ratio {
        ratio: o / t,
        low,
        high,
    })
}

/// `a` ÷ `b`, the medians', with its 95% bootstrap interval, when both have runs: what TLS
/// costs a broker is its runs with TLS ÷ its runs without.
pub fn ratio_of(a: &Measurement, b: &Measurement) -> Option<Ratio> {
    let (x, y) = (a.median()?, b.median()?);
    let (low, high) = ratio_interval(&a.runs, &b.runs)?;
    (y > 0.0).then(|| Ratio {
        ratio: x / y,
        low,
        high,
    })
}

/// ours ÷ the best measured of `against` for one metric, and which peer was best; `None`
/// when ours or every such peer lacks a median.
pub fn against_best(
    all: &[Measurement],
    scenario: &str,
    metric: &str,
    against: &[&str],
) -> Option<(Ratio, String, bool)> {
    let ours = find(all, scenario, metric, OURS)?;
    let higher = ours.higher_is_better;
    let best = against
        .iter()
        .filter_map(|b| Some((*b, find(all, scenario, metric, b)?.median()?)))
        .reduce(|a, b| match (higher, b.1 > a.1) {
            (true, true) | (false, false) => b,
            _ => a,
        })?;
    Some((
        ratio(all, scenario, metric, best.0)?,
        best.0.to_string(),
        higher,
    ))
}

/// Judges `goal`: compares ours with the best measured peer among `goal.against`.
pub fn judge(all: &[Measurement], goal: &Goal) -> Option<Verdict> {
    let (ratio, best, higher) = against_best(all, &goal.scenario, goal.metric, goal.against)?;
    let met = if higher {
        ratio.ratio >= goal.factor
    } else {
        ratio.ratio <= goal.factor
    };
    let ours_class = find(all, &goal.scenario, goal.metric, OURS)
        .and_then(|m| m.usual_class())
        .map(|(c, _)| c);
    Some(Verdict {
        goal: goal.clone(),
        ratio,
        best,
        higher_is_better: higher,
        met,
        ours_class,
    })
}

/// The brokers whose driver costs loadgen more than [`DRIVER_COST_FLAG`] times hubbub's per
/// delivery in `scenario`, with the factor: their figures may be held down by loadgen.
pub fn costly_drivers(all: &[Measurement], scenario: &str) -> Vec<(String, f64)> {
    let in_scenario = || all.iter().filter(|m| m.scenario == scenario);
    let Some(ours) = in_scenario()
        .find(|m| m.broker == OURS)
        .and_then(|m| m.driver_cost())
    else {
        return Vec::new();
    };
    in_scenario()
        .filter(|m| m.broker != OURS)
        .filter_map(|m| Some((m.broker.clone(), m.driver_cost()? / ours)))
        .filter(|(_, f)| *f > DRIVER_COST_FLAG)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bottleneck::{classify, Pacing, Usage};

    fn m(broker: &str, metric: &str, higher: bool, runs: &[f64]) -> Measurement {
        let mut m = Measurement::new("s", broker, metric, "u", higher);
        m.runs = runs.to_vec();
        m
    }

    #[test]
    fn medians_ratios_intervals_and_goals() {
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
        let r = ratio(&all, "s", "rate", "redis").unwrap();
        assert_eq!(r.ratio, 2.0);
        assert!(r.low < 2.0 && r.high >= 2.0, "{r:?}");
        assert_eq!(ratio(&all, "s", "rate", "mosquitto"), None);
        let goal = |metric, factor| Goal {
            scenario: "s".into(),
            metric,
            against: &["redis", "nats"],
            factor,
        };
        // Higher is better: the best peer is the larger one (nats, 12).
        let v = judge(&all, &goal("rate", 1.5)).unwrap();
        assert_eq!(v.best, "nats");
        assert!((v.ratio.ratio - 20.0 / 12.0).abs() < 1e-9);
        assert!(v.met);
        assert!(!judge(&all, &goal("rate", 2.0)).unwrap().met);
        // Lower is better: the best peer is the smaller one (redis, 2).
        let v = judge(&all, &goal("p99", 0.6)).unwrap();
        assert_eq!(
            (v.best.as_str(), v.ratio.ratio, v.met),
            ("redis", 0.5, true)
        );
        assert!(!judge(&all, &goal("p99", 0.4)).unwrap().met);
    }

    #[test]
    fn classes_steadiness_and_driver_costs() {
        let cpu = |t: f64| Usage {
            total_pct: t,
            busiest_thread_pct: t,
            busiest_thread: "t".into(),
            threads: 1,
            available_cores: 2.0,
        };
        let judged = |broker: f64, cost: f64, steady: bool| Judged {
            bottleneck: classify(&cpu(broker), &cpu(40.0), 2.0, Pacing::Window),
            steady,
            loadgen_us_per_delivery: cost,
        };
        let mut ours = m("hubbub", "rate", true, &[1.0, 1.0, 1.0]);
        ours.judged = vec![
            judged(50.0, 0.1, true),
            judged(95.0, 0.1, false),
            judged(50.0, 0.12, true),
        ];
        let mut theirs = m("redis", "rate", true, &[1.0, 1.0, 1.0]);
        theirs.judged = vec![judged(95.0, 0.3, true); 3];
        assert_eq!(ours.usual_class(), Some((Class::WindowBound, 2)));
        assert_eq!(ours.unsteady(), 1);
        assert_eq!(theirs.usual_class(), Some((Class::BrokerBound, 3)));
        let costly = costly_drivers(&[ours, theirs], "s");
        assert_eq!(costly.len(), 1);
        assert_eq!(costly[0].0, "redis");
        assert!((costly[0].1 - 3.0).abs() < 1e-9, "{costly:?}");
        let same = m("nats", "rate", true, &[1.0, 1.0]);
        let r = ratio(
            &[m("hubbub", "rate", true, &[1.0, 1.1]), same],
            "s",
            "rate",
            "nats",
        );
        assert!(r.unwrap().not_measurable());
    }
}
