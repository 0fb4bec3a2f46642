//! One fan-out run, driven at steady state: subscribers of every channel, publishers sending
//! as fast as the window lets them (at most `window` messages ahead of the slowest subscriber),
//! a warm-up that is not counted, then the deliveries counted second by second over the
//! measured window while every thread of the broker and of loadgen is timed, to say what set
//! the rate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::model::fanout::{Run, Spec};
use crate::proto::dial::Dial;
use crate::proto::inbound::{Deliveries, Inbound};
use crate::proto::stream::Stream;
use crate::proto::{socket, Proto};
use crate::scenario::counted;

/// Publishes per write: the publishers pipeline, as real high-rate publishers do.
const BATCH: u64 = 100;

/// One run on fresh channels, `fanout-{tag}-{c}` (and MQTT client ids
/// `fanout-{tag}-{sub|pub}-{n}`): `tag` must differ between runs that may overlap on one
/// broker. `broker_pid`, when known, is timed with loadgen to classify the bottleneck. `dial`
/// is the protocol, with TLS or without. Every connection is closed when this returns, whether
/// it succeeds or not.
pub async fn measure(
    addr: SocketAddr,
    broker_pid: Option<u32>,
    dial: impl Into<Dial>,
    spec: &Spec,
    tag: &str,
) -> anyhow::Result<Run> {
    let dial = dial.into();
    if spec.publishers == 0 || spec.subscribers == 0 || spec.channels == 0 {
        bail!("a fan-out needs at least one publisher, subscriber and channel");
    }
    let counts = Arc::new(Counts {
        sent: AtomicU64::new(0),
        received: (0..spec.subscribers).map(|_| AtomicU64::new(0)).collect(),
        waiting: AtomicUsize::new(0),
        moved: Notify::new(),
    });
    let mut tasks = JoinSet::new();
    let outcome = run(addr, broker_pid, &dial, spec, tag, &counts, &mut tasks).await;
    // Aborts every connection's task and waits for them, so their sockets are closed.
    tasks.shutdown().await;
    outcome
}

/// What the connections' tasks share: how much has been sent, and how much each subscriber
/// has received; and how a publisher held back by the window learns that a subscriber moved.
///
/// Woken, not polled: a publisher that slept to look again would sleep at least a
/// millisecond (tokio's timer), and with the window a millisecond's worth of messages or
/// less, that sleep, not the broker, would set the rate.
struct Counts {
    sent: AtomicU64,
    received: Box<[AtomicU64]>,
    /// Publishers waiting for room; subscribers notify only while there are any.
    waiting: AtomicUsize,
    moved: Notify,
}

impl Counts {
    fn received(&self) -> u64 {
        self.received.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn slowest(&self) -> u64 {
        // SeqCst with the subscribers' adds and `waiting`: a publisher that registers as
        // waiting and then finds no room is sure to be woken by the next add.
        self.received
            .iter()
            .map(|c| c.load(SeqCst))
            .min()
            .unwrap_or(0)
    }

    /// How many more messages the publishers may send: they stay at most `window` ahead of
    /// the slowest subscriber (publishers that look at once may pass it by a batch each).
    fn room(&self, window: u64) -> u64 {
        window.saturating_sub(self.sent.load(Relaxed).saturating_sub(self.slowest()))
    }
}

/// Connects everyone, publishes through the warm-up and the measured window, and counts;
/// every connection's task goes into `tasks`, which the caller shuts down.
async fn run(
    addr: SocketAddr,
    broker_pid: Option<u32>,
    dial: &Dial,
    spec: &Spec,
    tag: &str,
    counts: &Arc<Counts>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Run> {
    let channels: Vec<String> = (0..spec.channels)
        .map(|c| format!("fanout-{tag}-{c}"))
        .collect();
    let proto = dial.proto;
    for i in 0..spec.subscribers {
        let id = format!("fanout-{tag}-sub-{i}");
        let (mut stream, mut early) = open(addr, dial, &id).await?;
        for channel in &channels {
            early = proto
                .subscribe(&mut stream, channel, early)
                .await
                .with_context(|| format!("{id}: subscribe to {channel}"))?;
        }
        tasks.spawn(subscriber(proto, stream, early, counts.clone(), i));
    }
    for p in 0..spec.publishers {
        let id = format!("fanout-{tag}-pub-{p}");
        let (stream, early) = open(addr, dial, &id).await?;
        let mut one = Vec::new();
        proto.encode_publish(
            &mut one,
            &channels[p % spec.channels],
            &vec![b'x'; spec.size],
        );
        let publisher = Publisher {
            proto,
            frames: Frames::new(one),
            window: spec.window,
            counts: counts.clone(),
        };
        tasks.spawn(publisher.run(stream, early));
    }

    let span = (spec.warmup, spec.duration);
    counted::window(broker_pid, span, "deliveries", tasks, || counts.received()).await
}

/// Connects and opens the session (over TLS when `dial` has it).
async fn open(addr: SocketAddr, dial: &Dial, id: &str) -> anyhow::Result<(Stream, Vec<u8>)> {
    let proto = dial.proto;
    let tcp = socket::connect(addr)
        .await
        .with_context(|| format!("{id}: connect to the {proto} broker at {addr}"))?;
    dial.open_default(tcp, id)
        .await
        .with_context(|| format!("{id}: open the {proto} session"))
}

/// A subscriber's deliveries, counted into its slot of [`Counts`] once per read (the
/// publishers read every slot to keep their window: one atomic add per read, not per
/// message).
struct Counted<'a> {
    got: u64,
    counts: &'a Counts,
    index: usize,
}

impl Deliveries for Counted<'_> {
    fn payload(&mut self, _: &[u8]) {
        self.got += 1;
    }

