//! `loadgen compare`: the same scenarios against hubbub, Redis, NATS and Mosquitto in one run,
//! so every figure has its peers' beside it, measured by the same harness on the same machine
//! minutes apart.
//!
//! Repeated scenarios are interleaved (hubbub, redis, nats, mosquitto, hubbub, …), so a noisy
//! minute on a shared machine falls on every broker rather than on one. Each scenario runs the
//! same code a user reaches through its own command (`fanout`, `latency`, `memory`, `ramp`),
//! with the options that command would take; a failed run is recorded with its reason and the
//! comparison goes on.
//!
//! # Layout
//! - this file: the options, the brokers, the scenarios' names and the report.
//! - [`scenarios`]: one function per kind of scenario, measuring every broker.
//! - [`baseline`]: CI's regression check against committed ratios.
//! - the measurements and goals are [`crate::model::compare`]; the tables
//!   [`crate::report::compare`], the overlay charts [`crate::report::plots::compare`].

pub mod baseline;
mod scenarios;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use crate::model::compare::{judge, Goal, Measurement};
use crate::model::Outcome;
use crate::model::StepResult;
use crate::os::listener;
use crate::proto::Proto;
use crate::report;
use crate::report::compare::{scenario_table, verdict_line};
use crate::report::plots::compare as plots;
use crate::rig::broker::EmbeddedBroker;
use crate::rig::options::{at_least_one_usize, positive_duration, positive_rate};
use crate::rig::progress::say;

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Scenarios to run, in this order (default: all, memory first; for a fair memory figure
    /// run it on freshly started brokers, as scripts/compare.sh does).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Brokers to measure; hubbub is started by loadgen, the others must be running
    /// (`scripts/peers.sh start`).
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Broker::Hubbub, Broker::Redis, Broker::Nats, Broker::Mosquitto])]
    pub brokers: Vec<Broker>,
    /// Runtime worker threads for the hubbub loadgen starts (its `--threads`; default one
    /// per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub hubbub_threads: Option<u16>,
    /// Where Redis listens.
    #[arg(long, default_value = "127.0.0.1:6390")]
    pub redis: SocketAddr,
    /// Where NATS listens.
    #[arg(long, default_value = "127.0.0.1:4232")]
    pub nats: SocketAddr,
    /// Where Mosquitto listens.
    #[arg(long, default_value = "127.0.0.1:1893")]
    pub mosquitto: SocketAddr,
    /// Runs of each fan-out and latency scenario per broker; medians are compared.
    #[arg(long, default_value_t = 3, value_parser = at_least_one_usize())]
    pub repeat: usize,
    /// Deliveries per fan-out run (publishes are sized to reach it).
    #[arg(long, default_value_t = 3_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub deliveries: u64,
    /// The latency scenario's fixed rate, messages per second in all.
    #[arg(long, default_value_t = 2000.0, value_parser = positive_rate)]
    pub latency_rate: f64,
    /// How long each latency run holds its rate.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub latency_duration: Duration,
    /// Idle subscribed connections in the memory scenario.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one_usize())]
    pub memory_clients: usize,
    /// The ramp scenario's ceiling: past one process's open-files limit (20,000 here), so
    /// each broker is ramped to whatever stops it first.
    #[arg(long, default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(5..))]
    pub ramp_max: u64,
    /// Where to write the comparison (default: reports/runs/<timestamp>-compare/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fail (exit status 1) when a ratio in this baseline file has fallen past its tolerance
    /// (CI's regression check: benches/baseline.json).
    #[arg(long)]
    pub check: Option<PathBuf>,
    /// With --check: write this run's ratios into the baseline instead of checking them.
    #[arg(long, requires = "check")]
    pub write_baseline: bool,
}

