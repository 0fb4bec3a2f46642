//! `loadgen soak`: hold many clients for a long time, healthy subscribers beside clients that
//! churn, burst, stall and send garbage, and check that the healthy ones lose nothing, the
//! burst readers get every burst, the broker's memory stays flat and latency stays within the
//! objective.
//!
//! The healthy subscribers are the rig's: its workers hold them, its publishers send them
//! stamped messages, and each counted window is one [`Rig::hold`], repeated until `--duration`
//! is spent, so their figures mean what a ramp's do. The misbehaving clients ([`abuse`]) run
//! in this process beside them for the whole run, and are counted window by window.
//!
//! # Layout
//! - this file: the options, the plan, the windows and the report.
//! - [`fit`]: whether the clients fit the broker's descriptors.
//! - [`abuse`]: the misbehaving populations.

pub mod abuse;
pub mod fit;

use std::time::{Duration, Instant};

use clap::Args;
use tokio_util::sync::CancellationToken;

use self::abuse::Abusers;
use crate::diagnose::soak::{judge, MIN_WINDOWS};
use crate::model::soak::{AbuseCounts, Burst, Figures, SoakSummary, Window};
use crate::model::units::{grouped, ms, to_mib, trimmed};
use crate::model::{Outcome, StepResult};
use crate::os::Sampler;
use crate::proto::Proto;
use crate::report::soak::{verdict_text, window_line, write_soak};
use crate::rig::options::{positive_duration, positive_rate};
use crate::rig::probe::{BrokerCounters, StatsProbe};
use crate::rig::progress::{say, Out};
use crate::rig::{stamp, Common, Interrupted, Rig};

/// The longest the first window waits for the misbehaving clients to arrive ([`arrival`]).
const MOST_ARRIVAL: Duration = Duration::from_secs(10);

/// How long the misbehaving clients take to reach their steady pace: churn is at its full
/// count after one lifetime (`--churn` ÷ `--churn-rate`), the others connect at once. Their
/// arrival, a surge of connects and SUBSCRIBEs and bad lines, is not what the windows measure.
fn arrival(abuse: &abuse::Opts) -> Duration {
    Duration::from_secs_f64(abuse.churn as f64 / abuse.churn_rate).min(MOST_ARRIVAL)
}

/// How long the burst readers may take, after the last window, to finish the last burst.
const BURST_SETTLE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Clients held at once, in all: the healthy subscribers and every misbehaving population
    /// (--churn, --burst-readers, --slow, --malformed); the healthy are the rest. With loadgen's
    /// own connections they must fit the broker's open-files limit [default: 20,000, or as
    /// many as fit]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: Option<u64>,
    /// Traffic counted in all: --duration ÷ --window windows (at least three), each after a
    /// --warmup that is not counted.
    #[arg(long, default_value = "30m", value_parser = positive_duration)]
    pub duration: Duration,
    /// Each counted window: one hold of the healthy traffic.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub window: Duration,
    /// Messages per second to the healthy subscribers, in all, on a fixed schedule.
    #[arg(long, default_value_t = 2000.0, value_parser = positive_rate)]
    pub rate: f64,
    /// Channels of the healthy traffic; subscriber n listens on channel n mod channels.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub channels: u64,
    #[command(flatten)]
    pub abuse: abuse::Opts,
    #[command(flatten)]
    pub common: Common,
}

/// Runs a soak, writes its report and prints the verdict, check by check.
pub async fn run(opts: Opts, interrupt: &CancellationToken, out: Out) -> anyhow::Result<Outcome> {
    let summary = execute(&opts, interrupt).await?;
    out.line(&verdict_text(&summary));
    for c in &summary.checks {
        let mark = if c.passed { "met    " } else { "NOT MET" };
        out.line(&format!("  {mark} {}: {}", c.kind.question(), c.evidence));
    }
    out.summary(&summary)?;
    Ok(outcome(&summary))
}

/// How a soak ended, for the exit status.
pub fn outcome(s: &SoakSummary) -> Outcome {
    if s.interrupted {
        Outcome::Interrupted
    } else if s.windows.iter().any(|w| !w.figures.broker_alive) {
        Outcome::BrokerGone
    } else if !s.passed {
        Outcome::ObjectiveMissed
    } else {
        Outcome::Passed
    }
}

