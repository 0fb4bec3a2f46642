//! `loadgen ramp`: add subscribers step by step, hold traffic at a fixed rate at each step,
//! and stop once the broker no longer keeps up; then say which limit stopped it and why.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use crate::control::{new_histogram, FromWorker, ToWorker};
use crate::embedded::EmbeddedBroker;
use crate::model::{ErrorCounts, Percentiles, StepResult, Summary};
use crate::progress::{self, Position};
use crate::publish::Publishers;
use crate::sample::{read_limits, Sampler};
use crate::workers::Worker;
use crate::{diagnose, plan, report, stats_probe};

/// Connections per (source address, broker) pair before loadgen adds a source address: the
/// default ephemeral range holds 28,232 ports, so this leaves a margin.
const PER_SOURCE: u64 = 25_000;
/// Descriptors a worker keeps for itself (stdio, runtime, the odd file).
const FD_MARGIN: u64 = 100;

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Stop after this many subscribers.
    #[arg(long, default_value_t = 10_000)]
    pub max_clients: u64,
    /// Subscribers added per step (default: a tenth of --max-clients).
    #[arg(long)]
    pub step: Option<u64>,
    /// How long each step's traffic is held and measured.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Publisher connections.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Messages per second, in all, published on a fixed schedule.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Channels; subscriber n listens on channel n mod channels.
    #[arg(long, default_value_t = 1000)]
    pub channels: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Latency objective for the 99th percentile (e.g. 50ms).
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub slo_p99: Duration,
    /// Broker(s) to load, HOST:PORT[,HOST:PORT…]; without it loadgen starts its own.
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<SocketAddr>,
    /// Process id(s) of an external broker, to sample its CPU, memory and limits.
    #[arg(long, value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
    /// Where to write the report (default: reports/runs/<timestamp>-ramp/).
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

