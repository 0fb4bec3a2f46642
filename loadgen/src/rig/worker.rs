//! A worker process: holds simulated subscribers for the coordinator.
//!
//! One process can hold only as many sockets as its open-files hard limit allows, so a large
//! ramp runs several workers. Each is single-threaded (a current-thread runtime): its
//! subscribers record into one histogram with no locks, and parallelism comes from running
//! several workers. It obeys [`ToWorker`] lines on stdin and exits when stdin closes, so a
//! worker never outlives its coordinator. Its [`Progress`] goes ten times a second, connecting too.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::control::{FromWorker, Progress, ToWorker, PROGRESS_EVERY};
use super::held::Held;
use super::plan::{self, channel_name};
use super::publish::{self, Publishers};
use super::stamp;
use crate::model::histogram::{new_histogram, HistData};
use crate::model::ErrorCounts;
use crate::os::procfs;
use crate::proto::dial::Dial;
use crate::proto::inbound::{Deliveries, Inbound};
use crate::proto::stream::Stream;
use crate::proto::{socket, Proto, ProtoError};

/// What all of this worker's subscribers record into.
struct Tally {
    /// Deliveries stamped within the measured window.
    delivered: Cell<u64>,
    /// Every delivery since the worker started: the live rate's.
    delivered_total: Cell<u64>,
    late: Cell<u64>,
    slo_us: Cell<u64>,
    latency: RefCell<Histogram<u64>>,
    /// The measured window (`Measure`): stamps outside it are not counted.
    window: Cell<(u64, u64)>,
    /// One histogram per second of the window.
    intervals: RefCell<Vec<Histogram<u64>>>,
    /// Whether the report closing the current window was sent (and logged).
    window_reported: Cell<bool>,
    /// On an agent's host (sent the coordinator's clock): each window is logged, for its log.
    on_agent: Cell<bool>,
    /// Connections lost after they were established.
    lost: RefCell<ErrorCounts>,
    clients: Cell<u64>,
    /// Of the `Connect` in progress.
    connected: Cell<u64>,
    connect_failed: Cell<u64>,
}

/// Runs the worker until told to exit or its stdin closes.
///
/// `max_files` sets the worker's own open-files soft limit: the coordinator sizes each worker
/// to hold `--per-process` clients, and a worker that was handed more than that fails loudly
/// with EMFILE instead of quietly exceeding the split it was given.
pub fn run(max_files: Option<u64>) -> anyhow::Result<()> {
    match max_files {
        Some(n) => {
            let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
            rlimit::setrlimit(rlimit::Resource::NOFILE, n.min(hard), hard)?;
        }
        None => {
            let _ = rlimit::increase_nofile_limit(u64::MAX);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, serve());
    // The stdin reader sits in the blocking pool; do not wait for it on the way out.
    runtime.shutdown_background();
    result
}

fn send(msg: &FromWorker) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, msg)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let tally = Rc::new(Tally {
        delivered: Cell::new(0),
        delivered_total: Cell::new(0),
        late: Cell::new(0),
        slo_us: Cell::new(u64::MAX),
        latency: RefCell::new(new_histogram()),
        window: Cell::new((0, u64::MAX)),
        intervals: RefCell::new(Vec::new()),
        window_reported: Cell::new(true),
        on_agent: Cell::new(false),
        lost: RefCell::new(ErrorCounts::default()),
        clients: Cell::new(0),
        connected: Cell::new(0),
        connect_failed: Cell::new(0),
    });
    // Every plain-TCP subscriber is served from here; the protocol is set by the first
    // Connect (one run speaks one protocol).
    let mut held: Option<Rc<Held>> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let mut connecting: Option<JoinHandle<FromWorker>> = None;
    // This worker's publishers (`--agents`), and the task connecting or running them: they
    // are handed to it and back, one request at a time.
    let mut publishers: Option<Publishers> = None;
    let mut publishing: Option<JoinHandle<(Option<Publishers>, FromWorker)>> = None;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                match serde_json::from_str::<ToWorker>(&line)? {
                    ToWorker::Exit => return Ok(()),
                    ToWorker::Report => send(&report(&tally))?,
                    ToWorker::Clock { offset_ns } => {
                        stamp::set_offset(offset_ns);
                        tally.on_agent.set(true);
                    }
                    ToWorker::Measure { from_ns, to_ns } => {
                        report(&tally);
                        tally.window.set((from_ns, to_ns));
                        tally.window_reported.set(false);
                        let seconds = to_ns.saturating_sub(from_ns).div_ceil(1_000_000_000);
                        *tally.intervals.borrow_mut() =
                            (0..seconds).map(|_| new_histogram()).collect();
                    }
                    op @ ToWorker::Publishers { .. } => {
                        publishing = Some(tokio::task::spawn_local(publish::connect_for(op)));
                    }
                    ToWorker::Publish { schedule } => {
                        let set = publishers.take().unwrap_or_else(|| Publishers::none(Proto::Hubbub));
                        publishing = Some(tokio::task::spawn_local(publish::run_for(set, schedule)));
                    }
                    connect @ ToWorker::Connect { proto, .. } => {
                        tally.connected.set(0);
                        tally.connect_failed.set(0);
                        let held = match &held {
                            Some(set) => set.clone(),
                            None => held.insert(hold_set(proto, &tally)?).clone(),
                        };
                        let task = connect_many(connect, tally.clone(), held);
                        connecting = Some(tokio::task::spawn_local(task));
                    }
                }
            }
            done = async { publishing.as_mut().expect("checked").await }, if publishing.is_some() => {
                publishing = None;
                let (set, reply) = done?;
                publishers = set;
                send(&reply)?;
            }
            done = async { connecting.as_mut().expect("checked").await }, if connecting.is_some() => {
                connecting = None;
                // The counts stay as they ended (workers finish at different times) until
                // the next Connect starts afresh.
                send(&done?)?;
            }
            _ = tick.tick() => {
                let (own, machine) = (procfs::read_self_usage(), procfs::read_uptime());
                let (up, idle) = machine.unwrap_or_default();
                send(&FromWorker::Progress(Progress {
                    at_ns: stamp::now_ns(),
                    delivered_total: tally.delivered_total.get(),
                    clients: tally.clients.get(),
                    connected: tally.connected.get(),
                    connect_failed: tally.connect_failed.get(),
                    cpu_ns: own.map_or(0, |u| u.0),
                    rss_bytes: own.map_or(0, |u| u.1),
                    machine_up_ns: (up * 1e9) as u64,
                    machine_idle_ns: (idle * 1e9) as u64,
                    machine_cores: cores,
                }))?;
            }
        }
    }
}