/// A flag refused after parsing (a combination clap cannot check): the program exits as clap
/// does for a refused flag, with status 2.
fn refuse(why: String) -> anyhow::Error {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{why}\n")).into()
}

/// The windows the soak will count, or why the flags cannot make a soak.
fn windows(opts: &Opts) -> anyhow::Result<usize> {
    if opts.common.proto != Proto::Hubbub {
        let why = "--proto: a soak speaks hubbub only (its misbehaving clients rely on hubbub's \
                   ERROR replies, PING and slow-consumer policy)";
        return Err(refuse(why.into()));
    }
    if opts.common.target.len() > 1 {
        return Err(refuse("--target: a soak loads one broker".into()));
    }
    let windows = (opts.duration.as_secs_f64() / opts.window.as_secs_f64()).floor() as usize;
    if windows < MIN_WINDOWS {
        return Err(refuse(format!(
            "--duration {} holds {windows} window(s) of --window {}; a soak needs at least \
             {MIN_WINDOWS} to judge the broker's memory flat",
            humantime::format_duration(opts.duration),
            humantime::format_duration(opts.window)
        )));
    }
    Ok(windows)
}

/// The clients the soak holds, or why they cannot make a soak.
fn clients(opts: &Opts) -> anyhow::Result<fit::Fit> {
    let fit = fit::check(&opts.common, opts.clients).map_err(refuse)?;
    if opts.abuse.total() >= fit.clients {
        return Err(refuse(format!(
            "--clients {} leaves no healthy subscriber beside the {} misbehaving clients \
             (--churn, --burst-readers, --slow, --malformed)",
            grouped(fit.clients),
            grouped(opts.abuse.total())
        )));
    }
    Ok(fit)
}

/// Runs a soak and writes its report (the folder is named on stderr); returns its summary. An
/// interrupted soak still stops every client and process it started and writes what it
/// measured, marked as interrupted.
pub async fn execute(opts: &Opts, interrupt: &CancellationToken) -> anyhow::Result<SoakSummary> {
    let planned = windows(opts)?;
    let fit = clients(opts)?;
    let populations = opts.abuse.populations(fit.clients);
    say(&plan_line(opts, fit.clients, planned));
    // The soak sizes its clients to one broker (`fit`): never a hub of them.
    if opts.common.brokers.is_some_and(|k| k > 1) {
        anyhow::bail!(
            "the soak loads one broker; --brokers above 1 is for ramp, latency and throughput"
        );
    }
    let one_broker = crate::rig::Common {
        brokers: Some(1),
        ..opts.common.clone()
    };
    let rig = Rig::start(
        &one_broker,
        opts.channels,
        populations.healthy,
        "soak",
        interrupt,
    )
    .await?;
    // The samples count their seconds from the rig's start, just now: so do the windows.
    let origin = (Instant::now(), stamp::now_ns());
    let mut probe = StatsProbe::connect(rig.targets(), &rig.dial.auth).await;
    let counters = probe.read().await;
    let mut soak = Soak {
        opts,
        healthy: populations.healthy,
        rss: Sampler::new(&rig.brokers.pids, &[]),
        rig,
        probe,
        counters,
        origin,
        p99_per_second: Vec::new(),
        measured: Vec::new(),
        bursts: Vec::new(),
    };
    let walked = soak.walk(planned, interrupt).await;
    let wall_secs = soak.secs();
    let Soak {
        rig,
        measured,
        bursts,
        p99_per_second,
        ..
    } = soak;
    let mut steps: Vec<StepResult> = measured.iter().map(|m| m.step.clone()).collect();
    let done = rig.finish(&mut steps).await?;
    let interrupted = match walked {
        Ok(()) => false,
        Err(e) if e.is::<Interrupted>() => true,
        Err(e) => return Err(e),
    };
    let mut windows: Vec<Window> = measured
        .iter()
        .zip(&steps)
        .map(|(m, st)| Window {
            figures: figures(m, st),
            abuse: m.abuse.clone(),
        })
        .collect();
    count_bursts(&mut windows, &bursts);
    let mut summary = SoakSummary {
        passed: false,
        interrupted,
        checks: Vec::new(),
        rss_rule: Default::default(),
        populations,
        rate: opts.rate,
        channels: opts.channels,
        window_secs: opts.window.as_secs_f64(),
        windows_planned: planned,
        wall_secs,
        slo_p99_us: opts.common.slo_us(),
        nofile_raised: fit.raised,
        clients_capped: fit.capped,
        windows,
        bursts,
        steps,
        limits: done.limits.clone(),
        command_line: done.command_line.clone(),
        provenance: Some(done.provenance.clone()),
    };
    (summary.checks, summary.rss_rule) = judge(&summary);
    summary.passed =
        !interrupted && summary.windows.len() == planned && summary.checks.iter().all(|c| c.passed);
    write_soak(&done.out, &summary, &done.samples, &p99_per_second)?;
    done.write_interval_log()?;
    say(&format!("report written to {}", done.out.display()));
    Ok(summary)
}

