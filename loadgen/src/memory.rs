//! `loadgen memory`: what one idle subscribed connection costs the broker.
//!
//! Before the first run loadgen reads the broker's resident memory with no client connected
//! (its *baseline*). Each run opens `--clients` connections that each subscribe to one of
//! `--channels` channels and wait for the acknowledgement, lets the broker settle, and reads
//! its memory again: the growth over the baseline divided by the connections is the cost of
//! one idle subscriber (the figure Mosquitto's ~1 KiB is quoted in).
//!
//! Runs are repeated on fresh connections, the previous ones closed first, and the median is
//! reported. Every run is measured against the same baseline, not against the memory the
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
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::embedded::EmbeddedBroker;
use crate::proto::Proto;
use crate::stats_probe::StatsProbe;
use crate::wire;

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
    /// Broker to measure (HOST:PORT); without it loadgen starts its own on a free port.
    #[arg(long, requires = "broker_pid")]
    pub target: Option<SocketAddr>,
    /// Process id of the --target broker, whose memory is read from /proc.
    #[arg(long, requires = "target")]
    pub broker_pid: Option<u32>,
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

/// The middle value (the upper middle of an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    if opts.clients as u64 + FD_MARGIN > files {
        bail!(
            "--clients {} needs {} open files and this process may have {files}; \
             lower --clients or raise the hard limit (ulimit -Hn)",
            opts.clients,
            opts.clients as u64 + FD_MARGIN
        );
    }
    if opts.clients == 0 || opts.channels == 0 || opts.repeat == 0 {
        bail!("--clients, --channels and --repeat must be at least 1");
    }
    let embedded = match opts.target {
        Some(_) => None,
        None => Some(EmbeddedBroker::start(&[]).await?),
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
    let mut probe = StatsProbe::connect(&[addr]).await;
    let (baseline, _) = settle(pid).await?;
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
    let mut runs = Vec::new();
    for i in 1..=opts.repeat {
        let run = measure(i, addr, pid, baseline, &opts, &mut probe).await?;
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
        runs.push(run);
    }
    let optional_median = |values: Vec<f64>| (!values.is_empty()).then(|| median(&values));
    let summary = MemorySummary {
        target: addr.to_string(),
        embedded: embedded.is_some(),
        clients: opts.clients,
        channels: opts.channels,
        median_rss_per_conn: median(&runs.iter().map(|r| r.rss_per_conn).collect::<Vec<_>>()),
        median_anon_per_conn: median(&runs.iter().map(|r| r.anon_per_conn).collect::<Vec<_>>()),
        median_kernel_tcp_per_conn: optional_median(
            runs.iter().filter_map(|r| r.kernel_tcp_per_conn).collect(),
        ),
        median_kernel_slab_per_conn: optional_median(
            runs.iter().filter_map(|r| r.kernel_slab_per_conn).collect(),
        ),
        runs,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
    };
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

/// One run: settle, connect and subscribe everyone, settle, read, close.
async fn measure(
    run: usize,
    addr: SocketAddr,
    pid: u32,
    baseline: ProcMem,
    opts: &Opts,
    probe: &mut StatsProbe,
) -> anyhow::Result<MemoryRun> {
    let (idle, _) = settle(pid).await?;
    let kernel_before = read_kernel();
    let streams = open_subscribers(addr, opts.clients, opts.channels).await?;
    let (after, settle_s) = settle(pid).await?;
    let kernel_after = read_kernel();
    drop(streams);
    // Wait for the broker to see every client leave (a broker without STATS reads as 0).
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while probe.read().await.connections > 1 && Instant::now() < deadline {
        tokio::time::sleep(SETTLE_POLL).await;
    }
    let per_conn = |b: u64, a: u64| (a as f64 - b as f64) / opts.clients as f64;
    let kernel_per_conn = |b: Option<u64>, a: Option<u64>| Some(per_conn(b?, a?));
    Ok(MemoryRun {
        run,
        clients: opts.clients,
        channels: opts.channels,
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
    })
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

/// Opens `clients` connections, client n subscribed to channel n mod `channels`, each
/// acknowledged, [`CONNECT_CONCURRENCY`] at a time.
async fn open_subscribers(
    addr: SocketAddr,
    clients: usize,
    channels: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..CONNECT_CONCURRENCY.min(clients) {
        tasks.spawn(async move {
            let mut streams = Vec::new();
            for n in (lane..clients).step_by(CONNECT_CONCURRENCY) {
                let channel = format!("memory-{}", n % channels);
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
                    let mut s = wire::connect(addr).await?;
                    Proto::Hubbub
                        .subscribe(&mut s, &channel, Vec::new())
                        .await?;
                    std::io::Result::Ok(s)
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
    Ok(())
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
    fn stability_is_a_range_within_tolerance() {
        assert!(is_stable([100, 150, 120], 50));
        assert!(!is_stable([100, 151], 50));
        assert!(!is_stable([], 50));
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
