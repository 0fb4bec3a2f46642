//! `loadgen ramp`: add subscribers step by step, hold traffic at a fixed rate at each step,
//! and stop once the broker no longer keeps up; then say which limit stopped it and why.

use std::time::Duration;

use clap::Args;

use crate::model::{StepResult, Summary};
use crate::rig::plan;
use crate::rig::{step_line, Common, Rig};
use crate::{diagnose, report};

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Stop after this many subscribers.
    #[arg(long, default_value_t = 10_000)]
    pub max_clients: u64,
    /// Subscribers added per step (default: a tenth of --max-clients).
    #[arg(long)]
    pub step: Option<u64>,
    /// How long each step's traffic is held and measured.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Messages per second, in all, published on a fixed schedule.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Channels; subscriber n listens on channel n mod channels.
    #[arg(long, default_value_t = 1000)]
    pub channels: u64,
    #[command(flatten)]
    pub common: Common,
}

/// Runs a ramp, writes its report and prints the verdict.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let summary = execute(&opts).await?;
    println!("{}", report::steps_table_markdown(&summary.steps));
    println!(
        "held {} clients; the ramp stopped because {}: {}",
        summary.clients_held,
        diagnose::describe(summary.binding_limit.kind),
        summary.binding_limit.evidence
    );
    Ok(())
}

/// Runs a ramp and writes its report (the folder is named on stderr); returns the verdict
/// and every step, for callers that compare ramps.
pub async fn execute(opts: &Opts) -> anyhow::Result<Summary> {
    let steps = plan::steps(
        opts.max_clients,
        opts.step.unwrap_or(opts.max_clients.div_ceil(10)),
    );
    let slo_us = opts.common.slo_us();
    let mut rig = Rig::start(&opts.common, opts.channels, opts.max_clients, "ramp").await?;
    let mut results: Vec<StepResult> = Vec::new();
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
        eprintln!("{}", step_line(&result, failed));
        results.push(result);
        if failed.is_some() {
            break;
        }
    }
    let done = rig.finish(&mut results).await?;
    let (clients_held, binding_limit) = diagnose::diagnose(
        &results,
        &done.samples,
        &done.limits,
        slo_us,
        opts.max_clients,
    );
    let summary = Summary {
        clients_held,
        binding_limit,
        limits: done.limits,
        command_line: done.command_line,
        slo_p99_us: slo_us,
        steps: results,
    };
    let out = &done.out;
    report::write_steps_csv(&out.join("steps.csv"), &summary.steps)?;
    report::write_samples_csv(&out.join("samples.csv"), &done.samples)?;
    report::write_summary(out, &summary)?;
    report::plot_all(
        out,
        &summary.steps,
        &done.samples,
        slo_us,
        report::XAxis::Clients,
    )?;
    eprintln!("report written to {}", out.display());
    Ok(summary)
}