/// What is measured against every broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Burst fan-out: 1 publisher, 100 subscribers of its channel, 64-byte messages.
    #[value(name = "fanout-1x100")]
    Fanout1x100,
    /// Burst fan-out: 10 publishers on 10 channels, 10 subscribers of all 10, 64-byte messages.
    #[value(name = "fanout-10x10")]
    Fanout10x10,
    /// Burst fan-out: 1 publisher, 1,000 subscribers, 16-byte messages.
    #[value(name = "fanout-1x1000")]
    Fanout1x1000,
    /// Delivery latency at a fixed rate: 4 publishers, 100 subscribers of one channel.
    Latency,
    /// Memory per idle subscribed connection, at --memory-clients connections.
    Memory,
    /// Ramp each broker until something stops it.
    Ramp,
}

impl Scenario {
    /// Memory first: allocators keep what earlier connections freed, and a broker that has
    /// already held thousands of clients grows less for the next ones, so each broker is
    /// measured while as fresh as the others. The ramp last, as it takes each to its limit.
    const ALL: [Scenario; 6] = [
        Scenario::Memory,
        Scenario::Fanout1x100,
        Scenario::Fanout10x10,
        Scenario::Fanout1x1000,
        Scenario::Latency,
        Scenario::Ramp,
    ];

    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout1x100 => "fanout-1x100",
            Scenario::Fanout10x10 => "fanout-10x10",
            Scenario::Fanout1x1000 => "fanout-1x1000",
            Scenario::Latency => "latency",
            Scenario::Memory => "memory",
            Scenario::Ramp => "ramp",
        }
    }

    /// The fan-out shape: (publishers, subscribers, channels, message bytes).
    fn fanout_shape(self) -> Option<(usize, usize, usize, usize)> {
        match self {
            Scenario::Fanout1x100 => Some((1, 100, 1, 64)),
            Scenario::Fanout10x10 => Some((10, 10, 10, 64)),
            Scenario::Fanout1x1000 => Some((1, 1000, 1, 16)),
            _ => None,
        }
    }
}

/// The project's targets, as goals a comparison is judged by.
pub const GOALS: [Goal; 5] = [
    Goal {
        scenario: "fanout-1x100",
        metric: "deliveries_per_sec",
        against: &["redis", "nats"],
        factor: 1.5,
    },
    Goal {
        scenario: "fanout-10x10",
        metric: "deliveries_per_sec",
        against: &["redis", "nats"],
        factor: 1.5,
    },
    Goal {
        scenario: "fanout-1x1000",
        metric: "deliveries_per_sec",
        against: &["redis", "nats"],
        factor: 2.0,
    },
    Goal {
        scenario: "latency",
        metric: "p99_ms",
        against: &["redis", "nats"],
        factor: 0.6,
    },
    Goal {
        scenario: "memory",
        metric: "rss_per_conn_bytes",
        against: &["mosquitto"],
        factor: 1.0,
    },
];

/// The brokers a comparison can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Broker {
    Hubbub,
    Redis,
    Nats,
    Mosquitto,
}

impl Broker {
    pub fn name(self) -> &'static str {
        match self {
            Broker::Hubbub => "hubbub",
            Broker::Redis => "redis",
            Broker::Nats => "nats",
            Broker::Mosquitto => "mosquitto",
        }
    }

    pub fn proto(self) -> Proto {
        match self {
            Broker::Hubbub => Proto::Hubbub,
            Broker::Redis => Proto::Redis,
            Broker::Nats => Proto::Nats,
            Broker::Mosquitto => Proto::Mqtt,
        }
    }
}

/// A broker found running: where it listens and which process it is.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub broker: Broker,
    pub addr: SocketAddr,
    pub pid: u32,
}

/// Everything one comparison measured; the plots are drawn from it.
#[derive(Default)]
struct Collected {
    measurements: Vec<Measurement>,
    /// Per broker: the latency histogram of its median run.
    spectra: Vec<(String, Histogram<u64>)>,
    /// Per broker: its ramp's steps.
    ramps: Vec<(String, Vec<StepResult>)>,
    slo_p99_us: u64,
}

