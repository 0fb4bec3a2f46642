//! loadgen: measures a hubbub broker (or Redis, NATS, Mosquitto) under load, and says what
//! limited it.
//!
//! # Layout (each layer depends only on those above it)
//! - [`model`]: the result model: what a run measured, as plain data, and its units.
//! - [`proto`]: the wire protocols loadgen speaks (hubbub, Redis, NATS, MQTT) and socket setup.
//! - [`os`]: what loadgen reads from the operating system: limits, CPU and memory, /proc.
//! - [`diagnose`]: the verdict of a run, a pure function of the model.
//! - [`report`]: CSV, JSON, markdown and PNG, from the model only.
//! - [`rig`]: orchestration: the broker under test, worker processes and their messages,
//!   publishers, sampling; the two moves every measurement is made of (connect, hold).
//! - [`scenario`]: one module per command (ramp, throughput, latency, fanout, memory,
//!   compare, soak), each a walk over the rig; and `agent`, which serves the rig's workers to
//!   a coordinator on another host.

pub mod diagnose;
pub mod model;
pub mod os;
pub mod proto;
pub mod report;
pub mod rig;
pub mod scenario;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub use crate::model::Outcome;
use crate::rig::progress::{say, Out};
use crate::rig::worker;
use crate::scenario::{agent, compare, fanout, latency, memory, ramp, soak, throughput};

/// What the exit status means, for `--help`.
const EXIT_STATUS: &str = "Exit status: 0 the run finished and met its objective; 1 an error \
(the message says which); 2 a flag was refused; 3 the objective was not met (a ramp stopped \
at a limit below --max-clients, late or lost deliveries, a failed --check, a soak check not \
met); 4 the broker under test exited during the run; 130 interrupted by Ctrl-C or SIGTERM (the \
report holds what was measured, marked as interrupted, and every process loadgen started is \
stopped).";

/// Load generator for the hubbub broker (and Redis, NATS, Mosquitto): ramps clients until
/// the broker no longer keeps up, and says which limit stopped it and why.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, after_help = EXIT_STATUS)]
pub struct Opts {
    /// Print the run's summary as JSON on stdout (the tables and the progress go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ramp subscribers step by step until the broker no longer keeps up, and say why.
    #[command(after_help = EXIT_STATUS)]
    Ramp(ramp::Opts),
    /// Find the highest message rate the broker sustains for a fixed set of clients.
    #[command(after_help = EXIT_STATUS)]
    Throughput(throughput::Opts),
    /// Delivery latency percentiles at one fixed rate.
    #[command(after_help = EXIT_STATUS)]
    Latency(latency::Opts),
    /// Publish a burst to many subscribers of one channel and report deliveries per second.
    Fanout(fanout::Opts),
    /// Measure the broker's memory per idle subscribed connection.
    Memory(memory::Opts),
    /// Run scenarios against hubbub, Redis, NATS and Mosquitto side by side, with ratios.
    #[command(after_help = EXIT_STATUS)]
    Compare(compare::Opts),
    /// Hold many clients for a long time beside clients that churn, burst, stall and send
    /// garbage; check no loss, whole bursts, flat broker memory and latency.
    #[command(after_help = EXIT_STATUS)]
    Soak(soak::Opts),
    /// Serve worker processes to a coordinator on another host (its `--agents`): load from
    /// many machines, in one report.
    Agent(agent::Opts),
    /// Run the hubbub broker in this process (how loadgen starts its embedded broker).
    #[command(hide = true)]
    Broker(hubbub::tools::broker::Opts),
    /// Hold subscribers for a coordinating loadgen (driven through stdin and stdout).
    #[command(hide = true)]
    Worker {
        /// Open-files soft limit for this worker.
        #[arg(long)]
        max_files: Option<u64>,
    },
}

/// Runs one loadgen command to completion; the outcome says what the exit status is.
pub fn run(opts: Opts) -> anyhow::Result<Outcome> {
    let opts = match opts.command {
        Command::Worker { max_files } => return worker::run(max_files).map(|()| Outcome::Passed),
        // The embedded broker builds its own runtime, as the `broker` program does.
        Command::Broker(o) => {
            let runtime = hubbub::tools::broker::runtime(o.threads)?;
            return runtime
                .block_on(hubbub::tools::broker::run(o))
                .map(|()| Outcome::Passed);
        }
        _ => opts,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = Out { json: opts.json };
    runtime.block_on(async {
        let interrupt = interrupt_on_signal();
        match opts.command {
            Command::Fanout(o) => {
                fanout::run(o, &interrupt, out)
                    .await
                    .map(|()| match interrupt.is_cancelled() {
                        true => Outcome::Interrupted,
                        false => Outcome::Passed,
                    })
            }
            Command::Ramp(o) => ramp::run(o, &interrupt, out).await,
            Command::Throughput(o) => throughput::run(o, &interrupt, out).await,
            Command::Latency(o) => latency::run(o, &interrupt, out).await,
            Command::Memory(o) => memory::run(o, &interrupt, out).await,
            Command::Compare(o) => compare::run(o, &interrupt, out).await,
            Command::Soak(o) => soak::run(o, &interrupt, out).await,
            Command::Agent(o) => agent::run(o, &interrupt).await.map(|()| Outcome::Passed),
            Command::Broker(_) | Command::Worker { .. } => unreachable!("handled above"),
        }
    })
}

/// A token cancelled on the first Ctrl-C or SIGTERM: the run stops at the next point it can,
/// stops every process it started and writes what it measured. A second signal exits at once
/// (the processes loadgen started then go too: workers when their stdin closes, the broker by
/// its parent-death signal).
fn interrupt_on_signal() -> CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        say("interrupted: stopping, and writing the report of what was measured (again to quit at once)");
        cancel.cancel();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(i32::from(Outcome::Interrupted.exit_status()));
    });
    token
}