/// What the soak will do, in a line, before it starts.
fn plan_line(opts: &Opts, clients: u64, planned: usize) -> String {
    let a = &opts.abuse;
    let p = a.populations(clients);
    let each = opts.window + opts.common.warmup;
    format!(
        "soak: {} clients, {planned} windows of {} each after a {} warm-up (about {} in all, \
         and the connecting): {} healthy subscribers on {} channels at {} msg/s; {} churn \
         ({}/s), {} burst readers ({} × {} B every {}), {} slow consumers (stalling {}), {} \
         malformed; objective: every healthy subscriber held with no loss, every burst whole, \
         broker RSS flat, p99 within {}",
        grouped(clients),
        humantime::format_duration(opts.window),
        humantime::format_duration(opts.common.warmup),
        humantime::format_duration(Duration::from_secs((each * planned as u32).as_secs())),
        grouped(p.healthy),
        grouped(opts.channels),
        grouped(opts.rate.round() as u64),
        a.churn,
        trimmed(a.churn_rate),
        a.burst_readers,
        grouped(a.burst_messages),
        grouped(a.burst_size),
        humantime::format_duration(a.burst_every),
        a.slow,
        humantime::format_duration(a.slow_stall),
        a.malformed,
        ms(opts.common.slo_us()),
    )
}

/// What one window measured besides the rig's step, kept until the run's samples fill in
/// the step's resources.
struct Measured {
    step: StepResult,
    start_secs: f64,
    end_secs: f64,
    counted_from_secs: f64,
    /// The broker's STATS at the end of the window, and what two of its counters gained.
    broker: BrokerCounters,
    slow_consumers: u64,
    accept_errors: u64,
    abuse: AbuseCounts,
}

/// A window's row, once the samples have filled in its step's resources.
fn figures(m: &Measured, st: &StepResult) -> Figures {
    let hundredths = |v: f64| (v * 100.0).round() / 100.0;
    Figures {
        window: st.step,
        start_secs: hundredths(m.start_secs),
        end_secs: hundredths(m.end_secs),
        counted_from_secs: hundredths(m.counted_from_secs),
        counted_secs: st.hold_secs,
        clients: st.clients,
        published: st.published,
        expected: st.expected,
        delivered: st.delivered,
        lost: st.lost,
        late: st.late,
        p50_us: st.latency.p50_us,
        p99_us: st.latency.p99_us,
        p999_us: st.latency.p999_us,
        max_us: st.latency.max_us,
        broker_rss_mib: hundredths(to_mib(st.broker_rss_bytes)),
        broker_cpu_pct: (st.broker_cpu_pct * 10.0).round() / 10.0,
        loadgen_rss_mib: hundredths(to_mib(st.loadgen_rss_bytes)),
        broker_connections: m.broker.connections,
        broker_slow_consumers: m.slow_consumers,
        broker_accept_errors: m.accept_errors,
        broker_alive: st.broker_alive,
    }
}

/// Counts each burst into the window whose span it was sent in (the last window takes any
/// sent after its end, before the publisher stopped).
fn count_bursts(windows: &mut [Window], bursts: &[Burst]) {
    let last = windows.len();
    for w in windows.iter_mut() {
        let f = &w.figures;
        let mine: Vec<_> = bursts
            .iter()
            .filter(|b| {
                let at = b.at_ms as f64 / 1000.0;
                (f.window == 1 || at > f.start_secs) && (f.window == last || at <= f.end_secs)
            })
            .collect();
        w.abuse.bursts_sent = mine.len() as u64;
        w.abuse.bursts_complete = mine.iter().filter(|b| b.complete()).count() as u64;
    }
}

