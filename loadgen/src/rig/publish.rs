//! Open-loop publishers: messages go out on a fixed schedule, whatever the broker does.
//!
//! Message `n` (counting over all publishers) is due at `start + n / rate` and goes to channel
//! `n % channels` from publisher `n % publishers`. Publishers may be split over several
//! processes (agents' workers, `--agents`): each set knows its publishers' global indices. A publisher wakes, writes every message that
//! is due in one write, and sleeps until the next is due; if the broker pushes back, messages
//! go out late, and their latency is still measured from when they were due.
//!
//! Each publisher is an OS thread with a blocking socket, not a tokio task: tokio's timer
//! ticks in whole milliseconds, so a task-based publisher sends up to a millisecond late and
//! every broker would show at least that much latency. `nanosleep` wakes within tens of
//! microseconds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use tokio_util::sync::CancellationToken;

use super::control::{FromWorker, ToWorker};
use super::plan::channel_name;
use super::progress::say;
pub use super::schedule::Schedule;
use crate::proto::blocking::Blocking;
use crate::proto::dial::Dial;
use crate::proto::inbound::Inbound;
use crate::proto::{socket, Proto};
use crate::rig::stamp;

/// One publisher's socket. The lock is held for every write: the publisher's batches and the
/// replies its reader thread owes the server (NATS PONG) must not interleave.
struct Conn {
    stream: Blocking,
    writing: Arc<Mutex<()>>,
}

/// Connected publishers, reused for every step.
pub struct Publishers {
    proto: Proto,
    conns: Vec<Conn>,
}

/// What a hold published in its counted window, per channel.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub per_channel: Vec<u64>,
}

impl Published {
    pub fn total(&self) -> u64 {
        self.per_channel.iter().sum()
    }

    /// Adds another set of publishers' counts, channel by channel.
    pub fn add(&mut self, per_channel: &[u64]) {
        for (sum, n) in self.per_channel.iter_mut().zip(per_channel) {
            *sum += n;
        }
    }
}

impl Publishers {
    /// No publishers (a coordinator whose publishers run on its agents).
    pub fn none(proto: Proto) -> Self {
        Self {
            proto,
            conns: Vec::new(),
        }
    }

    /// How many are connected.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connects `count` publishers speaking `dial`'s protocol (over TLS when it has it),
    /// spread over `targets`; connecting and each step of the session's setup may take
    /// `limit` (`--connect-timeout`).
    pub async fn connect(
        targets: &[SocketAddr],
        count: usize,
        dial: impl Into<Dial>,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let dial = dial.into();
        let proto = dial.proto;
        let mut conns = Vec::with_capacity(count);
        for i in 0..count {
            let target = targets[i % targets.len()];
            let tcp = socket::connect_within(target, limit, socket::connect(target))
                .await
                .with_context(|| {
                    format!("publisher {i}: connect to the {proto} server at {target}")
                })?;
            let client_id = format!("loadgen-{}-publisher-{i}", std::process::id());
            let (mut stream, pending) = dial
                .open(tcp, limit, &client_id)
                .await
                .with_context(|| format!("publisher {i}: open the {proto} session"))?;
            let pending = proto
                .within(limit)
                .greet(&mut stream, pending)
                .await
                .with_context(|| format!("publisher {i}: greet the {proto} server"))?;
            let stream = Blocking::from_stream(stream)?;
            let writing = Arc::new(Mutex::new(()));
            // Publishers get few replies (Redis counts, NATS PINGs, ERRORs), but they must be
            // read, and some answered, or the server stalls or drops the connection.
            let (reader, replier) = (stream.try_clone()?, stream.try_clone()?);
            let lock = writing.clone();
            std::thread::spawn(move || {
                read_replies(i, target, proto, pending, reader, replier, &lock)
            });
            conns.push(Conn { stream, writing });
        }
        Ok(Self { proto, conns })
    }

    /// Publishes on `schedule`, or until `stop` is cancelled.
    pub async fn publish(
        &mut self,
        schedule: Schedule,
        stop: &CancellationToken,
    ) -> anyhow::Result<Published> {
        if self.conns.is_empty() {
            // None here: nothing to send, but the hold still lasts the schedule.
            let end = schedule.due(schedule.total);
            let now = stamp::now_ns();
            tokio::time::sleep(Duration::from_nanos(end.saturating_sub(now))).await;
            return Ok(Published {
                per_channel: vec![0; schedule.channels as usize],
            });
        }
        let conns = std::mem::take(&mut self.conns);
        let (proto, stop) = (self.proto, stop.clone());
        let (conns, published) =
            tokio::task::spawn_blocking(move || publish_blocking(proto, conns, &schedule, &stop))
                .await?;
        self.conns = conns;
        Ok(published)
    }
}

