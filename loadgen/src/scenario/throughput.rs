//! `loadgen throughput`: P publishers, S subscribers over C channels; raise the offered rate
//! until deliveries fall behind, then narrow down the highest rate the broker sustains.
//!
//! A rate is sustained when every delivery arrives, the delivery p99 stays within the
//! objective, no subscriber is lost and the broker is still running. The rate grows by
//! `--factor` until one is not sustained, then `--refine` bisections between the last good and
//! the first bad rate sharpen the answer.

use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::model::units::grouped;
use crate::model::{Outcome, RunSummary, StepResult};
use crate::report::plots::{Context, Verdict, XAxis};
use crate::report::summary::step_line;
use crate::rig::options::{positive_duration, positive_rate};
use crate::rig::progress::{say, Out};
use crate::rig::{Audience, Common, Interrupted, Rig};
use crate::{diagnose, report};

#[derive(Debug, Clone, Args)]
pub struct Opts {
    #[command(flatten)]
    pub audience: Audience,
    /// First rate tried, in messages per second.
    #[arg(long, default_value_t = 1000.0, value_parser = positive_rate)]
    pub start_rate: f64,
    /// Each rate is this many times the last, until one falls behind.
    #[arg(long, default_value_t = 2.0, value_parser = factor)]
    pub factor: f64,
    /// Bisections between the last good and the first bad rate.
    #[arg(long, default_value_t = 2)]
    pub refine: usize,
    /// Never offer more than this.
    #[arg(long, default_value_t = 2_000_000.0, value_parser = positive_rate)]
    pub max_rate: f64,
    /// How long each rate is held and measured.
    #[arg(long, default_value = "3s", value_parser = positive_duration)]
    pub hold: Duration,
    #[command(flatten)]
    pub common: Common,
}

/// A growth factor: a number above 1.
fn factor(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 1.0 => Ok(v),
        _ => Err("must be a number above 1 (each rate is this many times the last)".into()),
    }
}

pub async fn run(opts: Opts, interrupt: &CancellationToken, out: Out) -> anyhow::Result<Outcome> {
    let summary = execute(&opts, interrupt).await?;
    out.line(&report::steps_table_markdown(&summary.steps));
    out.line(&report::headline(&summary));
    out.summary(&summary)?;
    if summary.rate == 0.0 && !summary.interrupted {
        // Not even the first rate was sustained: no figure to report.
        return Ok(match summary.steps.iter().any(|s| !s.broker_alive) {
            true => Outcome::BrokerGone,
            false => Outcome::ObjectiveMissed,
        });
    }
    Ok(super::latency::outcome(&RunSummary {
        stopped_because: None,
        ..summary
    }))
}

/// Searches, writes the report, and returns the summary: `rate` is the highest rate
/// sustained (0 when none was), `steps` every stage tried.
pub async fn execute(opts: &Opts, interrupt: &CancellationToken) -> anyhow::Result<RunSummary> {
    let slo_us = opts.common.slo_us();
    let (mut rig, connected) =
        Rig::start_fixed(&opts.common, &opts.audience, "throughput", 0, interrupt).await?;
    let mut stages: Vec<StepResult> = Vec::new();
    let searched = search(&mut rig, &mut stages, &connected, opts).await;
    let done = rig.finish(&mut stages).await?;
    let (good, bad, interrupted) = match searched {
        Ok((good, bad)) => (good, bad, false),
        Err(e) if e.is::<Interrupted>() => {
            let good = stages
                .iter()
                .filter(|s| diagnose::step_failed(s, slo_us).is_none())
                .map(|s| s.offered_rate)
                .fold(None, |best: Option<f64>, r| {
                    Some(best.map_or(r, |b| b.max(r)))
                });
            (good, None, true)
        }
        Err(e) => return Err(e),
    };
    let best = good
        .and_then(|r| stages.iter().find(|s| s.offered_rate == r))
        .cloned();
    let summary = RunSummary {
        kind: "throughput".into(),
        subscribers: opts.audience.subscribers,
        publishers: opts.common.publishers,
        channels: opts.audience.channels,
        size: opts.common.size,
        rate: good.unwrap_or(0.0),
        deliveries_per_sec: best
            .as_ref()
            .map_or(0.0, |s| s.delivered as f64 / s.hold_secs),
        latency: best.map(|s| s.latency).unwrap_or_default(),
        stopped_because: bad.map(|(r, why)| format!("at {r:.0} msg/s: {why}")),
        interrupted,
        slo_p99_us: slo_us,
        limits: done.limits.clone(),
        command_line: done.command_line.clone(),
        provenance: Some(done.provenance.clone()),
        steps: stages,
    };
    let verdict = Verdict {
        failed_at: bad.map(|(r, why)| {
            (
                r,
                format!("fell behind at {} msg/s: {why}", grouped(r as u64)),
            )
        }),
        limit: None,
    };
    let setup = format!(
        "{}; each rate held {}",
        done.setup,
        humantime::format_duration(opts.hold)
    );
    let ctx = Context {
        slo_p99_us: slo_us,
        x: XAxis::OfferedRate,
        setup: &setup,
        cores: summary.limits.cores,
        verdict: Some(&verdict),
    };
    report::write_run(&done.out, &summary, &done.samples, Some(&ctx))?;
    done.write_interval_log()?;
    say(&format!("report written to {}", done.out.display()));
    Ok(summary)
}

/// Raises the rate by `--factor` until one is not sustained, then bisects; returns the
/// highest rate sustained and the first that was not (with why).
async fn search(
    rig: &mut Rig,
    stages: &mut Vec<StepResult>,
    connected: &StepResult,
    opts: &Opts,
) -> anyhow::Result<(Option<f64>, Option<(f64, &'static str)>)> {
    let (mut good, mut bad): (Option<f64>, Option<(f64, &str)>) = (None, None);
    let mut rate = opts.start_rate;
    loop {
        match try_rate(rig, stages, connected, rate, opts).await? {
            Some(why) => {
                bad = Some((rate, why));
                break;
            }
            None => good = Some(rate),
        }
        if rate >= opts.max_rate {
            break;
        }
        rate = (rate * opts.factor).min(opts.max_rate);
    }
    if let (Some(mut lo), Some((mut hi, _))) = (good, bad) {
        for _ in 0..opts.refine {
            let mid = ((lo + hi) / 2.0).round();
            match try_rate(rig, stages, connected, mid, opts).await? {
                Some(why) => {
                    hi = mid;
                    bad = Some((mid, why));
                }
                None => lo = mid,
            }
        }
        good = Some(lo);
    }
    Ok((good, bad))
}

/// Holds `rate` as the next stage; returns why the broker fell behind, if it did. The first
/// stage also carries the connect results.
async fn try_rate(
    rig: &mut Rig,
    stages: &mut Vec<StepResult>,
    connected: &StepResult,
    rate: f64,
    opts: &Opts,
) -> anyhow::Result<Option<&'static str>> {
    let mut stage = match stages.is_empty() {
        true => connected.clone(),
        false => StepResult {
            target_clients: opts.audience.subscribers,
            ..Default::default()
        },
    };
    stage.step = stages.len() + 1;
    rig.at_step(stage.step, 0);
    rig.hold(&mut stage, rate, opts.hold).await?;
    let failed = diagnose::step_failed(&stage, opts.common.slo_us());
    say(&step_line(&stage, failed));
    stages.push(stage);
    Ok(failed)
}
