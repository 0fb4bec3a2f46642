//! One function per kind of scenario: each measures every broker (repeated runs interleaved
//! where the scenario repeats) and adds what it measured to the [`Collected`] results.

use std::path::Path;

use clap::{Args, Parser};
use hdrhistogram::Histogram;

use super::results::Measurement;
use super::{Collected, Opts, Running, Scenario};
use crate::scenario::{fanout, latency as latency_run, memory, ramp};

/// Parses `args` as the options of one of loadgen's own commands, so a scenario runs with
/// exactly the defaults a user of that command gets.
fn command_opts<T: Args>(args: &[String]) -> anyhow::Result<T> {
    #[derive(Parser)]
    struct Wrap<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    let argv = std::iter::once("loadgen".to_string()).chain(args.iter().cloned());
    Ok(Wrap::<T>::try_parse_from(argv)?.inner)
}

/// The flags that point a rig-based command at `b`.
fn target_args(b: &Running, out: &Path) -> Vec<String> {
    [
        "--target",
        &b.addr.to_string(),
        "--proto",
        &b.broker.proto().to_string(),
        "--broker-pid",
        &b.pid.to_string(),
        "--out",
        &out.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
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

pub(super) async fn fanout(
    opts: &Opts,
    brokers: &[Running],
    scenario: Scenario,
    got: &mut Collected,
) {
    let (publishers, subscribers, channels, size) =
        scenario.fanout_shape().expect("a fan-out scenario");
    let per_publisher = (opts.deliveries / (publishers * subscribers) as u64).max(1);
    let spec = fanout::Spec {
        publishers,
        subscribers,
        channels,
        publishes: per_publisher,
        size,
        window: 5_000,
    };
    let mut rows: Vec<Measurement> = brokers
        .iter()
        .map(|b| measurement(scenario, b, "deliveries_per_sec", "/s", true))
        .collect();
    for rep in 0..opts.repeat {
        for (b, row) in brokers.iter().zip(&mut rows) {
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

pub(super) async fn latency(
    opts: &Opts,
    brokers: &[Running],
    out: &Path,
    got: &mut Collected,
) -> anyhow::Result<()> {
    let metrics = [("p50_ms", 0), ("p99_ms", 1), ("p999_ms", 2)];
    let mut rows: Vec<Vec<Measurement>> = brokers
        .iter()
        .map(|b| {
            metrics
                .iter()
                .map(|(m, _)| measurement(Scenario::Latency, b, m, "ms", false))
                .collect()
        })
        .collect();
    let mut histograms: Vec<Vec<Histogram<u64>>> = vec![Vec::new(); brokers.len()];
    for rep in 0..opts.repeat {
        for (i, b) in brokers.iter().enumerate() {
            let dir = out
                .join("detail")
                .join(format!("latency-{}-{}", b.broker.name(), rep + 1));
            let mut args = target_args(b, &dir);
            args.extend(
                [
                    "--rate",
                    &opts.latency_rate.to_string(),
                    "--duration",
                    &humantime::format_duration(opts.latency_duration).to_string(),
                ]
                .map(String::from),
            );
            let run_opts: latency_run::Opts = command_opts(&args)?;
            match latency_run::execute(&run_opts).await {
                Ok((summary, histogram)) => {
                    let l = summary.latency;
                    for ((_, k), row) in metrics.iter().zip(&mut rows[i]) {
                        let us = [l.p50_us, l.p99_us, l.p999_us][*k];
                        row.runs.push(us as f64 / 1000.0);
                    }
                    if let Some(why) = summary.stopped_because {
                        rows[i][1].notes.push(format!("run {}: {why}", rep + 1));
                    }
                    got.slo_p99_us = summary.slo_p99_us;
                    histograms[i].push(histogram);
                }
                Err(e) => rows[i][1]
                    .notes
                    .push(format!("run {} failed: {e:#}", rep + 1)),
            }
        }
    }
    for (b, mut hs) in brokers.iter().zip(histograms) {
        // The run with the median p99 stands for its broker in the chart.
        hs.sort_by_key(|h| h.value_at_quantile(0.99));
        if !hs.is_empty() {
            let median = hs.swap_remove(hs.len() / 2);
            got.spectra.push((b.broker.name().into(), median));
        }
    }
    got.measurements.extend(rows.into_iter().flatten());
    Ok(())
}

pub(super) async fn memory(opts: &Opts, brokers: &[Running], got: &mut Collected) {
    for b in brokers {
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
        let result = memory::measure_broker(
            b.addr,
            b.pid,
            b.broker.proto(),
            opts.memory_clients,
            100,
            opts.repeat,
        )
        .await;
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

pub(super) async fn ramp(
    opts: &Opts,
    brokers: &[Running],
    out: &Path,
    got: &mut Collected,
) -> anyhow::Result<()> {
    for b in brokers {
        let dir = out.join("detail").join(format!("ramp-{}", b.broker.name()));
        let mut args = target_args(b, &dir);
        args.extend(
            [
                "--max-clients",
                &opts.ramp_max.to_string(),
                "--step",
                &(opts.ramp_max / 5).to_string(),
                "--hold",
                "3s",
            ]
            .map(String::from),
        );
        let ramp_opts: ramp::Opts = command_opts(&args)?;
        let mut held = measurement(Scenario::Ramp, b, "clients_held", "clients", true);
        match ramp::execute(&ramp_opts).await {
            Ok(summary) => {
                held.runs.push(summary.clients_held as f64);
                held.notes.push(format!(
                    "stopped because {}: {}",
                    crate::diagnose::describe(summary.binding_limit.kind),
                    summary.binding_limit.evidence
                ));
                got.slo_p99_us = summary.slo_p99_us;
                got.ramps.push((b.broker.name().into(), summary.steps));
            }
            Err(e) => held.notes.push(format!("failed: {e:#}")),
        }
        got.measurements.push(held);
    }
    Ok(())
}
