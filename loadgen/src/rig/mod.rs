//! What every measurement runs on: the broker(s) (started here or given), worker processes
//! holding the subscribers, the publishers, a STATS probe and the once-a-second sampler.
//! `ramp`, `throughput` and `latency` are different walks over the same two moves:
//! [`Rig::connect`] more subscribers, and [`Rig::hold`] traffic at a rate.
//! [`Rig::open_stalled`] (in [`stalled`]) adds subscribers that never read.
//!
//! # Layout
//! - this file: the [`Rig`] and [`Rig::connect`]; [`hold`]: [`Rig::hold`], with its warm-up,
//!   its counted window and what set the rate.
//! - [`options`]: the flags every rig-based command shares.
//! - [`broker`]: the broker under test, started here or given.
//! - [`plan`]: steps, shares, channel names: the rules, as pure functions.
//! - [`pool`] and [`worker`]: the worker processes, from each side; [`control`]: what they
//!   say to each other.
//! - [`publish`]: open-loop publishers; [`stamp`]: the send time in each payload.
//! - [`probe`]: the broker's own counters; [`progress`]: the samples and the live line.
//! - [`stalled`]: subscribers that never read; [`provenance`]: what a report was measured on.
//! - [`agents`], [`remote`]: workers on other hosts (`--agents`); [`schedule`], [`finished`].

pub mod agents;
pub mod broker;
pub mod control;
pub mod finished;
pub mod held;
pub mod hold;
pub mod options;
pub mod plan;
pub mod pool;
pub mod probe;
pub mod progress;
pub mod provenance;
pub mod publish;
pub mod remote;
pub mod resolve;
pub mod schedule;
pub mod stalled;
pub mod stamp;
pub mod worker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::broker::UnderTest;
use self::control::{FromWorker, ToWorker};
pub use self::finished::Finished;
pub use self::options::{Audience, Common};
use self::pool::Worker;
use self::probe::StatsProbe;
use self::progress::{say, Position};
use self::publish::Publishers;
use crate::model::histogram::new_histogram;
use crate::model::hosts::HostSample;
use crate::model::units::counted;
use crate::model::{Limits, Sample, StepResult};
use crate::os::{read_limits, Sampler};
use crate::proto::dial::Dial;
use crate::proto::Proto;

/// Descriptors a worker keeps for itself (stdio, runtime, the odd file).
const FD_MARGIN: u64 = 100;

/// The run was interrupted (Ctrl-C or SIGTERM); what was measured before stands.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// A running measurement.
pub struct Rig {
    pub common: Common,
    /// The protocol, and TLS when `--tls-ca` asks for it (loaded once).
    pub dial: Dial,
    /// Subscriber n listens on channel `plan::channel_name(n % channels)`; message n goes to
    /// the same.
    pub channels: u64,
    pub out: PathBuf,
    pub limits: Limits,
    pub command_line: String,
    pub brokers: UnderTest,
    interrupt: CancellationToken,
    sources: Vec<IpAddr>,
    workers: Vec<Worker>,
    /// The agents the workers run on (`--agents`), if not here.
    agents: Option<remote::Agents>,
    /// Subscribers asked of each worker so far.
    held: Vec<u64>,
    per_process: u64,
    subscribers_per_channel: Vec<u64>,
    next_index: u64,
    /// The first reason a subscriber of the last [`Rig::connect`] could not connect.
    connect_failure: Option<String>,
    publishers: Publishers,
    /// With `--agents`: each worker's first publisher's global index and how many it runs
    /// (the publishers run there); empty when they run here.
    publisher_shares: Vec<(u64, u64)>,
    probe: StatsProbe,
    position: Arc<Position>,
    stop_sampling: CancellationToken,
    sampler: JoinHandle<(Vec<Sample>, Vec<HostSample>)>,
    /// When the run started, on the stamps' clock and on the wall clock.
    started: (u64, std::time::SystemTime),
    /// Every hold's per-second histograms, tagged with its step, for the interval log.
    intervals: Vec<(String, u64, Vec<Histogram<u64>>)>,
}

