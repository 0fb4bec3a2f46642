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

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::model::median;
use crate::proto::socket;
use crate::proto::Proto;
use crate::rig::broker::EmbeddedBroker;
use crate::rig::probe::StatsProbe;

/// Descriptors loadgen keeps for itself (stdio, runtime, the broker's pipes).
const FD_MARGIN: u64 = 100;
/// Connects (each with its subscribe) in flight at once.
const CONNECT_CONCURRENCY: usize = 64;
/// How long one client may take to connect and be acknowledged.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Memory counts as settled once it stays within [`SETTLE_TOLERANCE`] for this long.
const SETTLE_WINDOW: Duration = Duration::from_secs(1);
/// 64 KiB: under 1% of the growth 10,000 connections cause even at the 1 KiB target.
const SETTLE_TOLERANCE: u64 = 64 << 10;
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// Longest wait for memory, or the broker's connection count, to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

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
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Channels; client n subscribes to channel n mod channels.
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Runs, each on fresh connections; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Also write memory.csv and summary.json into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A process's resident memory, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcMem {
    /// `VmRSS`, in bytes.
    pub rss: u64,
    /// `RssAnon` (heap and stacks, not the mapped executable), in bytes; 0 where the kernel
    /// does not report it.
    pub rss_anon: u64,
}

/// Parses `VmRSS` and `RssAnon` (both in kB) out of a `/proc/PID/status` file.
pub fn parse_status(status: &str) -> Option<ProcMem> {
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let mut words = line[key.len()..].split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") | None => Some(n * 1024),
            Some(_) => None,
        }
    };
    Some(ProcMem {
        rss: kb("VmRSS:")?,
        rss_anon: kb("RssAnon:").unwrap_or(0),
    })
}

/// Parses the pages in use by TCP buffers (`TCP: ... mem N`) out of `/proc/net/sockstat`.
pub fn parse_sockstat_tcp_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "mem")?;
    words.get(at + 1)?.parse().ok()
}

/// Parses `Slab:` (in kB) out of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_slab(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("Slab:"))?;
    let kb: u64 = line["Slab:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Whether the samples of a window vary by at most `tolerance`.
pub fn is_stable(samples: impl IntoIterator<Item = u64>, tolerance: u64) -> bool {
    let (lo, hi) = samples
        .into_iter()
        .fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
    lo <= hi && hi - lo <= tolerance
}

/// How many of a process's descriptors are sockets, given where its `/proc/PID/fd` links point
/// (`socket:[inode]` for a socket; a path, `pipe:[…]` or `anon_inode:[…]` otherwise).
pub fn count_socket_links<P: AsRef<Path>>(targets: impl IntoIterator<Item = P>) -> usize {
    targets
        .into_iter()
        .filter(|t| t.as_ref().as_os_str().as_bytes().starts_with(b"socket:"))
        .count()
}

/// The open socket descriptors of process `pid`, from `/proc/PID/fd` (readable for a process
/// of the same user, or by root).
fn read_socket_count(pid: u32) -> io::Result<usize> {
    let mut targets = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        match fs::read_link(entry?.path()) {
            Ok(target) => targets.push(target),
            // Closed between listing and reading: not open any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(count_socket_links(targets))
}

fn read_proc_mem(pid: u32) -> anyhow::Result<ProcMem> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_status(&text).with_context(|| format!("no VmRSS in {path}"))
}

/// Bytes the kernel holds in TCP buffers, machine-wide; `None` where it cannot be read.
fn read_kernel_tcp() -> Option<u64> {
    let pages = parse_sockstat_tcp_pages(&fs::read_to_string("/proc/net/sockstat").ok()?)?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Kernel memory, machine-wide, in bytes; `None` where unreadable.
#[derive(Debug, Clone, Copy, Default)]
struct KernelMem {
    tcp: Option<u64>,
    slab: Option<u64>,
}

fn read_kernel() -> KernelMem {
    let slab = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_meminfo_slab(&m));
    KernelMem {
        tcp: read_kernel_tcp(),
        slab,
    }
}

/// One run's readings; sizes in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRun {
    pub run: usize,
    pub clients: usize,
    pub channels: usize,
    /// The broker's memory before the first run, with no client connected.
    pub rss_baseline: u64,
    /// The broker's memory just before this run (what it kept from earlier runs).
    pub rss_idle: u64,
    /// The broker's memory while holding this run's clients.
    pub rss_after: u64,
    pub rss_anon_baseline: u64,
    pub rss_anon_after: u64,
    /// `(rss_after - rss_baseline) / clients`.
    pub rss_per_conn: f64,
    pub anon_per_conn: f64,
    /// Machine-wide TCP buffer memory; empty where /proc/net/sockstat was unreadable.
    pub kernel_tcp_before: Option<u64>,
    pub kernel_tcp_after: Option<u64>,
    pub kernel_tcp_per_conn: Option<f64>,
    /// Machine-wide slab memory; empty where /proc/meminfo was unreadable.
    pub kernel_slab_before: Option<u64>,
    pub kernel_slab_after: Option<u64>,
    pub kernel_slab_per_conn: Option<f64>,
    /// Seconds from the last acknowledgement until the broker's memory settled.
    pub settle_s: f64,
}

