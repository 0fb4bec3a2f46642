//! What a burst fan-out is and what one run of it measured: the shape of a burst, its result,
//! and the rows and medians a sweep over subscriber counts reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::median;

/// The shape of one burst: every subscriber subscribes to all `channels`; publisher p
/// publishes `publishes` messages on channel p mod channels, so every subscriber receives
/// publishers × publishes messages.
#[derive(Debug, Clone)]
pub struct Spec {
    pub publishers: usize,
    pub subscribers: usize,
    pub channels: usize,
    /// Messages per publisher.
    pub publishes: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Most messages all publishers together may be ahead of the slowest subscriber.
    pub window: u64,
}

impl Spec {
    /// Messages each subscriber receives.
    pub fn per_subscriber(&self) -> u64 {
        self.publishers as u64 * self.publishes
    }
}

/// One run's result.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub deliveries: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

/// Messages each publisher sends: `publishes`, or with a `deliveries` target
/// max(1, deliveries / (publishers × subscribers)), since every message reaches every
/// subscriber.
pub fn publishes_per_publisher(
    deliveries: Option<u64>,
    publishes: u64,
    publishers: usize,
    subscribers: usize,
) -> u64 {
    match deliveries {
        None => publishes,
        Some(n) => {
            let fan = (publishers as u64)
                .saturating_mul(subscribers as u64)
                .max(1);
            (n / fan).max(1)
        }
    }
}

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
        publishes: deliveries / subscribers as u64,
        deliveries,
        elapsed_s: deliveries as f64 / deliveries_per_sec,
        deliveries_per_sec,
        publishes_per_sec: deliveries_per_sec / subscribers as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(subscribers: usize, run: usize, deliveries_per_sec: f64) -> RunRow {
        example_row(
            subscribers,
            run,
            1_000 * subscribers as u64,
            deliveries_per_sec,
        )
    }

    #[test]
    fn publishes_from_a_deliveries_target() {
        assert_eq!(publishes_per_publisher(None, 100_000, 1, 100), 100_000);
        assert_eq!(publishes_per_publisher(Some(20_000), 7, 1, 50), 400);
        assert_eq!(publishes_per_publisher(Some(2_000_000), 7, 1, 10_000), 200);
        assert_eq!(publishes_per_publisher(Some(60_000), 7, 2, 3), 10_000);
        // Rounded down, but never to nothing.
        assert_eq!(publishes_per_publisher(Some(1_000), 7, 1, 300), 3);
        assert_eq!(publishes_per_publisher(Some(10), 7, 2, 100), 1);
    }

    #[test]
    fn medians_per_count_in_ascending_order() {
        let rows = [
            row(10, 1, 300.0),
            row(10, 2, 100.0),
            row(10, 3, 200.0),
            row(1, 1, 50.0),
            row(1, 2, 40.0),
        ];
        let m = medians(&rows);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].subscribers, m[0].runs), (1, 2));
        // The upper middle of an even count, as the single-count output always printed.
        assert_eq!(m[0].deliveries_per_sec, 50.0);
        assert_eq!((m[1].subscribers, m[1].runs), (10, 3));
        assert_eq!(m[1].deliveries_per_sec, 200.0);
        assert_eq!(m[1].publishes_per_sec, 20.0);
        assert_eq!(m[1].deliveries, 10_000);
        assert!(medians(&[]).is_empty());
        assert_eq!(median([]), None);
    }

    #[test]
    fn a_row_per_run() {
        let spec = Spec {
            publishers: 2,
            subscribers: 10,
            channels: 1,
            publishes: 500,
            size: 64,
            window: 5_000,
        };
        let r = Run {
            deliveries: 10_000,
            elapsed: Duration::from_micros(3_000_001),
        };
        let row = RunRow::new(&spec, 2, &r);
        assert_eq!((row.subscribers, row.run), (10, 2));
        assert_eq!((row.publishes, row.deliveries), (1_000, 10_000));
        assert_eq!(row.elapsed_s, 3.000001);
        assert_eq!(row.deliveries_per_sec, 3333.3);
        assert_eq!(row.publishes_per_sec, 333.3);
    }
}