/// Runs a ramp and writes its report.
pub async fn run(opts: Opts) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let out = opts.out.clone().unwrap_or_else(|| default_out("ramp"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    let embedded = if opts.target.is_empty() {
        Some(EmbeddedBroker::start(&[]).await?)
    } else {
        None
    };
    let targets = match &embedded {
        Some(b) => vec![b.addr],
        None => opts.target.clone(),
    };
    let broker_pids = match &embedded {
        Some(b) => vec![b.pid],
        None => opts.broker_pid.clone(),
    };
    let source_count = opts
        .sources
        .unwrap_or_else(|| plan::sources_for(opts.max_clients, targets.len(), PER_SOURCE));
    let sources: Vec<IpAddr> = (1..=source_count as u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect();
    let limits = read_limits(broker_pids.first().copied(), sources.len());
    let per_process = opts
        .per_process
        .unwrap_or(limits.loadgen_nofile_hard.saturating_sub(FD_MARGIN).max(1));
    let steps = plan::steps(
        opts.max_clients,
        opts.step.unwrap_or(opts.max_clients.div_ceil(10)),
    );
    let slo_us = opts.slo_p99.as_micros() as u64;

    let mut workers = Vec::new();
    for _ in 0..plan::workers_for(opts.max_clients, per_process) {
        workers.push(Worker::spawn(per_process + FD_MARGIN)?);
    }
    eprintln!(
        "ramp to {} subscribers in {} steps against {} broker(s) {:?}{}; {} worker process(es) of up to {} clients, {} source address(es); {} msg/s over {} channels",
        opts.max_clients,
        steps.len(),
        targets.len(),
        targets,
        if embedded.is_some() { " (started by loadgen)" } else { "" },
        workers.len(),
        per_process,
        sources.len(),
        opts.rate,
        opts.channels,
    );
    eprintln!("report: {}", out.display());

    let mut publishers = Publishers::connect(&targets, opts.publishers.max(1)).await?;
    let mut probe = stats_probe::StatsProbe::connect(&targets).await;
    let position = Arc::new(Position::default());
    position.steps.store(steps.len(), Relaxed);
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

    let mut engine = Engine {
        opts: &opts,
        targets,
        sources,
        workers,
        held: Vec::new(),
        per_process,
        subscribers_per_channel: vec![0; opts.channels as usize],
        next_index: 0,
        slo_us,
        broker_pids: broker_pids.clone(),
    };
    engine.held = vec![0; engine.workers.len()];
    let mut results: Vec<StepResult> = Vec::new();
    for (i, &target) in steps.iter().enumerate() {
        // Steps count from 1, as a person reads them.
        position.step.store(i + 1, Relaxed);
        let before = probe.read().await;
        let mut result = engine.step(i + 1, target, &mut publishers).await?;
        let after = probe.read().await;
        result.broker_accept_errors = after.accept_errors.saturating_sub(before.accept_errors);
        result.broker_slow_consumers = after.slow_consumers.saturating_sub(before.slow_consumers);
        results.push(result);
        let failed = diagnose::step_failed(results.last().expect("pushed"), slo_us);
        eprintln!("{}", step_line(results.last().expect("pushed"), failed));
        if failed.is_some() {
            break;
        }
    }

    stop_sampling.cancel();
    let samples = sampler.await?;
    fill_step_averages(&mut results, &samples);
    for w in engine.workers.drain(..) {
        w.exit().await;
    }
    if let Some(b) = embedded {
        b.stop().await?;
    }

    let (clients_held, binding_limit) =
        diagnose::diagnose(&results, &samples, &limits, slo_us, opts.max_clients);
    let summary = Summary {
        clients_held,
        binding_limit,
        limits,
        command_line,
        slo_p99_us: slo_us,
        steps: results,
    };
    report::write_steps_csv(&out.join("steps.csv"), &summary.steps)?;
    report::write_samples_csv(&out.join("samples.csv"), &samples)?;
    report::write_summary(&out, &summary)?;
    report::plot_all(
        &out,
        &summary.steps,
        &samples,
        slo_us,
        opts.hold.as_secs_f64(),
    )?;
    println!("{}", report::steps_table_markdown(&summary.steps));
    println!(
        "held {} clients; the ramp stopped because {}: {}",
        summary.clients_held,
        diagnose::describe(summary.binding_limit.kind),
        summary.binding_limit.evidence
    );
    println!("report written to {}", out.display());
    Ok(())
}

/// The state of a ramp between steps.
struct Engine<'a> {
    opts: &'a Opts,
    targets: Vec<SocketAddr>,
    sources: Vec<IpAddr>,
    workers: Vec<Worker>,
    /// Subscribers asked of each worker so far.
    held: Vec<u64>,
    per_process: u64,
    subscribers_per_channel: Vec<u64>,
    next_index: u64,
    slo_us: u64,
    broker_pids: Vec<u32>,
}

impl Engine<'_> {
    /// Connects up to `target` subscribers, then holds traffic and measures it.
    async fn step(
        &mut self,
        step: usize,
        target: u64,
        publishers: &mut Publishers,
    ) -> anyhow::Result<StepResult> {
        let mut result = StepResult {
            step,
            target_clients: target,
            ..Default::default()
        };
        let new = target.saturating_sub(self.next_index);
        let shares = plan::split(new, &self.held, self.per_process);
        for (w, &count) in self.workers.iter_mut().zip(&shares) {
            w.send(&ToWorker::Connect {
                first_index: self.next_index,
                count,
                targets: self.targets.clone(),
                sources: self.sources.clone(),
                channels: self.opts.channels,
                timeout_ms: self.opts.connect_timeout.as_millis() as u64,
                concurrency: self.opts.connect_concurrency,
                slo_us: self.slo_us,
            })
            .await?;
            self.next_index += count;
        }
        let mut connect_hist = new_histogram();
        let mut slowest_ms: u64 = 1;
        let mut connected = 0;
        for (i, w) in self.workers.iter_mut().enumerate() {
            let FromWorker::Connected {
                ok,
                per_channel,
                errors,
                connect_hist: h,
                elapsed_ms,
            } = w.reply().await?
            else {
                anyhow::bail!("worker {} answered Connect with something else", w.pid);
            };
            self.held[i] += shares[i];
            connected += ok;
            result.errors.add(&errors);
            h.merge_into(&mut connect_hist);
            slowest_ms = slowest_ms.max(elapsed_ms);
            for (channel, n) in per_channel {
                self.subscribers_per_channel[channel as usize] += n;
            }
        }
        result.connect_rate = connected as f64 * 1000.0 / slowest_ms as f64;
        result.connect_p50_us = connect_hist.value_at_quantile(0.5);
        result.connect_p99_us = connect_hist.value_at_quantile(0.99);

        // Start the hold afresh: drop deliveries counted so far, keep connections lost.
        let (_, lost, _, _, _) = self.report_all().await?;
        result.errors.add(&lost);
        let published = publishers
            .publish(
                self.opts.rate,
                self.opts.hold,
                self.opts.channels,
                self.opts.size,
            )
            .await?;
        // Give the last messages time to arrive; later than this they are late anyway.
        tokio::time::sleep(Duration::from_secs(1) + self.opts.slo_p99 * 2).await;
        let (delivered, lost, late, latency, clients) = self.report_all().await?;
        result.errors.add(&lost);
        result.clients = clients;
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
        result.broker_alive = self.broker_pids.iter().all(|&p| crate::sample::running(p));
        Ok(result)
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
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
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

/// Per-step averages of the samples taken during each step (peak RSS).
fn fill_step_averages(steps: &mut [StepResult], samples: &[crate::model::Sample]) {
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

fn step_line(s: &StepResult, failed: Option<&str>) -> String {
    format!(
        "step {:>2}: {:>6} clients ({} errors), connect p99 {:.1} ms, delivered {}/{}, latency p50 {:.2} ms p99 {:.2} ms{}",
        s.step,
        s.clients,
        s.errors.total(),
        s.connect_p99_us as f64 / 1000.0,
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
