//! Fan-out of one publish to 1, 100 and 10,000 subscribers, at two levels:
//!
//! - `fanout/registry`: in memory. [`Registry::publish`] encodes the MESSAGE once and queues
//!   it on every subscriber's [`Outbox`]. Only the publishes are timed; the outboxes are
//!   drained between timed batches, as connection tasks would, so none overflows.
//! - `fanout/tcp`: end to end over loopback TCP. One iteration is one PUBLISH sent and every
//!   one of the N subscribers having read its MESSAGE line. `in_process` runs the broker on
//!   the bench's own runtime (`hubbub::start`); `child_process` runs it in a child process
//!   (this executable again), which halves the descriptors each process needs, so that
//!   N = 10,000 fits under a hard open-files limit of 20,000. Cases that do not fit the
//!   limit are skipped with a note on stderr.
//!
//! Throughput is `Elements(N)`, so criterion reports deliveries per second.

use std::collections::VecDeque;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use hubbub::client::{Client, Sender};
use hubbub::launch::BrokerProcess;
use hubbub::outbox::Outbox;
use hubbub::registry::Registry;
use hubbub::{Config, RunningBroker, Stats};
use serde_json::value::RawValue;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinSet;

const AUDIENCES: [usize; 3] = [1, 100, 10_000];
const CHANNEL: &str = "bench";
/// The published message: a small JSON object, as a chat line or a tick would be.
const MESSAGE: &str = r#"{"seq":1,"text":"hello, subscribers"}"#;

// ---------------------------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------------------------

/// Frames left queued over all outboxes before a drain (each a 32-byte `Bytes` handle to the
/// one shared frame): bounds the bench's memory whatever N is.
const QUEUED_FRAMES: usize = 1 << 20;
/// Most publishes in one timed batch.
const MAX_BATCH: usize = 1024;

struct Audience {
    registry: Registry,
    outboxes: Vec<Arc<Outbox>>,
    /// Reused by [`Audience::drain`].
    scratch: VecDeque<Bytes>,
}

impl Audience {
    fn new(n: usize) -> Self {
        let registry = Registry::new(Arc::new(Stats::default()));
        let outboxes: Vec<_> = (0..n)
            .map(|id| {
                let outbox = Arc::new(Outbox::new(Config::default().max_pending));
                assert!(registry.subscribe(CHANNEL, id as u64, &outbox));
                outbox
            })
            .collect();
        Self {
            registry,
            outboxes,
            scratch: VecDeque::new(),
        }
    }

    /// Does what each connection task does after a wake-up: takes every queued frame and
    /// reports it written.
    fn drain(&mut self) {
        for outbox in &self.outboxes {
            outbox.take(&mut self.scratch);
            let bytes = self.scratch.drain(..).map(|f| f.len()).sum();
            outbox.written(bytes, false);
        }
    }
}

fn registry_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout/registry");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for n in AUDIENCES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut audience = Audience::new(n);
            assert_eq!(audience.registry.publish(CHANNEL, MESSAGE).deliveries, n);
            audience.drain();
            let batch = (QUEUED_FRAMES / n).clamp(1, MAX_BATCH) as u64;
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let now = left.min(batch);
                    let start = Instant::now();
                    for _ in 0..now {
                        black_box(audience.registry.publish(CHANNEL, black_box(MESSAGE)));
                    }
                    timed += start.elapsed();
                    audience.drain();
                    left -= now;
                }
                timed
            });
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// End to end over loopback TCP
// ---------------------------------------------------------------------------------------------

/// Descriptors a process needs besides its sockets (stdio, epoll, the listener...).
const SPARE_FDS: u64 = 256;
/// Connections opened at once while setting up; more would overflow the listen backlog
/// (`somaxconn`), and lost SYNs are retried only after a second.
const CONNECT_BATCH: usize = 256;
/// Set in the environment of this same executable re-run as a broker child process.
const CHILD_BROKER_ENV: &str = "HUBBUB_BENCH_CHILD_BROKER";

/// Where the broker under test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// On the bench's own tokio runtime (`hubbub::start`): every subscriber costs this process
    /// two descriptors, its own socket and the broker's end.
    InProcess,
    /// In a child process (this executable re-run with [`CHILD_BROKER_ENV`]), so each process
    /// holds one descriptor per subscriber. This is what makes N = 10,000 possible where the
    /// hard open-files limit is under 20,000 and cannot be raised (no CAP_SYS_RESOURCE).
    ChildProcess,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::InProcess => "in_process",
            Placement::ChildProcess => "child_process",
        }
    }

    /// Descriptors the bench process needs for `n` subscribers.
    fn open_files(self, n: usize) -> u64 {
        let per_subscriber = match self {
            Placement::InProcess => 2,
            Placement::ChildProcess => 1,
        };
        per_subscriber * n as u64 + SPARE_FDS
    }
}

/// The broker as a child process: this executable re-run with [`CHILD_BROKER_ENV`] as the
/// `broker` program, started the project's one way ([`hubbub::launch`]), which also sees that
/// it cannot outlive the bench.
fn spawn_child_broker() -> BrokerProcess {
    let exe = std::env::current_exe().expect("path of the bench executable");
    let mut command = Command::new(exe);
    command
        .env(CHILD_BROKER_ENV, "1")
        .args(["--listen", "127.0.0.1:0", "--stats-interval", "0s"]);
    BrokerProcess::start(command).unwrap_or_else(|e| panic!("{e}"))
}