pub async fn run(opts: Opts, interrupt: &CancellationToken) -> anyhow::Result<Outcome> {
    let scenarios = if opts.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        opts.scenarios.clone()
    };
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| report::default_out("compare"));
    report::create_dir(&out)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let threads: Vec<String> = match opts.hubbub_threads {
        Some(n) => vec!["--threads".into(), n.to_string()],
        None => Vec::new(),
    };
    let embedded = match opts.brokers.contains(&Broker::Hubbub) {
        true => Some(EmbeddedBroker::start(&threads)?),
        false => None,
    };
    let brokers = find_brokers(&opts, embedded.as_ref())?;
    say(&format!(
        "compare: {} against {}; report in {}",
        scenarios
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        brokers
            .iter()
            .map(|b| format!("{} at {} (pid {})", b.broker.name(), b.addr, b.pid))
            .collect::<Vec<_>>()
            .join(", "),
        out.display()
    ));
    let mut got = Collected::default();
    for &scenario in &scenarios {
        if interrupt.is_cancelled() {
            break;
        }
        say(&format!("== {}", scenario.name()));
        let at = scenarios::At {
            opts: &opts,
            brokers: &brokers,
            out: &out,
            interrupt,
        };
        match scenario {
            Scenario::Latency => scenarios::latency(&at, &mut got).await,
            Scenario::Memory => scenarios::memory(&at, &mut got).await,
            Scenario::Ramp => scenarios::ramp(&at, &mut got).await,
            fan => scenarios::fanout(&at, fan, &mut got).await,
        }
        // Written after every scenario, so an interrupted comparison keeps what it measured.
        write_report(&out, &opts, &scenarios, &got)?;
    }
    println!("{}", markdown(&opts, &scenarios, &got));
    say(&format!("report written to {}", out.display()));
    if let Some(broker) = embedded {
        broker.stop().await?;
    }
    if interrupt.is_cancelled() {
        return Ok(Outcome::Interrupted);
    }
    match &opts.check {
        Some(path) => check_baseline(path, opts.write_baseline, &got.measurements),
        None => Ok(Outcome::Passed),
    }
}