impl Rig {
    /// Starts (or finds) the broker, enough workers for `max_clients` subscribers over
    /// `channels` channels, and the publishers; `kind` names the default report folder.
    /// `interrupt` cancelled makes [`Rig::connect`] and [`Rig::hold`] return [`Interrupted`].
    pub async fn start(
        common: &Common,
        channels: u64,
        max_clients: u64,
        kind: &str,
        interrupt: &CancellationToken,
    ) -> anyhow::Result<Rig> {
        if common.tls.tls_ca.is_some() && common.target.is_empty() {
            bail!("--tls-ca needs --target: the hubbub loadgen starts itself speaks no TLS");
        }
        let auth = common
            .auth
            .credentials(common.proto)
            .map_err(anyhow::Error::msg)?;
        if !auth.is_none() && common.target.is_empty() {
            bail!(
                "--user, --password-file and --token-file need --target: the hubbub loadgen \
                 starts itself has no users"
            );
        }
        let dial = Dial::new(common.proto, common.tls.client()?).with_auth(auth);
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let command_line = std::env::args().collect::<Vec<_>>().join(" ");
        let out = common
            .out
            .clone()
            .unwrap_or_else(|| crate::report::default_out(kind));
        crate::report::create_dir(&out)?;
        let limits_here = read_limits(None, 0);
        // What one process's descriptors hold: a worker's clients by default, and a broker's
        // (the embedded one inherits loadgen's hard limit).
        let per_process_limit = limits_here
            .loadgen_nofile_hard
            .saturating_sub(FD_MARGIN)
            .max(1);
        let per_process = common.per_process.unwrap_or(per_process_limit);
        let worker_count = plan::workers_for(max_clients, per_process);
        if worker_count > plan::MAX_WORKERS {
            bail!(
                "--per-process {per_process} would need {worker_count} worker processes for \
                 {max_clients} clients; the most loadgen starts is {} (raise --per-process)",
                plan::MAX_WORKERS
            );
        }
        // Past what one broker process holds, a hub with enough leaves.
        let clients = max_clients + common.publishers as u64;
        let broker_count = common
            .brokers
            .map(|k| k as usize)
            .unwrap_or_else(|| plan::brokers_for(clients, per_process_limit));
        let brokers = UnderTest::resolve_hub(common, broker_count, &[]).await?;
        let (mut workers, agents, per_process, sources) = if common.agents.enabled() {
            // On an agent's host the kernel picks the source address (its own) and its ports.
            let (workers, agents, per_process) =
                remote::start(&common.agents, max_clients, common.per_process, FD_MARGIN).await?;
            let any = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
            (workers, Some(agents), per_process, any)
        } else {
            let source_count = common.sources.map(usize::from).unwrap_or_else(|| {
                let per_source = plan::per_source(limits_here.ephemeral_ports);
                plan::sources_for(max_clients, brokers.addrs.len(), per_source).min(254)
            });
            let sources: Vec<IpAddr> = (1..=source_count as u8)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect();
            let mut workers = Vec::new();
            for _ in 0..worker_count {
                workers.push(Worker::spawn(per_process + FD_MARGIN)?);
            }
            (workers, None, per_process, sources)
        };
        let limits = read_limits(brokers.pids.first().copied(), sources.len());
        let whereabouts = match &agents {
            Some(a) => format!("on {} agent(s), the publishers too", a.reports.len()),
            None => format!("here, from {} source address(es)", sources.len()),
        };
        say(&format!(
            "{kind}: against {}; {} worker process(es) of up to {per_process} clients {whereabouts}; \
             report in {}",
            brokers.describe(),
            workers.len(),
            out.display(),
        ));
        let (publishers, publisher_shares) = match &agents {
            // On the agents too: the coordinator's host need make no load of its own.
            Some(_) => {
                let shares =
                    remote::start_publishers(&mut workers, common, &brokers.addrs, &dial).await?;
                (Publishers::none(common.proto), shares)
            }
            None => {
                let here = Publishers::connect(
                    &brokers.addrs,
                    common.publishers,
                    dial.clone(),
                    common.connect_timeout,
                )
                .await?;
                (here, Vec::new())
            }
        };
        // Only hubbub answers STATS, and the probe speaks plain TCP.
        let probe = match (common.proto, &dial.tls) {
            (Proto::Hubbub, None) => StatsProbe::connect(&brokers.addrs, &dial.auth).await,
            _ => StatsProbe::default(),
        };
        let position = Arc::new(Position::default());
        position.cores.store(limits.cores, Relaxed);
        position.watch_workers(
            workers
                .iter()
                .map(|w| (w.host, w.progress.clone()))
                .collect(),
        );
        let remote = agents
            .iter()
            .flat_map(|a| (0..a.reports.len()).map(|i| a.host_name(i)));
        position.name_hosts(std::iter::once("here".to_string()).chain(remote).collect());
        let mut loadgen_pids = vec![std::process::id()];
        loadgen_pids.extend(workers.iter().map(|w| w.pid).filter(|&pid| pid > 0));
        let stop_sampling = CancellationToken::new();
        let sampler = progress::spawn(
            Sampler::new(&brokers.pids, &loadgen_pids),
            position.clone(),
            stop_sampling.clone(),
        );
        Ok(Rig {
            common: common.clone(),
            dial,
            channels,
            out,
            limits,
            command_line,
            brokers,
            interrupt: interrupt.clone(),
            sources,
            held: vec![0; workers.len()],
            workers,
            agents,
            per_process,
            subscribers_per_channel: vec![0; channels as usize],
            next_index: 0,
            connect_failure: None,
            publishers,
            publisher_shares,
            probe,
            position,
            stop_sampling,
            sampler,
            started: (stamp::now_ns(), std::time::SystemTime::now()),
            intervals: Vec::new(),
        })
    }

