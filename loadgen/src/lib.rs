//! loadgen: measures a hubbub broker (or any broker speaking its protocol) under load.
//!
//! # Layout
//! - [`embedded`]: starts the project's own broker as a child process when no `--target` is
//!   given, so a measurement needs nothing else running.
//! - [`fanout`]: the burst fan-out measurement (P publishes to S subscribers, as fast as
//!   the broker delivers them).
//! - [`compare`]: the same scenarios against hubbub and its peers, with ratios.
//! - [`wire`]: lean protocol I/O for simulated clients.

pub mod compare;
pub mod control;
pub mod diagnose;
pub mod embedded;
pub mod fanout;
pub mod latency;
pub mod latency_run;
pub mod listener;
pub mod memory;
pub mod model;
pub mod plan;
pub mod progress;
pub mod proto;
pub mod publish;
pub mod ramp;
pub mod report;
pub mod rig;
pub mod sample;
pub mod stalled;
pub mod stats_probe;
pub mod throughput;
pub mod wire;
pub mod worker;
pub mod workers;

use clap::{Parser, Subcommand};

/// Load generator for the hubbub broker.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Opts {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ramp subscribers step by step until the broker no longer keeps up, and say why.
    Ramp(ramp::Opts),
    /// Find the highest message rate the broker sustains for a fixed set of clients.
    Throughput(throughput::Opts),
    /// Delivery latency percentiles at one fixed rate.
    Latency(latency_run::Opts),
    /// Publish a burst to many subscribers of one channel and report deliveries per second.
    Fanout(fanout::Opts),
    /// Measure the broker's memory per idle subscribed connection.
    Memory(memory::Opts),
    /// Run scenarios against hubbub, Redis, NATS and Mosquitto side by side, with ratios.
    Compare(compare::Opts),
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

/// Runs one loadgen command to completion.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    let opts = match opts.command {
        Command::Worker { max_files } => return worker::run(max_files),
        // The embedded broker builds its own runtime, as the `broker` program does.
        Command::Broker(o) => {
            return hubbub::tools::broker::runtime(o.threads)?
                .block_on(hubbub::tools::broker::run(o))
        }
        _ => opts,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match opts.command {
        Command::Fanout(o) => runtime.block_on(fanout::run(o)),
        Command::Ramp(o) => runtime.block_on(ramp::run(o)),
        Command::Throughput(o) => runtime.block_on(throughput::run(o)),
        Command::Latency(o) => runtime.block_on(latency_run::run(o)),
        Command::Memory(o) => runtime.block_on(memory::run(o)),
        Command::Compare(o) => runtime.block_on(compare::run(o)),
        Command::Broker(_) | Command::Worker { .. } => unreachable!("handled above"),
    }
}
