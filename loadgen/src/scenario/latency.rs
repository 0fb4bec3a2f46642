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
use tokio_util::sync::CancellationToken;

use crate::model::histogram::new_histogram;
use crate::model::units::grouped;
use crate::model::{LatencySummary, Outcome, RunSummary, StepResult};
use crate::report::summary::step_line;
use crate::rig::options::{positive_duration, positive_rate};
use crate::rig::progress::{say, Out};
use crate::rig::{Audience, Common, Interrupted, Rig};
use crate::{diagnose, report};

#[derive(Debug, Clone, Args)]
pub struct Opts {
    #[command(flatten)]
    pub audience: Audience,
    /// Messages per second, in all, published on a fixed schedule.
    #[arg(long, default_value_t = 1000.0, value_parser = positive_rate)]
    pub rate: f64,
    /// How long the rate is held and measured.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
    /// Extra subscribers, opened by this process on every channel, that never read their
    /// sockets (slow consumers). They are counted apart: the healthy subscribers' numbers
    /// mean what they mean without them.
    #[arg(long, default_value_t = 0)]
    pub stalled: u64,
    #[command(flatten)]
    pub common: Common,
}

pub async fn run(opts: Opts, interrupt: &CancellationToken, out: Out) -> anyhow::Result<Outcome> {
    let (full, _) = execute(&opts, interrupt).await?;
    let summary = &full.run;
    out.line(&report::steps_table_markdown(&summary.steps));
    out.line(&report::headline(summary));
    if full.stalled > 0 {
        out.line(&report::run::stalled_line(&full));
    }
    out.summary(&full)?;
    Ok(outcome(summary))
}

/// How a fixed-size run ended, for the exit status.
pub fn outcome(s: &RunSummary) -> Outcome {
    if s.interrupted {
        Outcome::Interrupted
    } else if s.steps.iter().any(|st| !st.broker_alive) {
        Outcome::BrokerGone
    } else if s.stopped_because.is_some() {
        Outcome::ObjectiveMissed
    } else {
        Outcome::Passed
    }
}

/// Measures, writes the report, and returns the summary with the whole latency histogram
/// (in microseconds), for callers that compare runs.
pub async fn execute(
    opts: &Opts,
    interrupt: &CancellationToken,
) -> anyhow::Result<(LatencySummary, Histogram<u64>)> {
    let slo_us = opts.common.slo_us();
    let (mut rig, mut step) =
        Rig::start_fixed(&opts.common, &opts.audience, "latency", 1, interrupt).await?;
    let measured = measure(&mut rig, &mut step, opts).await;
    let mut steps = vec![step];
    let done = rig.finish(&mut steps).await?;
    let (histogram, stalled_disconnected, interrupted) = match measured {
        Ok((h, closed)) => (h, closed, false),
        Err(e) if e.is::<Interrupted>() => {
            steps.clear();
            (new_histogram(), 0, true)
        }
        Err(e) => return Err(e),
    };
    let failed = steps
        .first()
        .and_then(|st| diagnose::step_failed(st, slo_us));
    let step = steps.first().cloned().unwrap_or_default();
    let summary = RunSummary {
        kind: "latency".into(),
        subscribers: opts.audience.subscribers,
        publishers: opts.common.publishers,
        channels: opts.audience.channels,
        size: opts.common.size,
        rate: opts.rate,
        deliveries_per_sec: step.delivered as f64 / step.hold_secs.max(1e-9),
        latency: step.latency,
        stopped_because: failed.map(str::to_string),
        interrupted,
        slo_p99_us: slo_us,
        limits: done.limits.clone(),
        command_line: done.command_line.clone(),
        provenance: Some(done.provenance.clone()),
        steps,
    };
    let title = format!(
        "Delivery latency at {} msg/s, by percentile",
        grouped(opts.rate.round() as u64)
    );
    let setup = format!(
        "{}; held {}",
        done.setup,
        humantime::format_duration(opts.duration)
    );
    if !interrupted {
        let path = done.out.join("latency.png");
        report::plot_spectrum(&path, &histogram, slo_us, &title, &setup)?;
    }
    let full = LatencySummary {
        run: summary,
        stalled: opts.stalled,
        stalled_disconnected,
    };
    report::run::write_latency_run(&done.out, &full, &done.samples)?;
    done.write_interval_log()?;
    say(&format!("report written to {}", done.out.display()));
    Ok((full, histogram))
}

/// The stalled subscribers, then the rate held; returns the latency histogram and how many
/// stalled subscribers the broker closed.
async fn measure(
    rig: &mut Rig,
    step: &mut StepResult,
    opts: &Opts,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let stalled = rig.open_stalled(opts.stalled).await?;
    let held = rig.hold(step, opts.rate, opts.duration).await?;
    // Before `finish`, which stops an embedded broker and so would close every one of them.
    let stalled_disconnected = stalled.count_closed().await;
    say(&step_line(
        step,
        diagnose::step_failed(step, opts.common.slo_us()),
    ));
    Ok((held.histogram, stalled_disconnected))
}
