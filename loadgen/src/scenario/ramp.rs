//! `loadgen ramp`: add subscribers step by step, hold traffic at a fixed rate at each step,
//! and stop once the broker no longer keeps up; then say which limit stopped it and why.

use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::model::units::{grouped, ms};
use crate::model::{BindingLimit, LimitKind, Outcome, StepResult, Summary};
use crate::report::plots::Verdict;
use crate::report::summary::step_line;
use crate::rig::options::{positive_duration, positive_rate};
use crate::rig::pool::WorkerLost;
use crate::rig::progress::{say, Out};
use crate::rig::{plan, Common, Interrupted, Rig};
use crate::{diagnose, report};

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Stop after this many subscribers.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_clients: u64,
    /// Subscribers added per step (default: a tenth of --max-clients).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub step: Option<u64>,
    /// How long each step's traffic is held and measured.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub hold: Duration,
    /// Messages per second, in all, published on a fixed schedule.
    #[arg(long, default_value_t = 2000.0, value_parser = positive_rate)]
    pub rate: f64,
    /// Channels; subscriber n listens on channel n mod channels, and messages go to every
    /// channel in turn, so each reaches about clients ÷ channels subscribers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub channels: u64,
    #[command(flatten)]
    pub common: Common,
}

/// Runs a ramp, writes its report and prints the verdict.
pub async fn run(opts: Opts, interrupt: &CancellationToken, out: Out) -> anyhow::Result<Outcome> {
    let summary = execute(&opts, interrupt).await?;
    out.line(&report::steps_table_markdown(&summary.steps));
    out.line(&report::summary::verdict_text(&summary));
    out.summary(&summary)?;
    Ok(Outcome::of(summary.binding_limit.kind))
}

/// Runs a ramp and writes its report (the folder is named on stderr); returns the verdict
/// and every step, for callers that compare ramps. An interrupted ramp still stops every
/// process it started and writes what it measured, marked as interrupted.
pub async fn execute(opts: &Opts, interrupt: &CancellationToken) -> anyhow::Result<Summary> {
    let step = opts.step.unwrap_or(opts.max_clients.div_ceil(10));
    let steps = plan::steps(opts.max_clients, step);
    let slo_us = opts.common.slo_us();
    say(&format!(
        "ramp: subscribers {} at a time up to {}, each on one of {} channels (a message reaches \
         about clients ÷ {} of them); {} msg/s for {} at each step; objective: p99 within {}",
        grouped(step),
        grouped(opts.max_clients),
        grouped(opts.channels),
        grouped(opts.channels),
        grouped(opts.rate.round() as u64),
        humantime::format_duration(opts.hold),
        ms(slo_us),
    ));
    let mut rig = Rig::start(
        &opts.common,
        opts.channels,
        opts.max_clients,
        "ramp",
        interrupt,
    )
    .await?;
    let mut results: Vec<StepResult> = Vec::new();
    let walked = walk(&mut rig, opts, &steps, &mut results).await;
    let mut done = rig.finish(&mut results).await?;
    let (interrupted, lost) = match walked {
        Ok(()) => (false, None),
        Err(e) if e.is::<Interrupted>() => (true, None),
        Err(e) => match e.downcast::<WorkerLost>() {
            Ok(lost) => (false, Some(lost)),
            Err(e) => return Err(e),
        },
    };
    let (clients_held, mut binding_limit) = diagnose::diagnose(
        &results,
        &done.samples,
        &done.limits,
        slo_us,
        opts.max_clients,
    );
    if interrupted {
        binding_limit = BindingLimit {
            kind: LimitKind::Interrupted,
            evidence: format!(
                "Interrupted during step {} of {}; the {} step(s) before it were measured in full.",
                results.len() + 1,
                steps.len(),
                results.len()
            ),
            step: None,
        };
    }
    if let Some(lost) = &lost {
        if let Some(agent) = lost
            .host
            .checked_sub(1)
            .and_then(|a| done.agents.get_mut(a))
        {
            agent.lost = Some(format!("during step {}: {}", results.len() + 1, lost.why));
        }
        binding_limit = BindingLimit {
            kind: LimitKind::WorkerLost,
            evidence: format!(
                "During step {} of {}, {lost}; the step was not counted (its subscribers' \
                 deliveries cannot be told apart from its losses). The {} step(s) before it \
                 were measured in full.",
                results.len() + 1,
                steps.len(),
                results.len()
            ),
            step: Some(results.len() + 1),
        };
    }
    let summary = Summary {
        clients_held,
        interrupted,
        binding_limit,
        limits: done.limits.clone(),
        command_line: done.command_line.clone(),
        provenance: Some(done.provenance.clone()),
        slo_p99_us: slo_us,
        steps: results,
        agents: done.agents.clone(),
    };
    let out = &done.out;
    let setup = format!(
        "{}; {} msg/s for {} per step, steps of {}",
        done.setup,
        grouped(opts.rate.round() as u64),
        humantime::format_duration(opts.hold),
        grouped(step),
    );
    report::write_steps_csv(&out.join("steps.csv"), &summary.steps)?;
    report::write_samples_csv(&out.join("samples.csv"), &done.samples)?;
    if !done.agents.is_empty() {
        report::write_hosts_csv(&out.join("hosts.csv"), &done.hosts)?;
    }
    report::write_summary(out, &summary)?;
    done.write_interval_log()?;
    let verdict = Verdict::of(&summary);
    report::plot_all(
        out,
        &summary.steps,
        &done.samples,
        &report::plots::Context {
            slo_p99_us: slo_us,
            x: report::XAxis::Clients,
            setup: &setup,
            cores: summary.limits.cores,
            verdict: Some(&verdict),
        },
    )?;
    say(&format!("report written to {}", out.display()));
    Ok(summary)
}

/// The steps, each connected then held, until one fails or all are done.
async fn walk(
    rig: &mut Rig,
    opts: &Opts,
    steps: &[u64],
    results: &mut Vec<StepResult>,
) -> anyhow::Result<()> {
    let slo_us = opts.common.slo_us();
    for (i, &target) in steps.iter().enumerate() {
        // Steps count from 1, as a person reads them.
        let mut result = StepResult {
            step: i + 1,
            ..Default::default()
        };
        rig.at_step(i + 1, steps.len());
        rig.connect(&mut result, target).await?;
        rig.hold(&mut result, opts.rate, opts.hold).await?;
        let failed = diagnose::step_failed(&result, slo_us);
        say(&step_line(&result, failed));
        results.push(result);
        if failed.is_some() {
            break;
        }
    }
    Ok(())
}
