//! One function per kind of scenario: each measures every broker (repeated runs interleaved
//! where the scenario repeats) and adds what it measured to the [`Collected`] results.
//!
//! Each runs the same code a user reaches through its own command, with that command's
//! options built as values: the command's defaults ([`defaults`]), then the fields this
//! scenario sets, by name, so that renaming an option breaks here at compile time.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::setup::{Collected, Opts, Running, Scenario};
use crate::model::compare::Measurement;
use crate::model::fanout::Spec;
use crate::model::units::grouped;
use crate::report::plots::compare::Ramp;
use crate::rig::options::{defaults, Common};
use crate::scenario::{fanout, latency, memory, ramp};

/// What every scenario is measured with: the comparison's options, the brokers, where the
/// detailed reports go, and the token that interrupts the run.
pub(super) struct At<'a> {
    pub opts: &'a Opts,
    pub brokers: &'a [Running],
    pub out: &'a Path,
    pub interrupt: &'a CancellationToken,
}

/// The options that point a rig-based command at `b`, writing its report into `out`.
fn aimed_at(b: &Running, out: &Path) -> Common {
    Common {
        target: vec![b.addr],
        proto: b.broker.proto(),
        broker_pid: vec![b.pid],
        out: Some(out.to_path_buf()),
        ..Common::default()
    }
}

fn measurement(
    scenario: Scenario,
    b: &Running,
    metric: &str,
    unit: &str,
    higher: bool,
) -> Measurement {
    Measurement {
        scenario: scenario.name().into(),
        broker: b.broker.name().into(),
        metric: metric.into(),
        unit: unit.into(),
        higher_is_better: higher,
        runs: Vec::new(),
        notes: Vec::new(),
    }
}

pub(super) async fn fanout(at: &At<'_>, scenario: Scenario, got: &mut Collected) {
    let (publishers, subscribers, channels, size) =
        scenario.fanout_shape().expect("a fan-out scenario");
    let per_publisher = (at.opts.deliveries / (publishers * subscribers) as u64).max(1);
    let spec = Spec {
        publishers,
        subscribers,
        channels,
        publishes: per_publisher,
        size,
        window: 5_000,
    };
    let mut rows: Vec<Measurement> = at
        .brokers
        .iter()
        .map(|b| measurement(scenario, b, "deliveries_per_sec", "/s", true))
        .collect();
    for rep in 0..at.opts.repeat {
        for (b, row) in at.brokers.iter().zip(&mut rows) {
            if at.interrupt.is_cancelled() {
                break;
            }
            let tag = format!("{}-{}-{rep}", scenario.name(), std::process::id());
            match fanout::measure(b.addr, b.broker.proto(), &spec, &tag).await {
                Ok(r) => {
                    eprintln!(
                        "{} run {}: {:.0} deliveries/s",
                        b.broker.name(),
                        rep + 1,
                        r.per_second()
                    );
                    row.runs.push(r.per_second());
                }
                Err(e) => {
                    eprintln!("{} run {}: failed: {e:#}", b.broker.name(), rep + 1);
                    row.notes.push(format!("run {} failed: {e:#}", rep + 1));
                }
            }
        }
    }
    got.measurements.extend(rows);
}

/// One broker's latency measurements: a row per percentile.
struct LatencyRows {
    p50: Measurement,
    p99: Measurement,
    p999: Measurement,
    /// Each run's whole histogram, for the chart.
    histograms: Vec<Histogram<u64>>,
}

