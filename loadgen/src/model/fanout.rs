//! What a fan-out run is and what one measured: its shape, its result second by second with
//! what set it, and the rows and medians a sweep over subscriber counts reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bottleneck::Bottleneck;
use super::median;
use super::stats::{Spread, Steadiness};

/// The shape of one fan-out run: every subscriber subscribes to all `channels`; publisher p
/// publishes on channel p mod channels as fast as the window lets it, so every subscriber
/// receives every message. The first `warmup` is not counted; deliveries are then counted
/// second by second for `duration`.
#[derive(Debug, Clone)]
pub struct Spec {
    pub publishers: usize,
    pub subscribers: usize,
    pub channels: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Most messages all publishers together may be ahead of the slowest subscriber.
    pub window: u64,
    pub warmup: Duration,
    pub duration: Duration,
}

/// One run's result: its measured window, second by second, and what set its rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Deliveries in the measured window.
    pub deliveries: u64,
    /// The measured window's length.
    pub elapsed: Duration,
    /// Deliveries in each second of it.
    pub per_second: Vec<f64>,
    pub steadiness: Steadiness,
    pub bottleneck: Bottleneck,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }

    /// loadgen's CPU per delivery, in microseconds: what the protocol's driver costs.
    pub fn loadgen_us_per_delivery(&self) -> f64 {
        let cpu_secs = self.bottleneck.loadgen.total_pct / 100.0 * self.elapsed.as_secs_f64();
        cpu_secs * 1e6 / self.deliveries.max(1) as f64
    }
}

/// One row of `fanout.csv`: one run; the field order is the column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub subscribers: usize,
    /// 1, 2, … within its subscriber count.
    pub run: usize,
    /// Deliveries counted, by all subscribers together, in the measured window.
    pub deliveries: u64,
    /// The measured window, in seconds (to the millisecond).
    pub elapsed_s: f64,
    /// To 0.1.
    pub deliveries_per_sec: f64,
    /// Messages published per second (deliveries ÷ subscribers), to 0.1.
    pub publishes_per_sec: f64,
    /// Coefficient of variation of the per-second rates, and their trend across the window.
    pub cv: f64,
    pub trend: f64,
    pub steady: bool,
    /// What set the rate: broker-bound, client-bound, window-bound or machine-bound.
    pub bottleneck: String,
    pub broker_cpu_pct: f64,
    pub loadgen_cpu_pct: f64,
    /// loadgen's CPU per delivery.
    pub loadgen_us_per_delivery: f64,
}

impl RunRow {
    pub fn new(spec: &Spec, run: usize, r: &Run) -> Self {
        let round = |v: f64, by: f64| (v * by).round() / by;
        RunRow {
            subscribers: spec.subscribers,
            run,
            deliveries: r.deliveries,
            elapsed_s: round(r.elapsed.as_secs_f64(), 1e3),
            deliveries_per_sec: round(r.rate(), 10.0),
            publishes_per_sec: round(r.rate() / spec.subscribers as f64, 10.0),
            cv: round(r.steadiness.cv, 1e4),
            trend: round(r.steadiness.trend, 1e4),
            steady: r.steadiness.steady,
            bottleneck: r.bottleneck.class.name().into(),
            broker_cpu_pct: round(r.bottleneck.broker.total_pct, 10.0),
            loadgen_cpu_pct: round(r.bottleneck.loadgen.total_pct, 10.0),
            loadgen_us_per_delivery: round(r.loadgen_us_per_delivery(), 1e3),
        }
    }
}

/// The runs at one subscriber count, summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct CountMedian {
    pub subscribers: usize,
    pub runs: usize,
    pub deliveries_per_sec: Spread,
    pub publishes_per_sec: f64,
    /// Runs that were not steady.
    pub unsteady: usize,
    /// Each run's bottleneck class, as named.
    pub bottlenecks: Vec<String>,
}

