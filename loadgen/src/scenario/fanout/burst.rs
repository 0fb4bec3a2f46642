//! One burst, driven: subscribers of every channel, publishers flow-controlled against the
//! slowest of them, and the deliveries per second from the first publish to the last delivery.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::model::fanout::{Run, Spec};
use crate::proto::inbound::{Deliveries, Inbound};
use crate::proto::{socket, Proto};

/// Publishes per write: the publishers pipeline, as real high-rate publishers do.
const BATCH: u64 = 100;
/// Longest the slowest subscriber may go without a delivery while it still misses some: the
/// publishers wait for it, so a lost message would otherwise stall the run for ever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a publisher held back by the window, and the run waiting for its last
/// deliveries, look at the subscribers' counts again.
const POLL: Duration = Duration::from_micros(200);

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

/// A subscriber's deliveries, counted into its slot of [`Counts`] once per read (the
/// publishers read every slot to keep their window: one atomic add per read, not per
/// message).
struct Counted<'a> {
    got: u64,
    into: &'a AtomicU64,
}

impl Deliveries for Counted<'_> {
    fn payload(&mut self, _: &[u8]) {
        self.got += 1;
    }

    fn read_done(&mut self) {
        self.into.fetch_add(std::mem::take(&mut self.got), Relaxed);
    }
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
    let slot = &counts.received[index];
    let mut counted = Counted { got: 0, into: slot };
    let why = Inbound::new(proto, early)
        .serve(&mut stream, &mut counted)
        .await;
    bail!(
        "subscriber {index} stopped after {} messages: {why}",
        slot.load(Relaxed)
    )
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
        let mut inbound = Inbound::new(self.proto, early);
        let (mut out, mut at) = (Vec::new(), 0);
        let mut sent = 0;
        loop {
            inbound.parse(&mut ()).context("publisher")?;
            if at == out.len() {
                out.clear();
                at = 0;
                inbound.take_reply(&mut out);
                if sent < self.publishes && self.counts.window_open(self.window) {
                    let n = BATCH.min(self.publishes - sent);
                    out.extend_from_slice(self.frames.first(n));
                    sent += n;
                    self.counts.sent.fetch_add(n, Relaxed);
                }
            }
            let held_back = at == out.len() && sent < self.publishes;
            tokio::select! {
                read = inbound.read_from(&mut rd) => {
                    if !read? {
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
