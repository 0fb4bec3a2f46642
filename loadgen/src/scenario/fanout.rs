//! Burst fan-out: publishers send a fixed number of messages to subscribers of every channel as
//! fast as the broker delivers them; the result is deliveries per second. It runs against any
//! protocol in [`crate::proto`], so the same burst can be timed on hubbub, Redis, NATS and
//! Mosquitto.
//!
//! The publishers are flow-controlled against the slowest subscriber (together at most
//! `window` messages ahead of it) so that the measurement is of delivery speed, not of how fast
//! a broker can drop slow consumers (or, for Mosquitto, silently drop their messages).
//!
//! `--subscribers 1,10,100` sweeps the fan-out: `--repeat` runs at each count, in the order
//! given. `--deliveries N` sizes each count's bursts to about N deliveries, so that every run
//! does a comparable amount of work however many subscribers share each message; `--out DIR`
//! writes every run to `fanout.csv`, the medians to `summary.md` and both to `fanout.png`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

mod report;

pub use self::report::{medians, summary_markdown, CountMedian, RunRow};
use self::report::{medians_text, setup_text, write_report};
use crate::model::median;
use crate::proto::socket;
use crate::proto::{Proto, Reader};
use crate::rig::broker::EmbeddedBroker;

/// Publishes per write: the publishers pipeline, as real high-rate publishers do.
const BATCH: u64 = 100;
/// Longest the slowest subscriber may go without a delivery while it still misses some: the
/// publishers wait for it, so a lost message would otherwise stall the run for ever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a publisher held back by the window, and the run waiting for its last
/// deliveries, look at the subscribers' counts again.
const POLL: Duration = Duration::from_micros(200);
/// Read buffer per connection.
const READ_BUF: usize = 64 * 1024;

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Broker to measure (HOST:PORT); without it loadgen starts its own (hubbub) on a free port.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// The protocol the target speaks (`scripts/peers.sh start` runs the others on loopback).
    #[arg(long, value_enum, default_value_t = Proto::Hubbub)]
    pub proto: Proto,
    /// Publisher connections; publisher p publishes on channel p mod channels.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscriber connections, each subscribed to every channel; a comma-separated list
    /// (`1,10,100,1000`) measures each count in turn.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub subscribers: Vec<usize>,
    /// Channels.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Messages each publisher sends per run.
    #[arg(long, default_value_t = 100_000)]
    pub publishes: u64,
    /// Deliveries per run instead of --publishes: each publisher sends
    /// max(1, N / (publishers × subscribers)), so runs at every subscriber count do about as
    /// much work.
    #[arg(long, conflicts_with = "publishes")]
    pub deliveries: Option<u64>,
    /// Payload bytes per message (hubbub carries them as a JSON string, two quotes more).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Most messages the publishers together may be ahead of the slowest subscriber.
    #[arg(long, default_value_t = 5_000)]
    pub window: u64,
    /// Runs at each subscriber count; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Directory for `fanout.csv` (every run), `summary.md` (medians) and `fanout.png`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Opts {
    /// The burst measured at `subscribers` subscribers.
    pub fn spec(&self, subscribers: usize) -> Spec {
        Spec {
            publishers: self.publishers,
            subscribers,
            channels: self.channels,
            publishes: publishes_per_publisher(
                self.deliveries,
                self.publishes,
                self.publishers,
                subscribers,
            ),
            size: self.size,
            window: self.window,
        }
    }
}

/// Messages each publisher sends: `publishes`, or with a `deliveries` target
/// max(1, deliveries / (publishers × subscribers)), since every message reaches every
/// subscriber.
pub fn publishes_per_publisher(
    deliveries: Option<u64>,
    publishes: u64,
    publishers: usize,
    subscribers: usize,
) -> u64 {
    match deliveries {
        None => publishes,
        Some(n) => {
            let fan = (publishers as u64)
                .saturating_mul(subscribers as u64)
                .max(1);
            (n / fan).max(1)
        }
    }
}