/// The run in progress: the rig, the soak's own STATS probe, and the clock its times are
/// counted on (seconds since the rig started, as the samples' are).
struct Soak<'a> {
    opts: &'a Opts,
    healthy: u64,
    rig: Rig,
    probe: StatsProbe,
    counters: BrokerCounters,
    /// The broker's RSS at the end of each window, for the line printed then.
    rss: Sampler,
    origin: (Instant, u64),
    /// Each counted second's p99 (seconds since the start, µs), for the chart.
    p99_per_second: Vec<(f64, u64)>,
    measured: Vec<Measured>,
    bursts: Vec<Burst>,
}

impl Soak<'_> {
    fn secs(&self) -> f64 {
        self.origin.0.elapsed().as_secs_f64()
    }

    /// Connects the healthy subscribers, starts the misbehaving clients, holds the windows,
    /// and stops the misbehaving clients however that ended.
    async fn walk(&mut self, planned: usize, interrupt: &CancellationToken) -> anyhow::Result<()> {
        self.rig.at_step(1, planned);
        let mut first = StepResult {
            step: 1,
            ..Default::default()
        };
        self.rig.connect(&mut first, self.healthy).await?;
        let abusers = Abusers::start(
            self.rig.targets()[0],
            &self.opts.abuse,
            (self.opts.channels, self.opts.common.connect_timeout),
            self.origin.0,
            interrupt.child_token(),
        );
        let held = self.windows(&abusers, first, planned, interrupt).await;
        let (bursts, rest) = abusers.stop(BURST_SETTLE).await;
        if let Some(last) = self.measured.last_mut() {
            last.abuse.add(&rest);
        }
        self.bursts = bursts;
        held
    }

    /// Holds each window in turn (the first one's step already holds the connecting), until
    /// all are held or the broker is gone. The misbehaving clients all arrive at once; the
    /// first window waits for them to reach their steady pace ([`arrival`]).
    async fn windows(
        &mut self,
        abusers: &Abusers,
        first: StepResult,
        planned: usize,
        interrupt: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut step = first;
        let mut start_secs = self.secs();
        tokio::select! {
            _ = tokio::time::sleep(arrival(&self.opts.abuse)) => {}
            _ = interrupt.cancelled() => return Err(Interrupted.into()),
        }
        for n in 1..=planned {
            self.rig.at_step(n, planned);
            step.step = n;
            let mut m = self.hold(step, start_secs).await?;
            m.abuse = abusers.take_counts();
            start_secs = m.end_secs;
            let mut preview = Window {
                figures: figures(&m, &m.step),
                abuse: m.abuse.clone(),
            };
            preview.figures.broker_rss_mib = to_mib(self.rss.read().broker_rss_bytes);
            let bursts = abusers.bursts();
            let whole = bursts.iter().filter(|b| b.complete()).count();
            say(&format!(
                "{}; bursts so far {whole} whole of {}",
                window_line(&preview, self.opts.common.slo_us()),
                bursts.len()
            ));
            let alive = m.step.broker_alive;
            self.measured.push(m);
            if !alive {
                break;
            }
            step = StepResult::default();
        }
        Ok(())
    }

    /// Holds one window of traffic on `step`, and reads what the broker counted.
    async fn hold(&mut self, mut step: StepResult, start_secs: f64) -> anyhow::Result<Measured> {
        let (rate, window) = (self.opts.rate, self.opts.window);
        let held = self.rig.hold(&mut step, rate, window).await?;
        let counted_from_secs = held.from_ns.saturating_sub(self.origin.1) as f64 / 1e9;
        for (i, h) in held.intervals.iter().enumerate() {
            if !h.is_empty() {
                let t = counted_from_secs + i as f64 + 0.5;
                self.p99_per_second.push((t, h.value_at_quantile(0.99)));
            }
        }
        let now = self.probe.read().await;
        let before = std::mem::replace(&mut self.counters, now);
        Ok(Measured {
            step,
            start_secs,
            end_secs: self.secs(),
            counted_from_secs,
            broker: now,
            slow_consumers: now.slow_consumers.saturating_sub(before.slow_consumers),
            accept_errors: now.accept_errors.saturating_sub(before.accept_errors),
            abuse: AbuseCounts::default(),
        })
    }
}
