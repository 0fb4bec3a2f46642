//! `loadgen memory`: what one idle subscribed connection costs the broker.
//!
//! Before the first run loadgen reads the broker's resident memory with no client connected
//! (its *baseline*). Each run opens `--clients` connections that each subscribe to one of
//! `--channels` channels and wait for the acknowledgement, lets the broker settle, and reads
//! its memory again: the growth over the baseline divided by the connections is the cost of
//! one idle subscriber (the figure Mosquitto's ~1 KiB is quoted in).
//!
//! Runs are repeated on fresh connections, the previous ones closed first, and the median is
//! reported. Between runs loadgen waits until the broker has seen the clients leave: hubbub
//! says so in its STATS; for a broker without STATS (Redis, NATS, Mosquitto via `--proto`) the
//! kernel does, once the broker holds no more socket descriptors than it did before the first
//! run. Every run is measured against the same baseline, not against the memory the
//! broker still held just before it: allocators keep much of what the previous connections
//! freed, and growth over that would only show reuse, not what holding the clients costs.
//! The table also shows that idle memory, which tells whether the broker gives memory back.
//!
//! The kernel's side is read the same way, machine-wide and for both ends of every connection
//! (loadgen's included): TCP buffer pages from `/proc/net/sockstat` (near zero while idle),
//! and slab memory from `/proc/meminfo` (socket, inode, file and epoll structures), which
//! other programs on the machine also move.

mod measure;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tokio_util::sync::CancellationToken;

pub use self::measure::measure_broker;
use self::measure::{check_sizes, measure_each, Progress};
use crate::model::units::to_mib;
use crate::model::Outcome;
use crate::os::read_limits;
use crate::proto::Proto;
use crate::report;
use crate::rig::broker::UnderTest;
use crate::rig::options::at_least_one_usize;
use crate::rig::progress::{say, Out};
use crate::rig::provenance;

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Broker to measure (HOST:PORT); without it loadgen starts its own (hubbub) on a free port.
    #[arg(long, requires = "broker_pid")]
    pub target: Option<SocketAddr>,
    /// Process id of the --target broker, whose memory is read from /proc.
    #[arg(long, requires = "target")]
    pub broker_pid: Option<u32>,
    /// The protocol the target speaks (`scripts/peers.sh start` runs the others on loopback).
    #[arg(long, value_enum, default_value_t = Proto::Hubbub)]
    pub proto: Proto,
    /// Idle subscribed connections opened per run.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one_usize())]
    pub clients: usize,
    /// Channels; client n subscribes to channel n mod channels.
    #[arg(long, default_value_t = 100, value_parser = at_least_one_usize())]
    pub channels: usize,
    /// Runs, each on fresh connections; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = at_least_one_usize())]
    pub repeat: usize,
    /// Where to write memory.csv, summary.json and memory.png (default:
    /// reports/runs/<timestamp>-memory/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn run(opts: Opts, interrupt: &CancellationToken, out: Out) -> anyhow::Result<Outcome> {
    check_sizes(opts.clients, opts.channels, opts.repeat)?;
    let dir = opts
        .out
        .clone()
        .unwrap_or_else(|| report::default_out("memory"));
    report::create_dir(&dir)?;
    let targets: Vec<SocketAddr> = opts.target.into_iter().collect();
    let pids: Vec<u32> = opts.broker_pid.into_iter().collect();
    let broker = UnderTest::resolve(&targets, &pids, opts.proto, &[])?;
    let (addr, pid) = (broker.addrs[0], broker.pids[0]);
    say(&format!(
        "memory: {} idle subscribers on {} channels, {} (pid {pid}); report in {}",
        opts.clients,
        opts.channels,
        broker.describe(),
        dir.display()
    ));
    let print = |progress: Progress<'_>| match progress {
        Progress::Baseline(baseline) => {
            out.line(&format!(
                "broker RSS with no clients: {:.1} MiB",
                to_mib(baseline.rss)
            ));
            out.line(&format!(
                "{:>3} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12} {:>8}",
                "run",
                "RSS idle",
                "RSS held",
                "RSS/conn",
                "anon/conn",
                "TCP buf/conn",
                "slab/conn",
                "settle"
            ));
        }
        Progress::Run(run) => {
            let bytes = |b: Option<f64>| b.map_or("-".into(), |b| format!("{b:.0} B"));
            out.line(&format!(
                "{:>3} {:>8.1} MiB {:>8.1} MiB {:>8.0} B {:>8.0} B {:>12} {:>12} {:>6.1} s",
                run.run,
                to_mib(run.rss_idle),
                to_mib(run.rss_after),
                run.rss_per_conn,
                run.anon_per_conn,
                bytes(run.kernel_tcp_per_conn),
                bytes(run.kernel_slab_per_conn),
                run.settle_s,
            ));
        }
    };
    let named = [(opts.proto.to_string(), opts.proto, addr)];
    let provenance = provenance::gather(&named, &read_limits(Some(pid), 1)).await;
    let measured = measure_each(
        addr,
        pid,
        opts.proto,
        (opts.clients, opts.channels, opts.repeat),
        interrupt,
        print,
    )
    .await;
    broker.stop().await?;
    let mut summary = measured?;
    summary.embedded = targets.is_empty();
    summary.provenance = Some(provenance);
    let bytes = |b: Option<f64>| b.map_or("unreadable".into(), |b| format!("{b:.0} B"));
    out.line(&format!(
        "median: broker {:.0} B RSS per connection ({:.0} B anonymous); \
         kernel, both ends, machine-wide: {} TCP buffers, {} slab per connection",
        summary.median_rss_per_conn,
        summary.median_anon_per_conn,
        bytes(summary.median_kernel_tcp_per_conn),
        bytes(summary.median_kernel_slab_per_conn),
    ));
    if !summary.runs.is_empty() {
        report::memory::write_report(&dir, &summary)?;
        say(&format!("report written to {}", dir.display()));
    }
    out.summary(&summary)?;
    Ok(match interrupt.is_cancelled() {
        true => Outcome::Interrupted,
        false => Outcome::Passed,
    })
}