    fn read_done(&mut self) {
        let got = std::mem::take(&mut self.got);
        if got == 0 {
            return;
        }
        self.counts.received[self.index].fetch_add(got, SeqCst);
        if self.counts.waiting.load(SeqCst) > 0 {
            self.counts.moved.notify_waiters();
        }
    }
}

/// Counts one subscriber's messages (starting with `early`, read while it subscribed) into
/// `counts.received[index]`, answering what the protocol requires; runs until aborted.
async fn subscriber(
    proto: Proto,
    mut stream: Stream,
    early: Vec<u8>,
    counts: Arc<Counts>,
    index: usize,
) -> anyhow::Result<()> {
    let slot = &counts.received[index];
    let mut counted = Counted {
        got: 0,
        counts: &counts,
        index,
    };
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
    window: u64,
    counts: Arc<Counts>,
}

impl Publisher {
    /// Writes messages in batches while the window is open, and meanwhile reads
    /// its own connection: Redis answers every PUBLISH, NATS may PING, and unread replies
    /// would back up until the broker stops reading the publisher. One task does both with
    /// cancel-safe `read_buf` and `write` (a write that loses the race writes nothing), so a
    /// reply is never stuck behind a blocked batch. Runs until aborted.
    ///
    /// Over TLS a write may leave records in the session's buffer (the socket was full), so
    /// once a batch is all written the connection is flushed before the publisher waits;
    /// plain TCP has nothing to flush and skips that.
    async fn run(self, stream: Stream, early: Vec<u8>) -> anyhow::Result<()> {
        let (mut rd, mut wr) = stream.into_split();
        let buffers = wr.buffers();
        let mut inbound = Inbound::new(self.proto, early);
        let (mut out, mut at) = (Vec::new(), 0);
        let mut sent = 0;
        let mut flushed = true;
        loop {
            inbound.parse(&mut ()).context("publisher")?;
            if at == out.len() {
                out.clear();
                at = 0;
                inbound.take_reply(&mut out);
                let room = self.counts.room(self.window);
                if room > 0 {
                    let n = BATCH.min(room);
                    out.extend_from_slice(self.frames.first(n));
                    sent += n;
                    self.counts.sent.fetch_add(n, Relaxed);
                }
            }
            let held_back = at == out.len();
            let moved = self.counts.moved.notified();
            tokio::pin!(moved);
            let _waiting = held_back.then(|| {
                moved.as_mut().enable();
                Waiting::on(&self.counts.waiting)
            });
            if held_back && self.counts.room(self.window) > 0 {
                continue; // a subscriber moved before this publisher was registered
            }
            tokio::select! {
                read = inbound.read_from(&mut rd) => {
                    if !read? {
                        bail!("the broker closed a publisher after {sent} publishes");
                    }
                }
                // One branch for both, as both need the writing half: the rest of the batch,
                // or, with all of it written, the flush.
                wrote = async {
                    match at < out.len() {
                        true => wr.write(&out[at..]).await.map(Some),
                        false => wr.flush().await.map(|()| None),
                    }
                }, if at < out.len() || !flushed => match wrote? {
                    Some(0) => bail!("a publisher's connection accepts no more bytes"),
                    Some(n) => {
                        at += n;
                        flushed = !buffers;
                    }
                    None => flushed = true,
                },
                () = &mut moved, if held_back => {}
            }
        }
    }
}

/// A publisher counted in `waiting` for as long as this lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn on(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}