/// The shape of one burst: every subscriber subscribes to all `channels`; publisher p
/// publishes `publishes` messages on channel p mod channels, so every subscriber receives
/// publishers × publishes messages.
#[derive(Debug, Clone)]
pub struct Spec {
    pub publishers: usize,
    pub subscribers: usize,
    pub channels: usize,
    /// Messages per publisher.
    pub publishes: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Most messages all publishers together may be ahead of the slowest subscriber.
    pub window: u64,
}

impl Spec {
    /// Messages each subscriber receives.
    pub fn per_subscriber(&self) -> u64 {
        self.publishers as u64 * self.publishes
    }
}

/// One run's result.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub deliveries: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

/// Rejects subscriber lists that cannot be swept: empty, a zero, or a count twice (whose runs
/// would mix in one median).
fn check_counts(counts: &[usize]) -> anyhow::Result<()> {
    if counts.is_empty() || counts.contains(&0) {
        bail!("--subscribers needs counts of at least 1");
    }
    for (i, c) in counts.iter().enumerate() {
        if counts[..i].contains(c) {
            bail!("--subscribers lists {c} twice");
        }
    }
    Ok(())
}

pub async fn run(opts: Opts) -> anyhow::Result<()> {
    check_counts(&opts.subscribers)?;
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let embedded = match (opts.target, opts.proto) {
        (Some(_), _) => None,
        (None, Proto::Hubbub) => Some(EmbeddedBroker::start(&[])?),
        (None, other) => bail!(
            "loadgen starts only hubbub itself; for --proto {other} give --target \
             (scripts/peers.sh start {other}; scripts/peers.sh addr ...)"
        ),
    };
    let addr = opts
        .target
        .or(embedded.as_ref().map(|b| b.addr))
        .expect("an address");
    let broker = format!(
        "{} broker {addr}{}",
        opts.proto,
        if embedded.is_some() {
            " (started by loadgen)"
        } else {
            ""
        }
    );
    let short = if embedded.is_some() {
        "hubbub started by loadgen".to_string()
    } else {
        format!("{} at {addr}", opts.proto)
    };
    let setup = setup_text(&opts, &short);
    let mut rows = Vec::new();
    let swept = sweep(&opts, addr, &broker, &mut rows).await;
    if swept.is_ok() && opts.subscribers.len() > 1 {
        print!("{}", medians_text(&medians(&rows)));
    }
    // A sweep that failed part-way still reports the runs it finished.
    let written = match &opts.out {
        Some(dir) if !rows.is_empty() => write_report(dir, &setup, &rows).map(|()| {
            println!("report written to {}", dir.display());
        }),
        _ => Ok(()),
    };
    if let Some(b) = embedded {
        b.stop().await?;
    }
    swept?;
    written
}

/// `--repeat` runs at each subscriber count, each printed and added to `rows` as it ends,
/// then the count's median.
async fn sweep(
    opts: &Opts,
    addr: SocketAddr,
    broker: &str,
    rows: &mut Vec<RunRow>,
) -> anyhow::Result<()> {
    for &subscribers in &opts.subscribers {
        let spec = opts.spec(subscribers);
        println!(
            "fan-out: {} publisher(s) × {} publishes of {} B on {} channel(s) to {} subscribers, \
             {broker}",
            spec.publishers, spec.publishes, spec.size, spec.channels, spec.subscribers,
        );
        let mut rates = Vec::new();
        for i in 0..opts.repeat {
            let tag = format!("{}-{subscribers}-{i}", std::process::id());
            let r = measure(addr, opts.proto, &spec, &tag)
                .await
                .with_context(|| format!("{subscribers} subscribers, run {}", i + 1))?;
            println!(
                "run {}: {} deliveries in {:.3} s = {:.0} deliveries/s",
                i + 1,
                r.deliveries,
                r.elapsed.as_secs_f64(),
                r.per_second()
            );
            rates.push(r.per_second());
            rows.push(RunRow::new(&spec, i + 1, &r));
        }
        if let Some(m) = median(rates) {
            println!("median: {m:.0} deliveries/s");
        }
    }
    Ok(())
}

