//! The `broker` program.

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};

use crate::config::Config;

/// The hubbub broker: holds subscriptions and pushes every message published on a channel to
/// the channel's subscribers, over newline-delimited JSON on TCP (PROTOCOL.md).
#[derive(Debug, Parser)]
#[command(name = "broker", version)]
pub struct Opts {
    #[command(flatten)]
    pub config: Config,
    /// Runtime worker threads [default: one per core]. Fewer threads can lower latency on a
    /// machine the broker shares with busy clients, at the cost of fan-out throughput.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Once listening, write the address (HOST:PORT) into this file: how scripts and tests
    /// start a broker on port 0 and learn which port it got.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<std::path::PathBuf>,
}

/// The runtime the broker runs on: multi-threaded, `threads` workers (tokio's default, one
/// per core, when `None`).
pub fn runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(usize::from(n.max(1)));
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
    if let Some(path) = &opts.ready_file {
        let addr = listener.local_addr()?;
        crate::launch::write_ready_file(path, addr)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    let shutdown = super::shutdown_on_signal();
    crate::server::run(opts.config, listener, shutdown).await;
    Ok(())
}
