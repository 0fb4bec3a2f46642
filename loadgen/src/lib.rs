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
//!   compare), each a walk over the rig.

pub mod diagnose;
pub mod model;
pub mod os;
pub mod proto;
pub mod report;
pub mod rig;
pub mod scenario;

use clap::{Parser, Subcommand};

use crate::rig::worker;
use crate::scenario::{compare, fanout, latency, memory, ramp, throughput};

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
    Latency(latency::Opts),
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
        Command::Latency(o) => runtime.block_on(latency::run(o)),
        Command::Memory(o) => runtime.block_on(memory::run(o)),
        Command::Compare(o) => runtime.block_on(compare::run(o)),
        Command::Broker(_) | Command::Worker { .. } => unreachable!("handled above"),
    }
}