/// One burst on fresh channels, `fanout-{tag}-{c}` (and MQTT client ids
/// `fanout-{tag}-{sub|pub}-{n}`): `tag` must differ between runs that may overlap on one
/// broker. Every connection is closed when this returns, whether it succeeds or not.
pub async fn measure(
    addr: SocketAddr,
    proto: Proto,
    spec: &Spec,
    tag: &str,
) -> anyhow::Result<Run> {
    if spec.publishers == 0 || spec.subscribers == 0 || spec.channels == 0 {
        bail!("a fan-out needs at least one publisher, subscriber and channel");
    }
    let counts = Arc::new(Counts {
        sent: AtomicU64::new(0),
        received: (0..spec.subscribers).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut tasks = JoinSet::new();
    let outcome = burst(addr, proto, spec, tag, &counts, &mut tasks).await;
    // Aborts every connection's task and waits for them, so their sockets are closed.
    tasks.shutdown().await;
    outcome
}

/// What the connections' tasks share: how much has been sent, and how much each subscriber
/// has received.
struct Counts {
    sent: AtomicU64,
    received: Box<[AtomicU64]>,
}

impl Counts {
    fn slowest(&self) -> u64 {
        self.received
            .iter()
            .map(|c| c.load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Whether the publishers may send more: they are at most `window` ahead of the slowest.
    fn window_open(&self, window: u64) -> bool {
        self.sent.load(Relaxed).saturating_sub(self.slowest()) <= window
    }
}

/// Connects everyone, publishes, and waits for the last delivery; every connection's task goes
/// into `tasks`, which the caller shuts down.
async fn burst(
    addr: SocketAddr,
    proto: Proto,
    spec: &Spec,
    tag: &str,
    counts: &Arc<Counts>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Run> {
    let channels: Vec<String> = (0..spec.channels)
        .map(|c| format!("fanout-{tag}-{c}"))
        .collect();
    for i in 0..spec.subscribers {
        let id = format!("fanout-{tag}-sub-{i}");
        let mut stream = open(addr, proto, &id).await?;
        let mut early = proto
            .handshake(&mut stream, &id)
            .await
            .with_context(|| format!("{id}: open the {proto} session"))?;
        for channel in &channels {
            early = proto
                .subscribe(&mut stream, channel, early)
                .await
                .with_context(|| format!("{id}: subscribe to {channel}"))?;
        }
        tasks.spawn(subscriber(proto, stream, early, counts.clone(), i));
    }
    let mut publishers = Vec::new();
    for p in 0..spec.publishers {
        let id = format!("fanout-{tag}-pub-{p}");
        let mut stream = open(addr, proto, &id).await?;
        let early = proto
            .handshake(&mut stream, &id)
            .await
            .with_context(|| format!("{id}: open the {proto} session"))?;
        let mut one = Vec::new();
        proto.encode_publish(
            &mut one,
            &channels[p % spec.channels],
            &vec![b'x'; spec.size],
        );
        publishers.push((stream, early, Frames::new(one)));
    }

    let start = Instant::now();
    for (stream, early, frames) in publishers {
        let publisher = Publisher {
            proto,
            frames,
            publishes: spec.publishes,
            window: spec.window,
            counts: counts.clone(),
        };
        tasks.spawn(publisher.run(stream, early));
    }
    let expected = spec.per_subscriber();
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let slowest = counts.slowest();
        if slowest >= expected {
            break;
        }
        if slowest != last {
            (last, last_change) = (slowest, Instant::now());
        } else if last_change.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "lost deliveries: the slowest subscriber got {slowest} of {expected} \
                 (none for {DRAIN_TIMEOUT:?})"
            );
        }
        // Every task runs until shut down: one that ended has failed.
        if let Some(ended) = tasks.try_join_next() {
            ended.context("a connection's task panicked")??;
            bail!("a connection's task ended before the burst was delivered");
        }
        tokio::time::sleep(POLL).await;
    }
    let elapsed = start.elapsed();
    let deliveries = counts.received.iter().map(|c| c.load(Relaxed)).sum();
    Ok(Run {
        deliveries,
        elapsed,
    })
}

async fn open(addr: SocketAddr, proto: Proto, id: &str) -> anyhow::Result<TcpStream> {
    socket::connect(addr)
        .await
        .with_context(|| format!("{id}: connect to the {proto} broker at {addr}"))
}

/// Counts one subscriber's messages (starting with `early`, read while it subscribed) into
/// `counts.received[index]`, answering what the protocol requires; runs until aborted.
async fn subscriber(
    proto: Proto,
    mut stream: TcpStream,
    early: Vec<u8>,
    counts: Arc<Counts>,
    index: usize,
) -> anyhow::Result<()> {
    let mut reader = Reader::new(proto);
    let (mut buf, mut reply) = (early, Vec::new());
    loop {
        let mut got = 0;
        let used = reader
            .feed(&buf, |_| got += 1, &mut reply)
            .with_context(|| format!("subscriber {index}"))?;
        buf.drain(..used);
        counts.received[index].fetch_add(got, Relaxed);
        if !reply.is_empty() {
            stream.write_all(&reply).await?;
            reply.clear();
        }
        buf.reserve(READ_BUF);
        if stream.read_buf(&mut buf).await? == 0 {
            bail!(
                "the broker closed subscriber {index} after {} messages",
                counts.received[index].load(Relaxed)
            );
        }
    }
}

/// [`BATCH`] copies of one encoded publish, to write any number up to [`BATCH`] in one call.
struct Frames {
    batch: Vec<u8>,
    len: usize,
}

impl Frames {
    fn new(one: Vec<u8>) -> Self {
        Self {
            batch: one.repeat(BATCH as usize),
            len: one.len(),
        }
    }

    fn first(&self, n: u64) -> &[u8] {
        &self.batch[..self.len * n as usize]
    }
}

struct Publisher {
    proto: Proto,
    frames: Frames,
    publishes: u64,
    window: u64,
    counts: Arc<Counts>,
}

impl Publisher {
    /// Writes `publishes` messages in batches while the window is open, and meanwhile reads
    /// its own connection: Redis answers every PUBLISH, NATS may PING, and unread replies
    /// would back up until the broker stops reading the publisher. One task does both with
    /// cancel-safe `read_buf` and `write` (a write that loses the race writes nothing), so a
    /// reply is never stuck behind a blocked batch. Runs until aborted.
    async fn run(self, stream: TcpStream, early: Vec<u8>) -> anyhow::Result<()> {
        let (mut rd, mut wr) = stream.into_split();
        let mut reader = Reader::new(self.proto);
        let (mut inbound, mut reply) = (early, Vec::new());
        let (mut out, mut at) = (Vec::new(), 0);
        let mut sent = 0;
        loop {
            let used = reader
                .feed(&inbound, |_| {}, &mut reply)
                .context("publisher")?;
            inbound.drain(..used);
            if at == out.len() {
                out.clear();
                at = 0;
                out.append(&mut reply);
                if sent < self.publishes && self.counts.window_open(self.window) {
                    let n = BATCH.min(self.publishes - sent);
                    out.extend_from_slice(self.frames.first(n));
                    sent += n;
                    self.counts.sent.fetch_add(n, Relaxed);
                }
            }
            let held_back = at == out.len() && sent < self.publishes;
            inbound.reserve(READ_BUF);
            tokio::select! {
                read = rd.read_buf(&mut inbound) => {
                    if read? == 0 {
                        bail!("the broker closed a publisher after {sent} publishes");
                    }
                }
                wrote = wr.write(&out[at..]), if at < out.len() => match wrote? {
                    0 => bail!("a publisher's connection accepts no more bytes"),
                    n => at += n,
                },
                () = tokio::time::sleep(POLL), if held_back => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::report::{grouped, plural};
    use super::*;

    fn row(subscribers: usize, run: usize, deliveries_per_sec: f64) -> RunRow {
        RunRow {
            subscribers,
            run,
            publishes: 1_000,
            deliveries: 1_000 * subscribers as u64,
            elapsed_s: 1.0,
            deliveries_per_sec,
            publishes_per_sec: deliveries_per_sec / subscribers as f64,
        }
    }

    fn fanout_opts(args: &[&str]) -> Result<Opts, clap::Error> {
        let all = ["loadgen", "fanout"].iter().chain(args);
        match crate::Opts::try_parse_from(all)?.command {
            crate::Command::Fanout(o) => Ok(o),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn publishes_from_a_deliveries_target() {
        assert_eq!(publishes_per_publisher(None, 100_000, 1, 100), 100_000);
        assert_eq!(publishes_per_publisher(Some(20_000), 7, 1, 50), 400);
        assert_eq!(publishes_per_publisher(Some(2_000_000), 7, 1, 10_000), 200);
        assert_eq!(publishes_per_publisher(Some(60_000), 7, 2, 3), 10_000);
        // Rounded down, but never to nothing.
        assert_eq!(publishes_per_publisher(Some(1_000), 7, 1, 300), 3);
        assert_eq!(publishes_per_publisher(Some(10), 7, 2, 100), 1);
    }

    #[test]
    fn medians_per_count_in_ascending_order() {
        let rows = [
            row(10, 1, 300.0),
            row(10, 2, 100.0),
            row(10, 3, 200.0),
            row(1, 1, 50.0),
            row(1, 2, 40.0),
        ];
        let m = medians(&rows);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].subscribers, m[0].runs), (1, 2));
        // The upper middle of an even count, as the single-count output always printed.
        assert_eq!(m[0].deliveries_per_sec, 50.0);
        assert_eq!((m[1].subscribers, m[1].runs), (10, 3));
        assert_eq!(m[1].deliveries_per_sec, 200.0);
        assert_eq!(m[1].publishes_per_sec, 20.0);
        assert_eq!(m[1].deliveries, 10_000);
        assert!(medians(&[]).is_empty());
        assert_eq!(median([]), None);
    }

    #[test]
    fn a_row_per_run() {
        let spec = Spec {
            publishers: 2,
            subscribers: 10,
            channels: 1,
            publishes: 500,
            size: 64,
            window: 5_000,
        };
        let r = Run {
            deliveries: 10_000,
            elapsed: Duration::from_micros(3_000_001),
        };
        let row = RunRow::new(&spec, 2, &r);
        assert_eq!((row.subscribers, row.run), (10, 2));
        assert_eq!((row.publishes, row.deliveries), (1_000, 10_000));
        assert_eq!(row.elapsed_s, 3.000001);
        assert_eq!(row.deliveries_per_sec, 3333.3);
        assert_eq!(row.publishes_per_sec, 333.3);
    }

    #[test]
    fn subscriber_lists() {
        let o = fanout_opts(&[]).unwrap();
        assert_eq!(o.subscribers, [100]);
        assert_eq!(o.spec(100).publishes, 100_000);
        let o = fanout_opts(&["--subscribers", "1,10,100", "--deliveries", "1000"]).unwrap();
        assert_eq!(o.subscribers, [1, 10, 100]);
        assert_eq!(o.spec(10).publishes, 100);
        assert!(fanout_opts(&["--deliveries", "10", "--publishes", "10"]).is_err());
        assert!(check_counts(&[1, 10]).is_ok());
        assert!(check_counts(&[]).is_err());
        assert!(check_counts(&[1, 0]).is_err());
        assert!(check_counts(&[10, 1, 10]).is_err());
    }

    #[test]
    fn summary_has_a_row_per_count_and_the_command() {
        let rows = [row(1, 1, 2_500_000.0), row(1000, 1, 4_000_000.0)];
        let md = summary_markdown("1 publisher", &medians(&rows), "loadgen fanout --x");
        assert!(
            md.contains("| 1 | 1 | 1,000 | 1,000 | 2,500,000 | 2,500,000 |"),
            "{md}"
        );
        assert!(
            md.contains("| 1000 | 1 | 1,000 | 1,000,000 | 4,000,000 | 4,000 |"),
            "{md}"
        );
        assert!(md.contains("```\nloadgen fanout --x\n```"), "{md}");
        assert_eq!(grouped(2_000_000), "2,000,000");
        assert_eq!(grouped(20_000), "20,000");
        assert_eq!(grouped(999), "999");
        assert_eq!(plural(1, "run"), "1 run");
        assert_eq!(plural(3, "run"), "3 runs");
        let text = medians_text(&medians(&rows));
        assert_eq!(text.lines().count(), 4, "{text}");
    }
}
