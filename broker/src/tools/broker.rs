//! The `broker` program.

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};

use crate::config::Config;

/// hubbub's publish/subscribe broker: newline-delimited JSON over TCP.
#[derive(Debug, Parser)]
#[command(name = "broker", version, about)]
pub struct Opts {
    #[command(flatten)]
    pub config: Config,
    /// Runtime worker threads [default: one per core]. On a machine the broker shares with
    /// busy clients, 1 thread measured a lower delivery p99 at a fixed moderate rate (0.38 vs
    /// 0.60 ms) and 2 threads a higher burst fan-out (9.3 M vs 6.8 M deliveries/s): see
    /// reports/README.md, "Threads".
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The runtime the broker runs on: multi-threaded, `threads` workers (tokio's default, one
/// per core, when `None`).
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    builder.enable_all().build()
}

/// Raises the open-files limit, binds, and serves until SIGINT or SIGTERM.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    super::init_logging("info");
    // Every client is a file descriptor: the soft limit (often 1024) would cap the broker long
    // before memory or CPU do, so take everything the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(open_files = n, "open-files limit raised to the hard limit"),
        Err(e) => warn!(error = %e, "could not raise the open-files limit"),
    }
    let listen = opts.config.listen;
    let listener =
        crate::server::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = super::shutdown_on_signal();
    crate::server::run(opts.config, listener, shutdown).await;
    Ok(())
}
