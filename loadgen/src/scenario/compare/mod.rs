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
mod setup;

use self::setup::Collected;
pub use self::setup::{Broker, Opts, Running, Scenario, GOALS};

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::model::compare::{judge, Measurement};
use crate::model::units::grouped;
use crate::model::Outcome;
use crate::os::listener;
use crate::proto::Proto;
use crate::report;
use crate::report::compare::{scenario_table, verdict_line};
use crate::report::plots::compare as plots;
use crate::rig::broker::UnderTest;
use crate::rig::progress::say;

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
        true => Some(UnderTest::resolve(&[], &[], Proto::Hubbub, &threads)?),
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
fn find_brokers(opts: &Opts, embedded: Option<&UnderTest>) -> anyhow::Result<Vec<Running>> {
    let mut brokers = Vec::new();
    for &broker in &opts.brokers {
        let (addr, pid) = match (broker, embedded) {
            (Broker::Hubbub, Some(b)) => (b.addrs[0], b.pids[0]),
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
    let runs = format!("{} run(s) per broker, interleaved", opts.repeat);
    let fan_setup = format!(
        "about {} deliveries per run, publishers at most 5,000 messages ahead of the slowest \
         subscriber; {runs}; on loopback, brokers and loadgen sharing the machine",
        grouped(opts.deliveries)
    );
    plots::fanout(
        &out.join("fanout.png"),
        &got.measurements,
        &fanouts,
        &fan_setup,
    )?;
    let mem_setup = format!(
        "{} idle connections, each subscribed to one of 100 channels; growth of the broker's \
         resident memory over its idle baseline, per connection; {runs}",
        grouped(opts.memory_clients as u64)
    );
    plots::memory(&out.join("memory.png"), &got.measurements, &mem_setup)?;
    let lat_setup = format!(
        "4 publishers, 100 subscribers of one channel, 64 B messages at {} msg/s for {}; {runs}",
        grouped(opts.latency_rate.round() as u64),
        humantime::format_duration(opts.latency_duration)
    );
    plots::spectra(
        &out.join("latency.png"),
        &got.spectra,
        got.slo_p99_us,
        &lat_setup,
    )?;
    let ramp_setup = format!(
        "up to {} subscribers in steps of {} over 1,000 channels, 2,000 msg/s for 3s per step",
        grouped(opts.ramp_max),
        grouped(opts.ramp_max / 5)
    );
    plots::ramps(
        &out.join("ramp.png"),
        &got.ramps,
        got.slo_p99_us,
        &ramp_setup,
    )?;
    Ok(())
}