/// Everything one `loadgen memory` measured (`summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct MemorySummary {
    pub target: String,
    pub proto: Proto,
    pub embedded: bool,
    pub clients: usize,
    pub channels: usize,
    pub runs: Vec<MemoryRun>,
    pub median_rss_per_conn: f64,
    pub median_anon_per_conn: f64,
    pub median_kernel_tcp_per_conn: Option<f64>,
    pub median_kernel_slab_per_conn: Option<f64>,
    pub command_line: String,
}

/// What [`measure_each`] reports as it goes, for `run` to print.
enum Progress<'a> {
    /// The broker's memory with no client connected, before the first run.
    Baseline(ProcMem),
    Run(&'a MemoryRun),
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    check_sizes(opts.clients, opts.channels, opts.repeat)?;
    let embedded = match (opts.target, opts.proto) {
        (Some(_), _) => None,
        (None, Proto::Hubbub) => Some(EmbeddedBroker::start(&[])?),
        (None, other) => bail!(
            "loadgen starts only hubbub itself; for --proto {other} give --target and \
             --broker-pid (scripts/peers.sh start {other}; scripts/peers.sh addr|pid ...)"
        ),
    };
    let (addr, pid) = match (&embedded, opts.target, opts.broker_pid) {
        (Some(b), _, _) => (b.addr, b.pid),
        (None, Some(addr), Some(pid)) => (addr, pid),
        _ => bail!("--target needs --broker-pid"),
    };
    println!(
        "memory: {} idle subscribers on {} channels, broker {addr} (pid {pid}{})",
        opts.clients,
        opts.channels,
        if embedded.is_some() {
            ", started by loadgen"
        } else {
            ""
        }
    );
    let print = |progress: Progress<'_>| match progress {
        Progress::Baseline(baseline) => {
            println!("broker RSS with no clients: {:.1} MiB", mib(baseline.rss));
            println!(
                "{:>3} {:>12} {:>12} {:>10} {:>10} {:>12} {:>12} {:>8}",
                "run",
                "RSS idle",
                "RSS held",
                "RSS/conn",
                "anon/conn",
                "TCP buf/conn",
                "slab/conn",
                "settle"
            );
        }
        Progress::Run(run) => {
            let bytes = |b: Option<f64>| b.map_or("-".into(), |b| format!("{b:.0} B"));
            println!(
                "{:>3} {:>8.1} MiB {:>8.1} MiB {:>8.0} B {:>8.0} B {:>12} {:>12} {:>6.1} s",
                run.run,
                mib(run.rss_idle),
                mib(run.rss_after),
                run.rss_per_conn,
                run.anon_per_conn,
                bytes(run.kernel_tcp_per_conn),
                bytes(run.kernel_slab_per_conn),
                run.settle_s,
            );
        }
    };
    let mut summary = measure_each(
        addr,
        pid,
        opts.proto,
        opts.clients,
        opts.channels,
        opts.repeat,
        print,
    )
    .await?;
    summary.embedded = embedded.is_some();
    let bytes = |b: Option<f64>| b.map_or("unreadable".into(), |b| format!("{b:.0} B"));
    println!(
        "median: broker {:.0} B RSS per connection ({:.0} B anonymous); \
         kernel, both ends, machine-wide: {} TCP buffers, {} slab per connection",
        summary.median_rss_per_conn,
        summary.median_anon_per_conn,
        bytes(summary.median_kernel_tcp_per_conn),
        bytes(summary.median_kernel_slab_per_conn),
    );
    if let Some(dir) = &opts.out {
        write_report(dir, &summary)?;
        println!("report written to {}", dir.display());
    }
    if let Some(broker) = embedded {
        broker.stop().await?;
    }
    Ok(())
}