/// The deliveries and losses since the last report; starts afresh.
fn report(tally: &Tally) -> FromWorker {
    let mut hist = tally.latency.borrow_mut();
    let mut intervals = tally.intervals.borrow_mut();
    let (delivered, late) = (tally.delivered.replace(0), tally.late.replace(0));
    if !tally.window_reported.replace(true) && tally.on_agent.get() {
        // What this worker measured of the window, in its own words on stderr (an agent's
        // log): what a distributed run's merged report must add up to.
        eprintln!(
            "loadgen worker {}: measured window {}: delivered {delivered} late {late} \
             latency_count {} latency_max_us {}",
            std::process::id(),
            tally.window.get().0,
            hist.len(),
            hist.max()
        );
    }
    let report = FromWorker::Report {
        delivered,
        late,
        latency_hist: HistData::from_histogram(&hist),
        intervals: intervals.iter().map(HistData::from_histogram).collect(),
        errors: std::mem::take(&mut *tally.lost.borrow_mut()),
        clients: tally.clients.get(),
    };
    hist.reset();
    intervals.iter_mut().for_each(Histogram::reset);
    report
}

/// The worker's set of held plain-TCP subscribers, and the task that serves it for as long
/// as the worker runs.
fn hold_set(proto: Proto, tally: &Rc<Tally>) -> io::Result<Rc<Held>> {
    let set = Rc::new(Held::new(proto)?);
    let (serving, tally) = (set.clone(), tally.clone());
    tokio::task::spawn_local(async move {
        let mut lost = |why: io::Error| {
            tally.clients.set(tally.clients.get() - 1);
            classify(&why, &mut tally.lost.borrow_mut());
        };
        if let Err(e) = serving.serve(&mut Timed(&tally), &mut lost).await {
            // The epoll set itself failed: nothing it holds can be read any more.
            eprintln!("loadgen worker: the held subscribers' epoll set failed: {e}");
            std::process::exit(1);
        }
    });
    Ok(set)
}