pub(super) async fn latency(at: &At<'_>, got: &mut Collected) {
    let mut rows: Vec<LatencyRows> = at
        .brokers
        .iter()
        .map(|b| LatencyRows {
            p50: measurement(Scenario::Latency, b, "p50_ms", "ms", false),
            p99: measurement(Scenario::Latency, b, "p99_ms", "ms", false),
            p999: measurement(Scenario::Latency, b, "p999_ms", "ms", false),
            histograms: Vec::new(),
        })
        .collect();
    for rep in 0..at.opts.repeat {
        for (b, row) in at.brokers.iter().zip(&mut rows) {
            if at.interrupt.is_cancelled() {
                break;
            }
            let dir =
                at.out
                    .join("detail")
                    .join(format!("latency-{}-{}", b.broker.name(), rep + 1));
            let run_opts = latency::Opts {
                rate: at.opts.latency_rate,
                duration: at.opts.latency_duration,
                common: aimed_at(b, &dir),
                ..defaults::<latency::Opts>()
            };
            match latency::execute(&run_opts, at.interrupt).await {
                Ok((summary, _)) if summary.interrupted => {}
                Ok((summary, histogram)) => {
                    let l = summary.latency;
                    row.p50.runs.push(l.p50_us as f64 / 1000.0);
                    row.p99.runs.push(l.p99_us as f64 / 1000.0);
                    row.p999.runs.push(l.p999_us as f64 / 1000.0);
                    if let Some(why) = summary.stopped_because {
                        row.p99.notes.push(format!("run {}: {why}", rep + 1));
                    }
                    got.slo_p99_us = summary.slo_p99_us;
                    row.histograms.push(histogram);
                }
                Err(e) => row.p99.notes.push(format!("run {} failed: {e:#}", rep + 1)),
            }
        }
    }
    for (b, mut row) in at.brokers.iter().zip(rows) {
        // The run with the median p99 stands for its broker in the chart.
        let hs = &mut row.histograms;
        hs.sort_by_key(|h| h.value_at_quantile(0.99));
        if !hs.is_empty() {
            let median = hs.swap_remove(hs.len() / 2);
            got.spectra.push((b.broker.name().into(), median));
        }
        got.measurements.extend([row.p50, row.p99, row.p999]);
    }
}

pub(super) async fn memory(at: &At<'_>, got: &mut Collected) {
    for b in at.brokers {
        if at.interrupt.is_cancelled() {
            break;
        }
        let mut rss = measurement(Scenario::Memory, b, "rss_per_conn_bytes", "B", false);
        let mut slab = measurement(
            Scenario::Memory,
            b,
            "kernel_slab_per_conn_bytes",
            "B",
            false,
        );
        slab.notes
            .push("machine-wide, both ends of each connection; other programs move it too".into());
        let sizes = (at.opts.memory_clients, 100, at.opts.repeat);
        let result =
            memory::measure_broker(b.addr, b.pid, b.broker.proto(), sizes, at.interrupt).await;
        match result {
            Ok(summary) => {
                eprintln!(
                    "{}: {:.0} B per connection (median of {})",
                    b.broker.name(),
                    summary.median_rss_per_conn,
                    summary.runs.len()
                );
                rss.runs = summary.runs.iter().map(|r| r.rss_per_conn).collect();
                slab.runs = summary
                    .runs
                    .iter()
                    .filter_map(|r| r.kernel_slab_per_conn)
                    .collect();
            }
            Err(e) => {
                eprintln!("{}: failed: {e:#}", b.broker.name());
                rss.notes.push(format!("failed: {e:#}"));
            }
        }
        got.measurements.extend([rss, slab]);
    }
}

pub(super) async fn ramp(at: &At<'_>, got: &mut Collected) {
    for b in at.brokers {
        if at.interrupt.is_cancelled() {
            break;
        }
        let dir = at
            .out
            .join("detail")
            .join(format!("ramp-{}", b.broker.name()));
        let ramp_opts = ramp::Opts {
            max_clients: at.opts.ramp_max,
            step: Some(at.opts.ramp_max / 5),
            hold: Duration::from_secs(3),
            common: aimed_at(b, &dir),
            ..defaults::<ramp::Opts>()
        };
        let mut held = measurement(Scenario::Ramp, b, "clients_held", "clients", true);
        match ramp::execute(&ramp_opts, at.interrupt).await {
            Ok(summary) if summary.interrupted => {}
            Ok(summary) => {
                held.runs.push(summary.clients_held as f64);
                held.notes.push(format!(
                    "stopped because {}: {}",
                    summary.binding_limit.kind.describe(),
                    summary.binding_limit.evidence
                ));
                got.slo_p99_us = summary.slo_p99_us;
                got.ramps.push(Ramp {
                    broker: b.broker.name().into(),
                    stopped: format!(
                        "held {}; {}",
                        grouped(summary.clients_held),
                        summary.binding_limit.kind.describe()
                    ),
                    steps: summary.steps,
                });
            }
            Err(e) => held.notes.push(format!("failed: {e:#}")),
        }
        got.measurements.push(held);
    }
}
