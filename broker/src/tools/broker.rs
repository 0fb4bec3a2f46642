//! The `broker` program.

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};

use crate::config::Config;

/// jemalloc's options for a broker process, NUL-terminated as jemalloc reads them: the
/// `broker` program compiles them in, and loadgen, whose own executable runs the broker it
/// starts for itself, passes them in `_RJEM_MALLOC_CONF` (which overrides what is compiled in).
///
/// - `narenas:1`: one arena for every thread. A client's task is allocated on the thread that
///   accepted it and freed on whichever ran it last; with an arena per thread (jemalloc's
///   default is four per core) what one wave of clients freed sat in one arena while the next
///   wave allocated fresh pages in another. Measured, 10,000 idle subscribers connected three
///   times over on one broker: 806, 1,037 and 1,018 bytes per connection by default; 796, 812
///   and 806 with this. The threads' caches still serve most allocations without the lock.
/// - `background_thread:true,dirty_decay_ms:1000`: pages freed by a burst or a mass disconnect
///   go back to the system within about a second, from a thread of jemalloc's own. By default
///   jemalloc returns them only while it is allocating, so an idle broker kept the high-water
///   mark of its last burst (measured: 13.1 MB held after 10,000 clients left, against 7.4 MB
///   with this, 4.7 MB at start).
pub const MALLOC_CONF: &str = "narenas:1,background_thread:true,dirty_decay_ms:1000\0";

/// The hubbub broker: holds subscriptions and pushes every message published on a channel to
/// the channel's subscribers, over newline-delimited JSON on TCP (PROTOCOL.md).
#[derive(Debug, Parser)]
#[command(name = "broker", version, args_conflicts_with_subcommands = true)]
pub struct Opts {
    /// Something other than serving.
    #[command(subcommand)]
    pub tool: Option<Tool>,
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

/// What the `broker` program does besides serving.
#[derive(Debug, clap::Subcommand)]
pub enum Tool {
    /// Reads a password (the first line of standard input) and prints its argon2 hash, for a
    /// user's `password` in the users file (--users): `broker hash-password < secret.txt`.
    HashPassword,
}

/// `broker hash-password`: the first line of `input` hashed (`crate::auth::hash_password`),
/// written to `out` as one line.
pub fn hash_password(
    input: impl std::io::BufRead,
    mut out: impl std::io::Write,
) -> anyhow::Result<()> {
    let line = input
        .lines()
        .next()
        .transpose()
        .context("cannot read the password from standard input")?
        .unwrap_or_default();
    let hash = crate::auth::hash_password(&line)?;
    writeln!(out, "{hash}")?;
    Ok(())
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
    if let Some(Tool::HashPassword) = opts.tool {
        return hash_password(std::io::stdin().lock(), std::io::stdout().lock());
    }
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
    let broker = crate::server::Broker::new(opts.config).context("cannot start the broker")?;
    // Before the ready file, so that whoever waits on it can scrape at once.
    broker
        .bind_metrics()
        .context("cannot listen for --metrics")?;
    if let Some(path) = &opts.ready_file {
        let addr = listener.local_addr()?;
        crate::launch::write_ready_file(path, addr)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    let shutdown = super::shutdown_on_signal();
    broker.run(listener, shutdown).await;
    Ok(())
}
