//! loadgen: measures a hubbub broker (or any broker speaking its protocol) under load.
//!
//! # Layout
//! - [`embedded`]: starts the project's own broker as a child process when no `--target` is
//!   given, so a measurement needs nothing else running.
//! - [`fanout`]: the burst fan-out measurement (P publishes to S subscribers, as fast as
//!   the broker delivers them).
//! - [`wire`]: lean protocol I/O for simulated clients.

pub mod embedded;
pub mod fanout;
pub mod model;
pub mod wire;

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
    /// Publish a burst to many subscribers of one channel and report deliveries per second.
    Fanout(fanout::Opts),
    /// Run the hubbub broker in this process (how loadgen starts its embedded broker).
    #[command(hide = true)]
    Broker(hubbub::tools::broker::Opts),
}

/// Runs one loadgen command to completion.
pub fn run(opts: Opts) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match opts.command {
        Command::Fanout(o) => runtime.block_on(fanout::run(o)),
        Command::Broker(o) => runtime.block_on(hubbub::tools::broker::run(o)),
    }
}
