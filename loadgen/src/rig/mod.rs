//! What every measurement runs on: the broker(s) (started here or given), worker processes
//! holding the subscribers, the publishers, a STATS probe and the once-a-second sampler.
//! `ramp`, `throughput` and `latency` are different walks over the same two moves:
//! [`Rig::connect`] more subscribers, and [`Rig::hold`] traffic at a rate.
//! [`Rig::open_stalled`] (in [`crate::rig::stalled`]) adds subscribers that never read.

pub mod broker;
pub mod control;
pub mod plan;
pub mod pool;
pub mod probe;
pub mod progress;
pub mod publish;
pub mod stalled;
pub mod stamp;
pub mod worker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::progress::Position;
use crate::model::{ErrorCounts, Limits, Percentiles, Sample, StepResult};
use crate::os::{read_limits, running, Sampler};
use crate::proto::Proto;
use crate::rig::broker::EmbeddedBroker;
use crate::rig::control::{new_histogram, FromWorker, ToWorker};
use crate::rig::pool::Worker;
use crate::rig::probe::StatsProbe;
use crate::rig::publish::Publishers;

/// Connections per (source address, broker) pair before loadgen adds a source address: the
/// default ephemeral range holds 28,232 ports, so this leaves a margin.
const PER_SOURCE: u64 = 25_000;
/// Descriptors a worker keeps for itself (stdio, runtime, the odd file).
const FD_MARGIN: u64 = 100;
/// Options every measurement shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Broker(s) to load, HOST:PORT[,HOST:PORT…]; without it loadgen starts its own (hubbub).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<SocketAddr>,
    /// The protocol the target speaks (`scripts/peers.sh start` runs the others on loopback).
    #[arg(long, value_enum, default_value_t = Proto::Hubbub)]
    pub proto: Proto,
    /// Process id(s) of an external broker, to sample its CPU, memory and limits.
    #[arg(long, value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
    /// Publisher connections.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Latency objective for the 99th percentile (e.g. 50ms).
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub slo_p99: Duration,
    /// Where to write the report (default: reports/runs/<timestamp>-<command>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Subscribers per worker process (default: the open-files hard limit less a margin).
    #[arg(long)]
    pub per_process: Option<u64>,
    /// Loopback source addresses to connect from (default: enough for the ephemeral ports).
    #[arg(long)]
    pub sources: Option<usize>,
    /// How long a subscriber may take to connect and be acknowledged.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Connects in flight at once, per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
}

impl Common {
    /// The latency objective in microseconds, the unit every histogram here counts in.
    pub fn slo_us(&self) -> u64 {
        self.slo_p99.as_micros() as u64
    }
}

/// The clients of a fixed-size run (`throughput`, `latency`).
#[derive(Debug, Clone, Args)]
pub struct Audience {
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u64,
    /// Channels; subscriber n listens on channel n mod channels, message n goes to the same.
    #[arg(long, default_value_t = 1)]
    pub channels: u64,
}

/// A running measurement.
pub struct Rig {
    pub common: Common,
    /// Subscriber n listens on channel `ch-{n mod channels}`; message n goes to the same.
    pub channels: u64,
    pub out: PathBuf,
    pub limits: Limits,
    pub command_line: String,
    pub targets: Vec<SocketAddr>,
    embedded: Option<EmbeddedBroker>,
    broker_pids: Vec<u32>,
    sources: Vec<IpAddr>,
    workers: Vec<Worker>,
    /// Subscribers asked of each worker so far.
    held: Vec<u64>,
    per_process: u64,
    subscribers_per_channel: Vec<u64>,
    next_index: u64,
    publishers: Publishers,
    probe: StatsProbe,
    position: Arc<Position>,
    stop_sampling: CancellationToken,
    sampler: JoinHandle<Vec<Sample>>,
}

/// What a finished measurement leaves behind.
pub struct Finished {
    pub samples: Vec<Sample>,
    pub limits: Limits,
    pub out: PathBuf,
    pub command_line: String,
}