/// Measures the broker at `addr` (process `pid`, speaking `proto`, with no client connected):
/// `repeat` runs of `clients` idle subscribers on `channels` channels, each run's connections
/// closed, and seen closed by the broker, before it returns. The summary's `embedded` is
/// false; its `command_line` is this process's.
pub async fn measure_broker(
    addr: SocketAddr,
    pid: u32,
    proto: Proto,
    clients: usize,
    channels: usize,
    repeat: usize,
) -> anyhow::Result<MemorySummary> {
    measure_each(addr, pid, proto, clients, channels, repeat, |_| {}).await
}

/// [`measure_broker`], telling `progress` the baseline and each run as they are read.
async fn measure_each(
    addr: SocketAddr,
    pid: u32,
    proto: Proto,
    clients: usize,
    channels: usize,
    repeat: usize,
    mut progress: impl FnMut(Progress<'_>),
) -> anyhow::Result<MemorySummary> {
    check_sizes(clients, channels, repeat)?;
    let mut departure = Departure::watch(addr, pid, proto).await;
    let (baseline, _) = settle(pid).await?;
    progress(Progress::Baseline(baseline));
    let shape = Shape {
        addr,
        pid,
        proto,
        clients,
        channels,
    };
    let mut runs = Vec::new();
    let mut idle = baseline;
    for i in 1..=repeat {
        let (run, next_idle) = measure(i, &shape, baseline, idle, &mut departure).await?;
        progress(Progress::Run(&run));
        runs.push(run);
        idle = next_idle;
    }
    Ok(MemorySummary {
        target: addr.to_string(),
        proto,
        embedded: false,
        clients,
        channels,
        median_rss_per_conn: median(runs.iter().map(|r| r.rss_per_conn)).unwrap_or(0.0),
        median_anon_per_conn: median(runs.iter().map(|r| r.anon_per_conn)).unwrap_or(0.0),
        median_kernel_tcp_per_conn: median(runs.iter().filter_map(|r| r.kernel_tcp_per_conn)),
        median_kernel_slab_per_conn: median(runs.iter().filter_map(|r| r.kernel_slab_per_conn)),
        runs,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
    })
}

/// Checks the sizes are usable and that this process may open `clients` connections (raising
/// its open-files soft limit to the hard one).
fn check_sizes(clients: usize, channels: usize, repeat: usize) -> anyhow::Result<()> {
    if clients == 0 || channels == 0 || repeat == 0 {
        bail!("--clients, --channels and --repeat must be at least 1");
    }
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    if clients as u64 + FD_MARGIN > files {
        bail!(
            "--clients {clients} needs {} open files and this process may have {files}; \
             lower --clients or raise the hard limit (ulimit -Hn)",
            clients as u64 + FD_MARGIN
        );
    }
    Ok(())
}

/// The broker being measured and the clients each run opens.
struct Shape {
    addr: SocketAddr,
    pid: u32,
    proto: Proto,
    clients: usize,
    channels: usize,
}

/// How loadgen tells that the broker has seen a run's clients leave.
enum Departure {
    /// hubbub counts its connections in STATS; the probe's own is the one left.
    Stats(StatsProbe),
    /// Any other broker: the kernel's view, the broker's open socket descriptors back to the
    /// count before the first run (its listeners and whatever else it keeps).
    Sockets { baseline: usize },
    /// `/proc/PID/fd` is unreadable (another user's broker): only memory settling is waited
    /// for.
    Unknown,
}

impl Departure {
    /// Starts watching the broker while no client of loadgen's is connected.
    async fn watch(addr: SocketAddr, pid: u32, proto: Proto) -> Self {
        if proto == Proto::Hubbub {
            return Departure::Stats(StatsProbe::connect(&[addr]).await);
        }
        match read_socket_count(pid) {
            Ok(baseline) => Departure::Sockets { baseline },
            Err(e) => {
                eprintln!(
                    "warning: cannot count the sockets of broker pid {pid} in /proc ({e}); \
                     between runs only its memory is waited for"
                );
                Departure::Unknown
            }
        }
    }

    /// Waits, at most [`SETTLE_TIMEOUT`], until the broker has closed the connections loadgen
    /// closed.
    async fn wait(&mut self, pid: u32) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let left = match self {
                Departure::Stats(probe) => probe.read().await.connections.saturating_sub(1),
                Departure::Sockets { baseline } => {
                    read_socket_count(pid).map_or(0, |n| n.saturating_sub(*baseline) as u64)
                }
                Departure::Unknown => 0,
            };
            if left == 0 {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: the broker still holds {left} client connection(s) \
                     {SETTLE_TIMEOUT:?} after loadgen closed them; going on"
                );
                return;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
}

/// One run: connect and subscribe everyone, settle, read, close, and wait until the broker has
/// let go of them and its memory settled again. `idle` is the broker's memory settled before
/// the run; returns the run and the memory settled after it (the next run's idle).
async fn measure(
    run: usize,
    shape: &Shape,
    baseline: ProcMem,
    idle: ProcMem,
    departure: &mut Departure,
) -> anyhow::Result<(MemoryRun, ProcMem)> {
    let kernel_before = read_kernel();
    let streams = open_subscribers(shape, run).await?;
    let (after, settle_s) = settle(shape.pid).await?;
    let kernel_after = read_kernel();
    drop(streams);
    departure.wait(shape.pid).await;
    let (next_idle, _) = settle(shape.pid).await?;
    let clients = shape.clients;
    let per_conn = |b: u64, a: u64| (a as f64 - b as f64) / clients as f64;
    let kernel_per_conn = |b: Option<u64>, a: Option<u64>| Some(per_conn(b?, a?));
    let run = MemoryRun {
        run,
        clients,
        channels: shape.channels,
        rss_baseline: baseline.rss,
        rss_idle: idle.rss,
        rss_after: after.rss,
        rss_anon_baseline: baseline.rss_anon,
        rss_anon_after: after.rss_anon,
        rss_per_conn: per_conn(baseline.rss, after.rss),
        anon_per_conn: per_conn(baseline.rss_anon, after.rss_anon),
        kernel_tcp_before: kernel_before.tcp,
        kernel_tcp_after: kernel_after.tcp,
        kernel_tcp_per_conn: kernel_per_conn(kernel_before.tcp, kernel_after.tcp),
        kernel_slab_before: kernel_before.slab,
        kernel_slab_after: kernel_after.slab,
        kernel_slab_per_conn: kernel_per_conn(kernel_before.slab, kernel_after.slab),
        settle_s,
    };
    Ok((run, next_idle))
}

/// Reads the broker's memory until it has stayed put for [`SETTLE_WINDOW`]; returns the last
/// reading and the seconds that took.
async fn settle(pid: u32) -> anyhow::Result<(ProcMem, f64)> {
    let start = Instant::now();
    let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
    loop {
        let now = Instant::now();
        let mem = read_proc_mem(pid)?;
        window.push_back((now, mem.rss));
        while window
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= SETTLE_WINDOW)
        {
            window.pop_front();
        }
        let span = now.duration_since(window[0].0);
        if span >= SETTLE_WINDOW && is_stable(window.iter().map(|s| s.1), SETTLE_TOLERANCE) {
            return Ok((mem, start.elapsed().as_secs_f64()));
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            eprintln!(
                "warning: broker memory still moving after {SETTLE_TIMEOUT:?}; reading it anyway"
            );
            return Ok((mem, start.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Opens `shape.clients` connections, client n subscribed to channel n mod `shape.channels`,
/// each with its own session (MQTT client id `mem-{pid}-{run}-{n}`: a broker drops the older of
/// two connections with one id) and acknowledged, [`CONNECT_CONCURRENCY`] at a time.
async fn open_subscribers(shape: &Shape, run: usize) -> anyhow::Result<Vec<TcpStream>> {
    let Shape {
        addr,
        proto,
        clients,
        channels,
        ..
    } = *shape;
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..CONNECT_CONCURRENCY.min(clients) {
        tasks.spawn(async move {
            let mut streams = Vec::new();
            for n in (lane..clients).step_by(CONNECT_CONCURRENCY) {
                let channel = format!("memory-{}", n % channels);
                let client_id = format!("mem-{}-{run}-{n}", std::process::id());
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
                    let mut s = socket::connect(addr).await?;
                    let pending = proto.handshake(&mut s, &client_id).await?;
                    proto.subscribe(&mut s, &channel, pending).await?;
                    io::Result::Ok(s)
                })
                .await
                .with_context(|| format!("client {n} timed out connecting"))?
                .with_context(|| format!("client {n} could not connect and subscribe"))?;
                streams.push(stream);
            }
            anyhow::Ok(streams)
        });
    }
    let mut all = Vec::with_capacity(clients);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok(all)
}

fn write_report(dir: &std::path::Path, summary: &MemorySummary) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("memory.csv");
    let mut w = csv::Writer::from_path(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for run in &summary.runs {
        w.serialize(run)?;
    }
    w.flush()?;
    let path = dir.join("summary.json");
    fs::write(&path, serde_json::to_string_pretty(summary)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let parts = per_connection_parts(summary);
    let groups: Vec<String> = parts.iter().map(|m| m.scenario.clone()).collect();
    let title = format!(
        "Memory per idle subscribed connection, {} connections ({})",
        summary.clients, summary.proto
    );
    crate::report::plots::compare::grouped_bars(
        &dir.join("memory.png"),
        &title,
        "bytes per connection (bars: median; dots: each run)",
        &groups,
        &parts,
    )?;
    Ok(())
}

/// Where a connection's memory goes, as one measurement per part (broker heap and the
/// kernel's, both ends), each with every run, for the chart.
fn per_connection_parts(
    summary: &MemorySummary,
) -> Vec<crate::scenario::compare::results::Measurement> {
    let part = |name: &str, runs: Vec<f64>| crate::scenario::compare::results::Measurement {
        scenario: name.into(),
        broker: summary.proto.to_string(),
        metric: "bytes_per_conn".into(),
        unit: "B".into(),
        higher_is_better: false,
        runs,
        notes: Vec::new(),
    };
    let runs = |f: fn(&MemoryRun) -> Option<f64>| summary.runs.iter().filter_map(f).collect();
    vec![
        part("broker RSS", runs(|r| Some(r.rss_per_conn))),
        part("broker anonymous", runs(|r| Some(r.anon_per_conn))),
        part("kernel slab, both ends", runs(|r| r.kernel_slab_per_conn)),
        part("kernel TCP buffers", runs(|r| r.kernel_tcp_per_conn)),
    ]
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rss_from_status() {
        let status = "Name:\tloadgen\nVmPeak:\t  200000 kB\nVmRSS:\t   12345 kB\n\
                      RssAnon:\t    8000 kB\nRssFile:\t    4345 kB\n";
        assert_eq!(
            parse_status(status),
            Some(ProcMem {
                rss: 12345 * 1024,
                rss_anon: 8000 * 1024
            })
        );
        // Older kernels have no RssAnon.
        assert_eq!(
            parse_status("VmRSS:\t 10 kB\n").map(|m| (m.rss, m.rss_anon)),
            Some((10240, 0))
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
        assert_eq!(parse_status("VmRSS:\t 10 MB\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = read_proc_mem(std::process::id()).unwrap();
        assert!(me.rss > 0 && me.rss_anon <= me.rss);
    }

    #[test]
    fn parses_tcp_pages_from_sockstat() {
        let sockstat = "sockets: used 9\n\
                        TCP: inuse 1 orphan 0 tw 2003 alloc 1 mem 165\n\
                        UDP: inuse 0 mem 0\n";
        assert_eq!(parse_sockstat_tcp_pages(sockstat), Some(165));
        assert_eq!(parse_sockstat_tcp_pages("UDP: inuse 0 mem 3\n"), None);
        assert_eq!(parse_sockstat_tcp_pages("TCP: inuse 1 mem\n"), None);
    }

    #[test]
    fn parses_slab_from_meminfo() {
        let meminfo = "MemTotal:       24684000 kB\nSlab:             137532 kB\n\
                       SReclaimable:      98008 kB\n";
        assert_eq!(parse_meminfo_slab(meminfo), Some(137532 * 1024));
        assert_eq!(parse_meminfo_slab("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn counts_socket_links() {
        let links = [
            "/dev/null",
            "socket:[123456]",
            "pipe:[77]",
            "anon_inode:[eventpoll]",
            "socket:[9]",
            "/tmp/socket:[1]",
        ];
        assert_eq!(count_socket_links(links), 2);
        assert_eq!(count_socket_links(Vec::<PathBuf>::new()), 0);
    }

    #[test]
    fn counts_another_process_sockets() {
        use std::process::{Command, Stdio};
        // A child whose only socket is its stdin (every other descriptor of this process is
        // close-on-exec), so the count is exact even with other tests opening sockets.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(std::os::fd::OwnedFd::from(listener))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sleep runs");
        let sockets = read_socket_count(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(sockets.unwrap(), 1);
    }

    #[test]
    fn stability_is_a_range_within_tolerance() {
        assert!(is_stable([100, 150, 120], 50));
        assert!(!is_stable([100, 151], 50));
        assert!(!is_stable([], 50));
    }

    #[test]
    fn median_takes_the_middle() {
        let median = |v: &[f64]| median(v.iter().copied()).unwrap_or(0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