    /// Starts a rig for a fixed-size run (`throughput`, `latency`) and connects its whole
    /// audience as step 1; `steps` is how many steps the run will have, 0 if not known yet.
    pub async fn start_fixed(
        common: &Common,
        audience: &Audience,
        kind: &str,
        steps: usize,
        interrupt: &CancellationToken,
    ) -> anyhow::Result<(Rig, StepResult)> {
        let mut rig = Rig::start(
            common,
            audience.channels,
            audience.subscribers,
            kind,
            interrupt,
        )
        .await?;
        let mut connected = StepResult {
            step: 1,
            ..Default::default()
        };
        rig.at_step(1, steps);
        let mut done = rig.connect(&mut connected, audience.subscribers).await;
        if done.is_ok() && connected.errors.total() >= audience.subscribers {
            // Nothing to measure: a broker that refuses, garbles or ignores every subscriber
            // is an error to report, not a run with no audience.
            done = Err(anyhow::anyhow!(
                "none of the {} could connect to {}: {} ({})",
                counted(audience.subscribers, "subscriber"),
                rig.brokers.describe(),
                rig.connect_failure.as_deref().unwrap_or("no reason given"),
                connected.errors.by_kind(),
            ));
        }
        if let Err(e) = done {
            // Stop what was started; the error is the news.
            let _ = rig.finish(&mut []).await;
            return Err(e);
        }
        Ok((rig, connected))
    }

    /// Tells the live display which step this is, and how many there are.
    pub fn at_step(&self, step: usize, steps: usize) {
        self.position.step.store(step, Relaxed);
        self.position.steps.store(steps, Relaxed);
    }

    /// The brokers' addresses.
    pub fn targets(&self) -> &[SocketAddr] {
        &self.brokers.addrs
    }

    /// Fails with [`Interrupted`] once the run has been interrupted.
    fn check_interrupt(&self) -> anyhow::Result<()> {
        match self.interrupt.is_cancelled() {
            true => Err(Interrupted.into()),
            false => Ok(()),
        }
    }