impl Rig {
    /// Starts (or finds) the broker, enough workers for `max_clients` subscribers over
    /// `channels` channels, and the publishers; `kind` names the default report folder.
    pub async fn start(
        common: &Common,
        channels: u64,
        max_clients: u64,
        kind: &str,
    ) -> anyhow::Result<Rig> {
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let command_line = std::env::args().collect::<Vec<_>>().join(" ");
        let out = common.out.clone().unwrap_or_else(|| default_out(kind));
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let embedded = match (common.target.is_empty(), common.proto) {
            (true, Proto::Hubbub) => Some(EmbeddedBroker::start(&[])?),
            (true, other) => anyhow::bail!(
                "loadgen starts only hubbub itself; for --proto {other} give --target \
                 (scripts/peers.sh start {other}; scripts/peers.sh addr ...)"
            ),
            (false, _) => None,
        };
        let (targets, broker_pids) = match &embedded {
            Some(b) => (vec![b.addr], vec![b.pid]),
            None => (common.target.clone(), common.broker_pid.clone()),
        };
        let source_count = common
            .sources
            .unwrap_or_else(|| plan::sources_for(max_clients, targets.len(), PER_SOURCE));
        let sources: Vec<IpAddr> = (1..=source_count.min(254) as u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect();
        let limits = read_limits(broker_pids.first().copied(), sources.len());
        let per_process = common
            .per_process
            .unwrap_or(limits.loadgen_nofile_hard.saturating_sub(FD_MARGIN).max(1));
        let mut workers = Vec::new();
        for _ in 0..plan::workers_for(max_clients, per_process) {
            workers.push(Worker::spawn(per_process + FD_MARGIN)?);
        }
        eprintln!(
            "{kind}: up to {max_clients} subscribers against {:?}{}; {} worker process(es) of up to {per_process} clients, {} source address(es); report in {}",
            targets,
            if embedded.is_some() { " (started by loadgen)" } else { "" },
            workers.len(),
            sources.len(),
            out.display(),
        );
        let publishers =
            Publishers::connect(&targets, common.publishers.max(1), common.proto).await?;
        // Only hubbub answers STATS.
        let probe = match common.proto {
            Proto::Hubbub => StatsProbe::connect(&targets).await,
            _ => StatsProbe::default(),
        };
        let position = Arc::new(Position::default());
        *position.workers.lock().expect("position lock") = workers
            .iter()
            .map(|w| (w.delivered_total.clone(), w.clients.clone()))
            .collect();
        let mut loadgen_pids = vec![std::process::id()];
        loadgen_pids.extend(workers.iter().map(|w| w.pid));
        let stop_sampling = CancellationToken::new();
        let sampler = progress::spawn(
            Sampler::new(&broker_pids, &loadgen_pids),
            position.clone(),
            stop_sampling.clone(),
        );
        Ok(Rig {
            common: common.clone(),
            channels,
            out,
            limits,
            command_line,
            targets,
            embedded,
            broker_pids,
            sources,
            held: vec![0; workers.len()],
            workers,
            per_process,
            subscribers_per_channel: vec![0; channels as usize],
            next_index: 0,
            publishers,
            probe,
            position,
            stop_sampling,
            sampler,
        })
    }

    /// Starts a rig for a fixed-size run (`throughput`, `latency`) and connects its whole
    /// audience as step 1; `steps` is how many steps the run will have, 0 if not known yet.
    pub async fn start_fixed(
        common: &Common,
        audience: &Audience,
        kind: &str,
        steps: usize,
    ) -> anyhow::Result<(Rig, StepResult)> {
        let mut rig = Rig::start(common, audience.channels, audience.subscribers, kind).await?;
        let mut connected = StepResult {
            step: 1,
            ..Default::default()
        };
        rig.at_step(1, steps);
        rig.connect(&mut connected, audience.subscribers).await?;
        Ok((rig, connected))
    }

    /// Tells the live display which step this is, and how many there are.
    pub fn at_step(&self, step: usize, steps: usize) {
        self.position.step.store(step, Relaxed);
        self.position.steps.store(steps, Relaxed);
    }

    /// Connects subscribers until `target` have been asked for; fills the connect fields.
    pub async fn connect(&mut self, result: &mut StepResult, target: u64) -> anyhow::Result<()> {
        result.target_clients = target;
        let new = target.saturating_sub(self.next_index);
        let shares = plan::split(new, &self.held, self.per_process);
        for (w, &count) in self.workers.iter_mut().zip(&shares) {
            w.send(&ToWorker::Connect {
                first_index: self.next_index,
                count,
                targets: self.targets.clone(),
                sources: self.sources.clone(),
                channels: self.channels,
                timeout_ms: self.common.connect_timeout.as_millis() as u64,
                concurrency: self.common.connect_concurrency,
                slo_us: self.common.slo_us(),
                proto: self.common.proto,
            })
            .await?;
            self.next_index += count;
        }
        let mut hist = new_histogram();
        let mut slowest_ms: u64 = 1;
        let mut connected = 0;
        for (i, w) in self.workers.iter_mut().enumerate() {
            let FromWorker::Connected {
                ok,
                per_channel,
                errors,
                connect_hist,
                elapsed_ms,
            } = w.reply().await?
            else {
                anyhow::bail!("worker {} answered Connect with something else", w.pid);
            };
            self.held[i] += shares[i];
            connected += ok;
            result.errors.add(&errors);
            connect_hist.merge_into(&mut hist);
            slowest_ms = slowest_ms.max(elapsed_ms);
            for (channel, n) in per_channel {
                self.subscribers_per_channel[channel as usize] += n;
            }
        }
        result.connect_rate = connected as f64 * 1000.0 / slowest_ms as f64;
        result.connect_p50_us = hist.value_at_quantile(0.5);
        result.connect_p99_us = hist.value_at_quantile(0.99);
        Ok(())
    }

    /// Publishes at `rate` for `hold`, waits for the last deliveries, and fills the traffic
    /// fields of `result`. Returns the merged latency histogram.
    pub async fn hold(
        &mut self,
        result: &mut StepResult,
        rate: f64,
        hold: Duration,
    ) -> anyhow::Result<Histogram<u64>> {
        let before = self.probe.read().await;
        // Start afresh: drop deliveries counted so far, keep connections lost.
        let (_, lost, _, _, _) = self.report_all().await?;
        result.errors.add(&lost);
        let (channels, size) = (self.channels, self.common.size);
        let published = self.publishers.publish(rate, hold, channels, size).await?;
        // Give the last messages time to arrive; later than this they are late anyway.
        tokio::time::sleep(Duration::from_secs(1) + self.common.slo_p99 * 2).await;
        let (delivered, lost, late, latency, clients) = self.report_all().await?;
        let after = self.probe.read().await;
        result.errors.add(&lost);
        result.clients = clients;
        result.offered_rate = rate;
        result.hold_secs = hold.as_secs_f64();
        result.published = published.total();
        result.expected = published
            .per_channel
            .iter()
            .zip(&self.subscribers_per_channel)
            .map(|(p, s)| p * s)
            .sum();
        result.delivered = delivered;
        result.lost = result.expected.saturating_sub(delivered);
        result.late = late;
        result.latency = percentiles(&latency);
        result.broker_alive = self.broker_pids.iter().all(|&p| running(p));
        result.broker_accept_errors = after.accept_errors.saturating_sub(before.accept_errors);
        result.broker_slow_consumers = after.slow_consumers.saturating_sub(before.slow_consumers);
        Ok(latency)
    }

    /// Asks every worker for its counts since the last report, and merges them.
    async fn report_all(&mut self) -> anyhow::Result<(u64, ErrorCounts, u64, Histogram<u64>, u64)> {
        for w in &mut self.workers {
            w.send(&ToWorker::Report).await?;
        }
        let (mut delivered, mut late, mut clients) = (0, 0, 0);
        let mut errors = ErrorCounts::default();
        let mut hist = new_histogram();
        for w in &mut self.workers {
            let FromWorker::Report {
                delivered: d,
                late: l,
                latency_hist,
                errors: e,
                clients: c,
            } = w.reply().await?
            else {
                anyhow::bail!("worker {} answered Report with something else", w.pid);
            };
            delivered += d;
            late += l;
            clients += c;
            errors.add(&e);
            latency_hist.merge_into(&mut hist);
        }
        Ok((delivered, errors, late, hist, clients))
    }

    /// Stops sampling, the workers and the embedded broker; fills the steps' resource
    /// averages from the samples.
    pub async fn finish(mut self, steps: &mut [StepResult]) -> anyhow::Result<Finished> {
        self.stop_sampling.cancel();
        let samples = self.sampler.await?;
        fill_step_averages(steps, &samples);
        for w in self.workers.drain(..) {
            w.exit().await;
        }
        if let Some(b) = self.embedded.take() {
            b.stop().await?;
        }
        Ok(Finished {
            samples,
            limits: self.limits,
            out: self.out,
            command_line: self.command_line,
        })
    }
}

/// Latency percentiles of a histogram, zero when it is empty.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

/// Per-step means of the samples taken during each step (peak RSS).
fn fill_step_averages(steps: &mut [StepResult], samples: &[Sample]) {
    for s in steps.iter_mut() {
        let mine: Vec<_> = samples.iter().filter(|x| x.step == s.step).collect();
        if mine.is_empty() {
            continue;
        }
        let n = mine.len() as f64;
        s.broker_cpu_pct = mine.iter().map(|x| x.broker_cpu_pct).sum::<f64>() / n;
        s.loadgen_cpu_pct = mine.iter().map(|x| x.loadgen_cpu_pct).sum::<f64>() / n;
        s.broker_rss_bytes = mine.iter().map(|x| x.broker_rss_bytes).max().unwrap_or(0);
        s.loadgen_rss_bytes = mine.iter().map(|x| x.loadgen_rss_bytes).max().unwrap_or(0);
    }
}

/// One line per finished step, for the terminal.
pub fn step_line(s: &StepResult, failed: Option<&str>) -> String {
    format!(
        "step {:>2}: {:>6} clients ({} errors), {:.0} msg/s offered, delivered {}/{}, latency p50 {:.2} ms p99 {:.2} ms{}",
        s.step,
        s.clients,
        s.errors.total(),
        s.offered_rate,
        s.delivered,
        s.expected,
        s.latency.p50_us as f64 / 1000.0,
        s.latency.p99_us as f64 / 1000.0,
        failed.map(|why| format!("  <- {why}")).unwrap_or_default(),
    )
}

/// `reports/runs/<UTC timestamp>-<kind>`.
pub fn default_out(kind: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    PathBuf::from("reports/runs").join(format!("{stamp}-{kind}"))
}