/// The body of the child process: the `broker` program, with the arguments it was given.
fn serve_as_child_broker() {
    let opts = hubbub::tools::broker::Opts::parse();
    let runtime = hubbub::tools::broker::runtime(opts.threads).expect("tokio runtime");
    runtime
        .block_on(hubbub::tools::broker::run(opts))
        .expect("the broker runs");
}

fn bench_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        stats_interval: Duration::ZERO,
        ..Default::default()
    }
}

enum BrokerHandle {
    InProcess(RunningBroker),
    Child(BrokerProcess),
}

/// A broker with N subscribers reading on their own tasks, and one publisher.
struct Loopback {
    broker: BrokerHandle,
    publisher: Sender,
    /// Subscribers yet to receive the message in flight.
    waiting: Arc<AtomicUsize>,
    /// Signalled by the subscriber that takes `waiting` to zero.
    all_received: Arc<Notify>,
    readers: JoinSet<()>,
    n: usize,
}

impl Loopback {
    async fn start(placement: Placement, n: usize) -> Self {
        let broker = match placement {
            Placement::InProcess => BrokerHandle::InProcess(
                hubbub::start(bench_config())
                    .await
                    .expect("start the broker"),
            ),
            Placement::ChildProcess => BrokerHandle::Child(spawn_child_broker()),
        };
        let addr = match &broker {
            BrokerHandle::InProcess(b) => b.addr,
            BrokerHandle::Child(c) => c.addr,
        };
        let waiting = Arc::new(AtomicUsize::new(0));
        let all_received = Arc::new(Notify::new());
        let mut readers = JoinSet::new();
        let mut left = n;
        while left > 0 {
            let mut connecting = JoinSet::new();
            for _ in 0..left.min(CONNECT_BATCH) {
                connecting.spawn(async move {
                    let mut client = Client::connect(addr).await.expect("connect a subscriber");
                    client.subscribe_and_wait(CHANNEL).await.expect("subscribe");
                    client
                });
            }
            while let Some(client) = connecting.join_next().await {
                let (sender, mut receiver) = client.expect("subscriber task").split();
                let (waiting, all_received) = (waiting.clone(), all_received.clone());
                readers.spawn(async move {
                    // Reading whole lines is the least any client must do to see a message;
                    // full JSON parsing would measure the client more than the broker.
                    while let Ok(line) = receiver.next_line().await {
                        if line.starts_with(br#"{"type":"MESSAGE""#)
                            && waiting.fetch_sub(1, Ordering::AcqRel) == 1
                        {
                            all_received.notify_one();
                        }
                    }
                    // Held until here: dropping the write half would half-close the socket.
                    drop(sender);
                });
                left -= 1;
            }
        }
        let (publisher, _) = Client::connect(addr)
            .await
            .expect("connect the publisher")
            .split();
        Self {
            broker,
            publisher,
            waiting,
            all_received,
            readers,
            n,
        }
    }

    /// Publishes one message and waits until every subscriber has read it.
    async fn round_trip(&mut self, message: &RawValue) {
        self.waiting.store(self.n, Ordering::Release);
        self.publisher
            .publish_raw(CHANNEL, message)
            .await
            .expect("publish");
        self.all_received.notified().await;
    }

    async fn stop(mut self) {
        self.readers.shutdown().await;
        match self.broker {
            BrokerHandle::InProcess(broker) => broker.stop().await,
            // Closes its stdin and reaps it.
            BrokerHandle::Child(child) => drop(child),
        }
    }
}

/// Raises the open-files limit to at least `needed`: first the soft limit up to the hard one,
/// then (where the process may, e.g. as root with CAP_SYS_RESOURCE) the hard limit too.
/// Returns the limit now in force.
fn raise_open_files(needed: u64) -> u64 {
    let soft = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if soft >= needed {
        return soft;
    }
    match rlimit::Resource::NOFILE.set(needed, needed) {
        Ok(()) => needed,
        Err(_) => soft,
    }
}

fn tcp_fanout(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let message = RawValue::from_string(MESSAGE.to_string()).expect("valid JSON");
    let mut group = c.benchmark_group("fanout/tcp");
    // An iteration takes up to tens of milliseconds at N = 10,000: flat sampling keeps the
    // iteration count, and so the run time, small and predictable.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for placement in [Placement::InProcess, Placement::ChildProcess] {
        for n in AUDIENCES {
            let id = BenchmarkId::new(placement.name(), n);
            let needed = placement.open_files(n);
            let available = raise_open_files(needed);
            if available < needed {
                eprintln!(
                    "fanout/tcp/{}/{n}: skipped: it needs {needed} open files and the limit is \
                     {available}",
                    placement.name()
                );
                continue;
            }
            group.throughput(Throughput::Elements(n as u64));
            // Built on first use, so a filtered-out case opens no connections.
            let mut loopback = None;
            group.bench_with_input(id, &n, |b, &n| {
                let lb = loopback.get_or_insert_with(|| rt.block_on(Loopback::start(placement, n)));
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            lb.round_trip(&message).await;
                        }
                        start.elapsed()
                    })
                });
            });
            if let Some(lb) = loopback {
                rt.block_on(lb.stop());
            }
        }
    }
    group.finish();
}

criterion_group!(fanout, registry_fanout, tcp_fanout);

fn main() {
    if std::env::var_os(CHILD_BROKER_ENV).is_some() {
        return serve_as_child_broker();
    }
    fanout();
    Criterion::default().configure_from_args().final_summary();
}