    /// Connects subscribers until `target` have been asked for; fills the connect fields.
    pub async fn connect(&mut self, result: &mut StepResult, target: u64) -> anyhow::Result<()> {
        self.check_interrupt()?;
        result.target_clients = target;
        let new = target.saturating_sub(self.next_index);
        self.position.connecting(new, self.common.connect_timeout);
        let shares = plan::split(new, &self.held, self.per_process);
        for (w, &count) in self.workers.iter_mut().zip(&shares) {
            w.send(&ToWorker::Connect {
                first_index: self.next_index,
                count,
                targets: self.brokers.addrs.clone(),
                sources: self.sources.clone(),
                channels: self.channels,
                timeout_ms: self.common.connect_timeout.as_millis() as u64,
                concurrency: self.common.connect_concurrency,
                slo_us: self.common.slo_us(),
                proto: self.common.proto,
                tls: self.common.tls.clone(),
                auth: Box::new(self.dial.auth.clone()),
                placement: self.common.placement,
            })
            .await?;
            self.next_index += count;
        }
        let interrupt = self.interrupt.clone();
        let replies = async {
            let mut replies = Vec::new();
            for w in self.workers.iter_mut() {
                replies.push((w.label.clone(), w.reply().await?));
            }
            anyhow::Ok(replies)
        };
        let replies = tokio::select! {
            replies = replies => replies?,
            _ = interrupt.cancelled() => return Err(Interrupted.into()),
        };
        let mut hist = new_histogram();
        let mut slowest_ms: u64 = 1;
        let mut connected = 0;
        self.connect_failure = None;
        for (i, (label, reply)) in replies.into_iter().enumerate() {
            let FromWorker::Connected {
                ok,
                per_channel,
                errors,
                connect_hist,
                elapsed_ms,
                first_error,
            } = reply
            else {
                bail!("{label} answered Connect with something else");
            };
            self.held[i] += shares[i];
            connected += ok;
            result.errors.add(&errors);
            self.connect_failure = self.connect_failure.take().or(first_error);
            connect_hist.merge_into(&mut hist);
            slowest_ms = slowest_ms.max(elapsed_ms);
            for (channel, n) in per_channel {
                self.subscribers_per_channel[channel as usize] += n;
            }
        }
        if let Some(why) = &self.connect_failure {
            say(&format!(
                "{} of {} could not connect; the first: {why}",
                result.errors.total(),
                counted(new, "new subscriber"),
            ));
        }
        result.connect_rate = connected as f64 * 1000.0 / slowest_ms as f64;
        result.connect_p50_us = hist.value_at_quantile(0.5);
        result.connect_p99_us = hist.value_at_quantile(0.99);
        Ok(())
    }

    /// Stops sampling, the workers and the broker loadgen started; fills the steps'
    /// resource figures from the samples. Called however the run ended, so that no process
    /// loadgen started outlives it.
    pub async fn finish(self, steps: &mut [StepResult]) -> anyhow::Result<Finished> {
        self.stop_sampling.cancel();
        let (samples, hosts) = self.sampler.await?;
        crate::model::fill_step_resources(steps, &samples);
        let mut agents = Vec::new();
        if let Some(mut set) = self.agents {
            set.finish(&self.workers).await;
            for r in &mut set.reports {
                let name = r.address.clone();
                r.fill_usage(&name, &hosts);
            }
            agents = set.reports;
        }
        for w in self.workers {
            w.exit().await;
        }
        let setup = format!(
            "{}; {} over {}, {}, {} B messages",
            self.brokers.describe(),
            counted(self.next_index, "subscriber"),
            counted(self.channels, "channel"),
            counted(self.common.publishers as u64, "publisher"),
            self.common.size,
        );
        let named = self.brokers.named();
        let provenance = provenance::gather_as(&named, &self.limits, &self.dial.auth).await;
        self.brokers.stop().await.context("stopping the broker")?;
        Ok(Finished {
            samples,
            hosts,
            agents,
            started: self.started,
            intervals: self.intervals,
            limits: self.limits,
            out: self.out,
            command_line: self.command_line,
            setup,
            provenance,
        })
    }
}
