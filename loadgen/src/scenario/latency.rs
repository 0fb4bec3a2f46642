//! `loadgen latency`: delivery latency percentiles at one fixed rate, with the whole
//! distribution drawn by percentile.
//!
//! With `--stalled N` it also measures what slow consumers cost the others: N more
//! subscribers, on every channel, never read, and the healthy subscribers' numbers show
//! whether the broker kept them apart (cutting the stalled ones off at `--max-pending`)
//! or let them slow everyone down.

use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;

use crate::model::{LatencySummary, RunSummary};
use crate::rig::{step_line, Audience, Common, Rig};
use crate::{diagnose, report};

#[derive(Debug, Clone, Args)]
pub struct Opts {
    #[command(flatten)]
    pub audience: Audience,
    /// Messages per second, in all, published on a fixed schedule.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long the rate is held and measured.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Extra subscribers, opened by this process on every channel, that never read their
    /// sockets (slow consumers). They are counted apart: the healthy subscribers' numbers
    /// mean what they mean without them.
    #[arg(long, default_value_t = 0)]
    pub stalled: u64,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    execute(&opts).await.map(drop)
}

/// Measures, writes the report, and returns the summary with the whole latency histogram
/// (in microseconds), for callers that compare runs.
pub async fn execute(opts: &Opts) -> anyhow::Result<(RunSummary, Histogram<u64>)> {
    let slo_us = opts.common.slo_us();
    let (mut rig, mut step) = Rig::start_fixed(&opts.common, &opts.audience, "latency", 1).await?;
    let stalled = rig.open_stalled(opts.stalled).await?;
    let histogram = rig.hold(&mut step, opts.rate, opts.duration).await?;
    // Before `finish`, which stops an embedded broker and so would close every one of them.
    let stalled_disconnected = stalled.count_closed().await;
    let failed = diagnose::step_failed(&step, slo_us);
    eprintln!("{}", step_line(&step, failed));
    let mut steps = vec![step];
    let done = rig.finish(&mut steps).await?;
    let step = &steps[0];
    let summary = RunSummary {
        kind: "latency".into(),
        subscribers: opts.audience.subscribers,
        publishers: opts.common.publishers,
        channels: opts.audience.channels,
        size: opts.common.size,
        rate: opts.rate,
        deliveries_per_sec: step.delivered as f64 / step.hold_secs,
        latency: step.latency,
        stopped_because: failed.map(str::to_string),
        slo_p99_us: slo_us,
        limits: done.limits,
        command_line: done.command_line,
        steps,
    };
    let title = format!(
        "Delivery latency at {:.0} msg/s, {} → {} subscribers",
        opts.rate, opts.common.publishers, opts.audience.subscribers
    );
    report::plot_spectrum(&done.out.join("latency.png"), &histogram, slo_us, &title)?;
    let full = LatencySummary {
        run: summary,
        stalled: opts.stalled,
        stalled_disconnected,
    };
    report::run::write_latency_run(&done.out, &full, &done.samples)?;
    if full.stalled > 0 {
        println!("{}", report::run::stalled_line(&full));
    }
    Ok((full.run, histogram))
}