async fn connect_many(op: ToWorker, tally: Rc<Tally>, held: Rc<Held>) -> FromWorker {
    let ToWorker::Connect {
        first_index,
        count,
        targets,
        sources,
        channels,
        timeout_ms,
        concurrency,
        slo_us,
        proto,
        tls,
        auth,
        placement,
    } = op
    else {
        unreachable!("called with a Connect")
    };
    tally.slo_us.set(slo_us);
    // Loaded once per Connect; a file that cannot be used fails every subscriber, saying why.
    let dial = match tls.client() {
        Ok(tls) => Rc::new(Dial::new(proto, tls).with_auth(*auth)),
        Err(e) => return refused(count, &tally, &e),
    };
    let started = Instant::now();
    let permits = Rc::new(Semaphore::new(concurrency.max(1)));
    let timeout = Duration::from_millis(timeout_ms);
    let mut tasks = JoinSet::new();
    for n in first_index..first_index + count {
        let shape = (targets.len(), sources.len());
        let (channel, target, source) = plan::placement(n, channels, shape, placement);
        let (target, source) = (targets[target], sources[source]);
        let (permits, tally, dial) = (permits.clone(), tally.clone(), dial.clone());
        let held = held.clone();
        tasks.spawn_local(async move {
            let _permit = permits.acquire().await.expect("semaphore open");
            let t0 = Instant::now();
            // Unique per connection: an MQTT broker drops the older of two with one id.
            let client_id = format!("loadgen-{}-{n}", std::process::id());
            let opened = open(&dial, target, source, channel, &client_id, timeout);
            let result = tokio::time::timeout(timeout, opened).await;
            let took_us = t0.elapsed().as_micros() as u64;
            if let Ok(Ok((stream, early))) = result {
                tally.clients.set(tally.clients.get() + 1);
                tally.connected.set(tally.connected.get() + 1);
                match stream {
                    Stream::Plain(tcp) => hold(&held, tcp, &early, &tally),
                    tls => drop(tokio::task::spawn_local(subscriber(
                        proto, tls, early, tally,
                    ))),
                }
                return Ok((channel, took_us));
            }
            tally.connect_failed.set(tally.connect_failed.get() + 1);
            Err(match result {
                Ok(Err(e)) => {
                    // A session's error names its server already; a socket's does not.
                    let why = match ProtoError::found_in(&e) {
                        Some(_) => e.to_string(),
                        None => format!("{proto} server at {target}: {e}"),
                    };
                    (Some(e), why)
                }
                _ => (
                    None,
                    format!(
                        "{proto} server at {target} did not confirm a subscription within \
                         --connect-timeout {}",
                        humantime::format_duration(timeout)
                    ),
                ),
            })
        });
    }
    let mut errors = ErrorCounts::default();
    let mut hist = new_histogram();
    let mut per_channel = std::collections::BTreeMap::new();
    let mut ok = 0;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done.expect("connect task does not panic") {
            Ok((channel, took_us)) => {
                ok += 1;
                hist.saturating_record(took_us.max(1));
                *per_channel.entry(channel).or_insert(0) += 1;
            }
            Err((e, why)) => {
                match e {
                    Some(e) => classify(&e, &mut errors),
                    None => errors.timeout += 1,
                }
                first_error.get_or_insert(why);
            }
        }
    }
    FromWorker::Connected {
        ok,
        per_channel: per_channel.into_iter().collect(),
        errors,
        connect_hist: HistData::from_histogram(&hist),
        elapsed_ms: started.elapsed().as_millis() as u64,
        first_error,
    }
}

/// The reply to a Connect whose TLS files cannot be used: every one of its `count`
/// subscribers failed, for that reason.
fn refused(count: u64, tally: &Tally, e: &crate::proto::tls::TlsError) -> FromWorker {
    tally.connect_failed.set(tally.connect_failed.get() + count);
    FromWorker::Connected {
        ok: 0,
        per_channel: Vec::new(),
        errors: ErrorCounts {
            other: count,
            ..ErrorCounts::default()
        },
        connect_hist: HistData::from_histogram(&new_histogram()),
        elapsed_ms: 0,
        first_error: Some(e.to_string()),
    }
}

/// Counts an I/O error under the kind a user would act on.
pub fn classify(e: &io::Error, errors: &mut ErrorCounts) {
    match (e.raw_os_error(), ProtoError::found_in(e)) {
        (Some(libc::ECONNREFUSED), _) => errors.refused += 1,
        (Some(libc::EMFILE | libc::ENFILE), _) => errors.emfile += 1,
        (Some(libc::EADDRNOTAVAIL), _) => errors.eaddrnotavail += 1,
        (Some(libc::ECONNRESET | libc::EPIPE), _) => errors.reset += 1,
        (Some(libc::ETIMEDOUT), _) => errors.timeout += 1,
        // A read or write of the session's setup failed: counted by its own error.
        (_, Some(ProtoError::Io { error, .. })) => classify(error, errors),
        (_, Some(ProtoError::NoReply { .. })) => errors.timeout += 1,
        // The server hung up, or refused with an error of its protocol (hubbub's "too many
        // connections", say): closed by the broker.
        (_, Some(ProtoError::Closed { .. } | ProtoError::Server { .. })) => errors.closed += 1,
        _ if e.kind() == io::ErrorKind::UnexpectedEof => errors.closed += 1,
        _ => errors.other += 1,
    }
}

