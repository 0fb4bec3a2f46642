//! `loadgen latency`: delivery latency percentiles at one fixed rate, with the whole
//! distribution drawn by percentile.

use std::time::Duration;

use clap::Args;

use crate::model::RunSummary;
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
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let slo_us = opts.common.slo_us();
    let (mut rig, mut step) = Rig::start_fixed(&opts.common, &opts.audience, "latency", 1).await?;
    let histogram = rig.hold(&mut step, opts.rate, opts.duration).await?;
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
    report::write_run(&done.out, &summary, &done.samples, None)?;
    Ok(())
}
