//! One memory measurement: the broker's baseline, then runs of idle subscribers, each
//! connected, settled, read, closed and seen closed by the broker.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::model::median;
use crate::model::memory::{MemoryRun, MemorySummary};
use crate::os::procfs::{read_kernel, read_proc_mem, read_socket_count, ProcMem};
use crate::proto::{socket, Proto};
use crate::rig::probe::StatsProbe;

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

/// Whether the samples of a window vary by at most `tolerance`.
pub fn is_stable(samples: impl IntoIterator<Item = u64>, tolerance: u64) -> bool {
    let (lo, hi) = samples
        .into_iter()
        .fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
    lo <= hi && hi - lo <= tolerance
}

/// Descriptors loadgen keeps for itself (stdio, runtime, the broker's pipes).
const FD_MARGIN: u64 = 100;

/// Checks the sizes are usable and that this process may open `clients` connections (raising
/// its open-files soft limit to the hard one).
pub(super) fn check_sizes(clients: usize, channels: usize, repeat: usize) -> anyhow::Result<()> {
    if clients == 0 || channels == 0 || repeat == 0 {
        bail!("clients, channels and runs must each be at least 1");
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

/// What [`measure_each`] reports as it goes, for the command to print.
pub(super) enum Progress<'a> {
    /// The broker's memory with no client connected, before the first run.
    Baseline(ProcMem),
    Run(&'a MemoryRun),
}

/// Measures the broker at `addr` (process `pid`, speaking `proto`, with no client connected):
/// `repeat` runs of `clients` idle subscribers on `channels` channels, each run's connections
/// closed, and seen closed by the broker, before it returns. The summary's `embedded` is
/// false; its `command_line` is this process's.
pub async fn measure_broker(
    addr: SocketAddr,
    pid: u32,
    proto: Proto,
    (clients, channels, repeat): (usize, usize, usize),
    interrupt: &CancellationToken,
) -> anyhow::Result<MemorySummary> {
    let sizes = (clients, channels, repeat);
    measure_each(addr, pid, proto, sizes, interrupt, |_| {}).await
}

/// [`measure_broker`], telling `progress` the baseline and each run as they are read. Once
/// `interrupt` is cancelled no further run starts; the runs so far are returned.
pub(super) async fn measure_each(
    addr: SocketAddr,
    pid: u32,
    proto: Proto,
    (clients, channels, repeat): (usize, usize, usize),
    interrupt: &CancellationToken,
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
        if interrupt.is_cancelled() {
            break;
        }
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
        provenance: None,
    })
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
            let none = crate::proto::credentials::Credentials::NONE;
            return Departure::Stats(StatsProbe::connect(&[addr], &none).await);
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
    // Less than the baseline with every connection open: the baseline held memory from earlier
    // traffic that the allocator has since returned, and no per-connection figure follows.
    if after.rss < baseline.rss {
        bail!(
            "the broker's resident memory fell below its baseline while {} connections were \
             open ({} → {} bytes): it was still returning memory from earlier load; measure a \
             freshly started broker",
            shape.clients,
            baseline.rss,
            after.rss
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stability_is_a_range_within_tolerance() {
        assert!(is_stable([100, 150, 120], 50));
        assert!(!is_stable([100, 151], 50));
        assert!(!is_stable([], 50));
    }
}