/// Connects from `source`, opens the protocol's session (over TLS when `dial` has it) and
/// subscribes; returns the stream and any bytes read past the confirmation. `limit` is the
/// caller's bound on the whole.
async fn open(
    dial: &Dial,
    target: SocketAddr,
    source: IpAddr,
    channel: u64,
    client_id: &str,
    limit: Duration,
) -> io::Result<(Stream, Vec<u8>)> {
    let tcp = socket::from_source(target, source)?.connect(target).await?;
    tcp.set_nodelay(true)?;
    // The caller bounds the whole; each step may take as long, rather than the default.
    let (mut stream, pending) = dial.open(tcp, limit, client_id).await?;
    let setup = dial.proto.within(limit);
    let early = setup
        .subscribe(&mut stream, &channel_name(channel), pending)
        .await?;
    Ok((stream, early))
}

/// A held subscriber's deliveries: each timed from its intended send time into the worker's
/// histogram.
struct Timed<'a>(&'a Tally);

impl Deliveries for Timed<'_> {
    fn payload(&mut self, payload: &[u8]) {
        let Some(sent) = stamp::sent_ns(payload) else {
            return;
        };
        let tally = self.0;
        // Every delivery, warm-up included, for the live rate: counting only the measured
        // window's showed "delivered 0/s" through each warm-up, which read like a stall.
        tally.delivered_total.set(tally.delivered_total.get() + 1);
        let (from, to) = tally.window.get();
        if sent < from || sent >= to {
            return;
        }
        let us = stamp::now_ns().saturating_sub(sent) / 1000;
        tally.latency.borrow_mut().saturating_record(us.max(1));
        let second = ((sent - from) / 1_000_000_000) as usize;
        if let Some(h) = tally.intervals.borrow_mut().get_mut(second) {
            h.saturating_record(us.max(1));
        }
        if us > tally.slo_us.get() {
            tally.late.set(tally.late.get() + 1);
        }
        tally.delivered.set(tally.delivered.get() + 1);
    }
}

/// Hands a plain subscriber to the worker's epoll set; one that ends on the way is lost.
fn hold(held: &Held, tcp: tokio::net::TcpStream, early: &[u8], tally: &Tally) {
    let added = tcp
        .into_std()
        .and_then(|socket| held.add(socket, early, &mut Timed(tally)));
    if let Err(why) = added {
        tally.clients.set(tally.clients.get() - 1);
        classify(&why, &mut tally.lost.borrow_mut());
    }
}

/// Reads one TLS subscriber's messages until the connection ends, timing each delivery and
/// answering what the protocol requires (NATS PING).
async fn subscriber(proto: Proto, mut stream: Stream, early: Vec<u8>, tally: Rc<Tally>) {
    let lost = Inbound::new(proto, early)
        .serve(&mut stream, &mut Timed(&tally))
        .await;
    tally.clients.set(tally.clients.get() - 1);
    classify(&lost, &mut tally.lost.borrow_mut());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_what_a_user_would_do_about_them() {
        let mut e = ErrorCounts::default();
        classify(&io::Error::from_raw_os_error(libc::ECONNREFUSED), &mut e);
        classify(&io::Error::from_raw_os_error(libc::EMFILE), &mut e);
        classify(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL), &mut e);
        classify(&io::Error::from_raw_os_error(libc::ECONNRESET), &mut e);
        classify(&io::ErrorKind::UnexpectedEof.into(), &mut e);
        let refused = ProtoError::Server {
            proto: Proto::Hubbub,
            message: "too many connections".into(),
        };
        classify(&io::Error::from(refused), &mut e);
        let garbled = ProtoError::Malformed {
            proto: Proto::Redis,
            what: "bad length",
        };
        classify(&io::Error::from(garbled), &mut e);
        // Inside a session's error, as a setup step returns them.
        let in_session = |error| {
            io::Error::from(crate::proto::session::SessionError {
                peer: None,
                awaited: "SUBACK",
                error,
            })
        };
        let silent = ProtoError::NoReply {
            proto: Proto::Mqtt,
            limit: Duration::from_secs(5),
        };
        classify(&in_session(silent), &mut e);
        let cut = ProtoError::Closed {
            proto: Proto::Mqtt,
            unfinished: 3,
        };
        classify(&in_session(cut), &mut e);
        let reset = ProtoError::Io {
            proto: Proto::Mqtt,
            error: io::Error::from_raw_os_error(libc::ECONNRESET),
        };
        classify(&in_session(reset), &mut e);
        let too_long = ProtoError::TooLong {
            proto: Proto::Mqtt,
            len: 1 << 28,
        };
        classify(&in_session(too_long), &mut e);
        let want = ErrorCounts {
            refused: 1,
            emfile: 1,
            eaddrnotavail: 1,
            reset: 2,
            closed: 3,
            timeout: 1,
            other: 2,
        };
        assert_eq!(e, want);
    }
}