impl CountMedian {
    /// The bottleneck class most of the runs had (the first named, on a tie).
    pub fn usual_bottleneck(&self) -> Option<&str> {
        let count = |b: &String| self.bottlenecks.iter().filter(|c| *c == b).count();
        let most = self.bottlenecks.iter().map(count).max()?;
        self.bottlenecks
            .iter()
            .find(|b| count(b) == most)
            .map(String::as_str)
    }
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
            let rates: Vec<f64> = runs.iter().map(|r| r.deliveries_per_sec).collect();
            Some(CountMedian {
                subscribers,
                runs: runs.len(),
                deliveries_per_sec: Spread::of(&rates)?,
                publishes_per_sec: median(runs.iter().map(|r| r.publishes_per_sec))?,
                unsteady: runs.iter().filter(|r| !r.steady).count(),
                bottlenecks: runs.iter().map(|r| r.bottleneck.clone()).collect(),
            })
        })
        .collect()
}

/// A row made up for tests: `deliveries` in the run at `deliveries_per_sec`.
#[cfg(test)]
pub(crate) fn example_row(
    subscribers: usize,
    run: usize,
    deliveries: u64,
    deliveries_per_sec: f64,
) -> RunRow {
    RunRow {
        subscribers,
        run,
        deliveries,
        elapsed_s: deliveries as f64 / deliveries_per_sec,
        deliveries_per_sec,
        publishes_per_sec: deliveries_per_sec / subscribers as f64,
        cv: 0.01,
        trend: 0.0,
        steady: true,
        bottleneck: "window-bound".into(),
        broker_cpu_pct: 80.0,
        loadgen_cpu_pct: 50.0,
        loadgen_us_per_delivery: 0.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bottleneck::{classify, Pacing, Usage};

    fn row(subscribers: usize, run: usize, deliveries_per_sec: f64) -> RunRow {
        example_row(
            subscribers,
            run,
            1_000 * subscribers as u64,
            deliveries_per_sec,
        )
    }

    #[test]
    fn medians_and_spreads_per_count_in_ascending_order() {
        let mut rows = vec![
            row(10, 1, 300.0),
            row(10, 2, 100.0),
            row(10, 3, 200.0),
            row(1, 1, 50.0),
            row(1, 2, 40.0),
        ];
        rows[1].steady = false;
        let m = medians(&rows);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].subscribers, m[0].runs), (1, 2));
        // The upper middle of an even count.
        assert_eq!(m[0].deliveries_per_sec.median, 50.0);
        assert_eq!((m[1].subscribers, m[1].runs), (10, 3));
        let s = m[1].deliveries_per_sec;
        assert_eq!((s.median, s.min, s.max), (200.0, 100.0, 300.0));
        assert_eq!(m[1].publishes_per_sec, 20.0);
        assert_eq!(m[1].unsteady, 1);
        assert!(medians(&[]).is_empty());
    }

    #[test]
    fn a_row_per_run() {
        let spec = Spec {
            publishers: 2,
            subscribers: 10,
            channels: 1,
            size: 64,
            window: 5_000,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
        };
        let cpu = |total: f64| Usage {
            total_pct: total,
            busiest_thread_pct: total,
            busiest_thread: "t".into(),
            threads: 1,
            available_cores: 2.0,
        };
        let r = Run {
            deliveries: 10_000,
            elapsed: Duration::from_millis(3_000),
            per_second: vec![3_333.0; 3],
            steadiness: Steadiness::of(&[3_333.0; 3]),
            bottleneck: classify(&cpu(60.0), &cpu(30.0), 2.0, Pacing::Window),
        };
        let row = RunRow::new(&spec, 2, &r);
        assert_eq!((row.subscribers, row.run), (10, 2));
        assert_eq!(row.deliveries, 10_000);
        assert_eq!(row.elapsed_s, 3.0);
        assert_eq!(row.deliveries_per_sec, 3333.3);
        assert_eq!(row.publishes_per_sec, 333.3);
        assert!(row.steady);
        assert_eq!(row.bottleneck, "window-bound");
        // 30% of a core for 3 s is 0.9 s of CPU, over 10,000 deliveries: 90 µs each.
        assert_eq!(row.loadgen_us_per_delivery, 90.0);
    }
}