/// Checks the run against the baseline at `path` (or, with `write`, refreshes it); a ratio
/// fallen past its tolerance misses the objective (exit status 3).
fn check_baseline(path: &Path, write: bool, all: &[Measurement]) -> anyhow::Result<Outcome> {
    let current = baseline::read(path)?;
    if write {
        baseline::write(path, &baseline::refreshed(&current, all)?)?;
        println!("baseline written to {}", path.display());
        return Ok(Outcome::Passed);
    }
    let checks = baseline::check(&current, all);
    println!("regression check against {}:", path.display());
    for c in &checks {
        println!("{}", c.line());
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    if failed > 0 {
        say(&format!(
            "{failed} of {} ratios fell past their tolerance (see above); if the change is \
             meant, refresh the baseline as the README says",
            checks.len()
        ));
        return Ok(Outcome::ObjectiveMissed);
    }
    Ok(Outcome::Passed)
}

/// Where each broker listens and its pid: hubbub is the one loadgen started; the others are
/// found by the process listening on their port.
fn find_brokers(opts: &Opts, embedded: Option<&EmbeddedBroker>) -> anyhow::Result<Vec<Running>> {
    let mut brokers = Vec::new();
    for &broker in &opts.brokers {
        let (addr, pid) = match (broker, embedded) {
            (Broker::Hubbub, Some(b)) => (b.addr, b.pid),
            (Broker::Hubbub, None) => unreachable!("hubbub is started when asked for"),
            (Broker::Redis, _) => peer(broker, opts.redis)?,
            (Broker::Nats, _) => peer(broker, opts.nats)?,
            (Broker::Mosquitto, _) => peer(broker, opts.mosquitto)?,
        };
        brokers.push(Running { broker, addr, pid });
    }
    Ok(brokers)
}

fn peer(broker: Broker, addr: SocketAddr) -> anyhow::Result<(SocketAddr, u32)> {
    match listener::pid_listening_on(addr.port()) {
        Some(pid) => Ok((addr, pid)),
        None => bail!(
            "nothing listens on {addr} for {name}: start it with `scripts/peers.sh start {name}`, \
             or leave it out with --brokers",
            name = broker.name()
        ),
    }
}

/// The whole comparison in markdown: per scenario what ran and the table, then the goals.
fn markdown(opts: &Opts, scenarios: &[Scenario], got: &Collected) -> String {
    let mut md = String::from("# hubbub compared with Redis, NATS and Mosquitto\n\n");
    let _ = writeln!(
        md,
        "Measured by `{}`. Ratios are hubbub ÷ the broker in that row (for latency and memory, \
         lower is better, so a ratio under 1 favours hubbub).\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let verdicts: Vec<String> = GOALS
        .iter()
        .filter_map(|g| judge(&got.measurements, *g))
        .map(|v| format!("- {}", verdict_line(&v)))
        .collect();
    if !verdicts.is_empty() {
        let _ = writeln!(md, "## Targets\n\n{}\n", verdicts.join("\n"));
    }
    for s in scenarios {
        let _ = writeln!(md, "## {}\n\n{}\n", s.name(), describe(opts, *s));
        md.push_str(&scenario_table(&got.measurements, s.name()));
        md.push('\n');
    }
    md
}

/// What a scenario does, in a sentence, with its sizes.
fn describe(opts: &Opts, s: Scenario) -> String {
    match s.fanout_shape() {
        Some((p, sub, c, size)) => format!(
            "Burst fan-out: {p} publisher(s) on {c} channel(s), {sub} subscribers each subscribed \
             to every channel, {size}-byte messages, about {} deliveries per run; publishers stay \
             at most 5,000 messages ahead of the slowest subscriber. {} runs per broker, \
             interleaved. Chart: `fanout.png`.",
            opts.deliveries, opts.repeat
        ),
        None => match s {
            Scenario::Latency => format!(
                "`loadgen latency`: 4 publishers, 100 subscribers of one channel, 64-byte \
                 messages at {} msg/s for {}, latency from each message's intended send time. \
                 {} runs per broker, interleaved. Chart: `latency.png` (each broker's median run).",
                opts.latency_rate,
                humantime::format_duration(opts.latency_duration),
                opts.repeat
            ),
            Scenario::Memory => format!(
                "`loadgen memory`: {} idle connections, each subscribed to one of 100 channels; \
                 growth of the broker's resident memory over its idle baseline, per connection. \
                 {} runs per broker. Chart: `memory.png`.",
                opts.memory_clients, opts.repeat
            ),
            _ => format!(
                "`loadgen ramp --max-clients {} --step {} --hold 3s`: subscribers added step by \
                 step, 2,000 msg/s over 1,000 channels at each step, until a step fails. Chart: \
                 `ramp.png`; every broker's own report is in `detail/`.",
                opts.ramp_max,
                opts.ramp_max / 5
            ),
        },
    }
}

fn write_report(
    out: &Path,
    opts: &Opts,
    scenarios: &[Scenario],
    got: &Collected,
) -> anyhow::Result<()> {
    crate::report::compare::write_csv(&out.join("comparison.csv"), &got.measurements)?;
    std::fs::write(
        out.join("comparison.json"),
        serde_json::to_string_pretty(&got.measurements)?,
    )?;
    std::fs::write(out.join("comparison.md"), markdown(opts, scenarios, got))?;
    let fanouts: Vec<&str> = scenarios
        .iter()
        .filter(|s| s.fanout_shape().is_some())
        .map(|s| s.name())
        .collect();
    plots::fanout(&out.join("fanout.png"), &got.measurements, &fanouts)?;
    plots::memory(&out.join("memory.png"), &got.measurements)?;
    plots::spectra(&out.join("latency.png"), &got.spectra, got.slo_p99_us)?;
    plots::ramps(&out.join("ramp.png"), &got.ramps, got.slo_p99_us)?;
    Ok(())
}