/// A worker's `Publishers` request (`--agents`): connects them, and says how many did, or
/// why not.
pub async fn connect_for(op: ToWorker) -> (Option<Publishers>, FromWorker) {
    let ToWorker::Publishers {
        count,
        targets,
        proto,
        tls,
        auth,
        timeout_ms,
    } = op
    else {
        unreachable!("called with Publishers")
    };
    let limit = Duration::from_millis(timeout_ms);
    let connected = match tls.client() {
        Ok(tls) => {
            let dial = Dial::new(proto, tls).with_auth(*auth);
            Publishers::connect(&targets, count, dial, limit).await
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    match connected {
        Ok(p) => {
            let connected = p.len();
            (
                Some(p),
                FromWorker::PublishersReady {
                    connected,
                    error: None,
                },
            )
        }
        Err(e) => (
            None,
            FromWorker::PublishersReady {
                connected: 0,
                error: Some(format!("{e:#}")),
            },
        ),
    }
}

/// A worker's `Publish` request: its publishers' share of `schedule`, then what they sent in
/// the counted window. Stopped only by the worker's exit: the coordinator ends a hold early
/// only when the whole run ends.
pub async fn run_for(mut set: Publishers, schedule: Schedule) -> (Option<Publishers>, FromWorker) {
    let never = CancellationToken::new();
    let per_channel = match set.publish(schedule, &never).await {
        Ok(p) => p.per_channel,
        Err(e) => {
            eprintln!("loadgen worker: publishing failed: {e:#}");
            vec![0; schedule.channels as usize]
        }
    };
    (Some(set), FromWorker::Published { per_channel })
}

/// A publisher's reader thread: reads what the server sends and answers what the protocol
/// requires, until the connection ends. What cannot be parsed past (bytes that are not the
/// protocol, an error reply) ends the reading, and is said: a publisher whose server
/// objects must not go on unnoticed. Its writing goes on, as what it sends counts as
/// published, and anything the broker then drops shows as lost.
fn read_replies(
    i: usize,
    target: SocketAddr,
    proto: Proto,
    pending: Vec<u8>,
    mut reader: Blocking,
    mut replier: Blocking,
    lock: &Mutex<()>,
) {
    let mut inbound = Inbound::new(proto, pending);
    loop {
        match inbound.parse(&mut ()) {
            Ok(reply) if !reply.is_empty() => {
                let _guard = lock.lock().expect("publisher write lock");
                if replier.write_all(reply).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                say(&format!(
                    "publisher {i} reads no more: {} server at {target} {}",
                    e.proto(),
                    e.deed()
                ));
                return;
            }
        }
        inbound.clear_reply();
        if !matches!(inbound.read_blocking(&mut reader), Ok(true)) {
            return;
        }
    }
}

/// Runs every publisher on its own thread until the hold is over; returns the publishers
/// that are still connected, and what was published.
fn publish_blocking(
    proto: Proto,
    conns: Vec<Conn>,
    schedule: &Schedule,
    stop: &CancellationToken,
) -> (Vec<Conn>, Published) {
    let (first, count) = schedule.publishers.unwrap_or((0, conns.len() as u64));
    let &Schedule {
        total,
        counted: (from, to),
        channels,
        size,
        ..
    } = schedule;
    let due = |n: u64| schedule.due(n);
    let names: Vec<String> = (0..channels).map(channel_name).collect();
    let names = &names;
    let results: Vec<(Option<Conn>, Vec<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(p, mut conn)| {
                scope.spawn(move || {
                    let mut per_channel = vec![0u64; channels as usize];
                    let mut n = first + p as u64;
                    let mut batch = Vec::new();
                    let mut batch_channels = Vec::new();
                    while n < total && !stop.is_cancelled() {
                        let now = stamp::now_ns();
                        if due(n) > now {
                            // At most a tenth of a second, so that `stop` is seen in time.
                            let wait = Duration::from_nanos(due(n) - now);
                            std::thread::sleep(wait.min(Duration::from_millis(100)));
                            continue;
                        }
                        let now = stamp::now_ns();
                        batch.clear();
                        batch_channels.clear();
                        while n < total && due(n) <= now {
                            let channel = (n % channels) as usize;
                            let payload = stamp::payload(due(n), n, size);
                            proto.encode_publish(&mut batch, &names[channel], &payload);
                            if (from..to).contains(&due(n)) {
                                batch_channels.push(channel);
                            }
                            n += count;
                        }
                        let written = {
                            let _guard = conn.writing.lock().expect("publisher write lock");
                            conn.stream.write_all(&batch)
                        };
                        if written.is_err() {
                            // The broker is gone or cut this publisher off: what was not
                            // written was not published, and it drops out of later steps.
                            return (None, per_channel);
                        }
                        for &c in &batch_channels {
                            per_channel[c] += 1;
                        }
                    }
                    (Some(conn), per_channel)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("publisher thread"))
            .collect()
    });
    let mut published = Published {
        per_channel: vec![0; channels as usize],
    };
    let mut alive = Vec::new();
    for (conn, per_channel) in results {
        published.add(&per_channel);
        alive.extend(conn);
    }
    (alive, published)
}
