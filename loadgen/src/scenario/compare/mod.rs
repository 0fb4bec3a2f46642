//! `loadgen compare`: the same scenarios against hubbub, Redis, NATS and Mosquitto in one run,
//! so every figure has its peers' beside it, measured by the same harness on the same machine
//! minutes apart; and against the plain tokio broker of benches/, the baseline a design of
//! hubbub's complexity has to beat.
//!
//! Repeated scenarios are interleaved (hubbub, redis, nats, mosquitto, hubbub, …), so a noisy
//! minute on a shared machine falls on every broker rather than on one. Each scenario runs the
//! same code a user reaches through its own command (`fanout`, `latency`, `memory`, `ramp`),
//! with the options that command would take; a failed run is recorded with its reason and the
//! comparison goes on.
//!
//! # Layout
//! - this file: the run, finding the brokers, the baseline check.
//! - `setup`: the options, the scenarios and brokers, the goals.
//! - `scenarios`: one function per kind of scenario, measuring every broker; `closed_loop` those
//!   measured by repeated closed-loop runs (fan-out, connect + subscribe); `tls` the same
//!   with TLS and without, side by side.
//! - `written`: the comparison's files (markdown, CSV, JSON, charts).
//! - [`baseline`]: CI's regression check against committed ratios.
//! - the measurements and goals are [`crate::model::compare`]; the tables
//!   [`crate::report::compare`], the overlay charts [`crate::report::plots::compare`].

pub mod baseline;
mod closed_loop;
mod scenarios;
mod setup;
mod tls;
mod written;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::bail;
use tokio_util::sync::CancellationToken;

pub use self::setup::{goals, Broker, Opts, Running, Scenario};
use self::setup::{hubbub_args, Collected};
use self::written::write_report;
use crate::model::Outcome;
use crate::os::listener;
use crate::os::read_limits;
use crate::proto::Proto;
use crate::report;
use crate::rig::broker::UnderTest;
use crate::rig::progress::{say, Out};
use crate::rig::provenance;

pub async fn run(
    opts: Opts,
    interrupt: &CancellationToken,
    out_to: Out,
) -> anyhow::Result<Outcome> {
    let mut scenarios = if opts.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        opts.scenarios.clone()
    };
    // Memory first, whatever the order asked: after traffic a broker's resident memory holds
    // buffers it returns slowly, and the idle connections' growth would be measured from that.
    scenarios.sort_by_key(|s| *s != Scenario::Memory);
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| report::default_out("compare"));
    report::create_dir(&out)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let embedded = match opts.brokers.contains(&Broker::Hubbub) {
        true => Some(UnderTest::resolve(
            &[],
            &[],
            Proto::Hubbub,
            &hubbub_args(&opts),
        )?),
        false => None,
    };
    let mut brokers = find_brokers(&opts, embedded.as_ref())?;
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
    let named: Vec<_> = brokers
        .iter()
        .map(|b| (b.broker.name().to_string(), b.broker.proto(), b.addr))
        .collect();
    let limits = read_limits(brokers.first().map(|b| b.pid), 1);
    let mut got = Collected {
        provenance: provenance::gather(&named, &limits).await,
        ..Collected::default()
    };
    for &scenario in &scenarios {
        if interrupt.is_cancelled() {
            break;
        }
        say(&format!("== {}", scenario.name()));
        if scenario == Scenario::Memory {
            // It may restart the peers, which gives them new pids.
            scenarios::memory(&opts, &mut brokers, interrupt, &mut got).await;
            write_report(&out, &opts, &scenarios, &got)?;
            continue;
        }
        let at = scenarios::At {
            opts: &opts,
            brokers: &brokers,
            out: &out,
            interrupt,
        };
        match scenario {
            Scenario::Latency => scenarios::latency(&at, &mut got).await,
            Scenario::Connect => closed_loop::connect(&at, &mut got).await,
            Scenario::Ramp => scenarios::ramp(&at, &mut got).await,
            Scenario::Sustainable => scenarios::sustainable(&at, &mut got).await,
            Scenario::Memory => unreachable!("measured above"),
            s if s.tls_halves().is_some() => tls::measure(&at, s, &mut got).await,
            fan => closed_loop::fanout(&at, fan, &mut got).await,
        }
        // Written after every scenario, so an interrupted comparison keeps what it measured.
        write_report(&out, &opts, &scenarios, &got)?;
    }
    out_to.line(&written::markdown(&opts, &scenarios, &got));
    out_to.summary(&written::Comparison::of(&got))?;
    say(&format!("report written to {}", out.display()));
    if let Some(broker) = embedded {
        broker.stop().await?;
    }
    if interrupt.is_cancelled() {
        return Ok(Outcome::Interrupted);
    }
    match &opts.check {
        Some(path) => check_baseline(path, opts.write_baseline, &got, out_to),
        None => Ok(Outcome::Passed),
    }
}

/// Checks the run against the baseline at `path` (or, with `write`, refreshes it); a ratio
/// fallen past its tolerance misses the objective (exit status 3).
fn check_baseline(path: &Path, write: bool, got: &Collected, out: Out) -> anyhow::Result<Outcome> {
    let all = &got.measurements;
    let current = baseline::read(path)?;
    if write {
        let mut next = baseline::refreshed(&current, all)?;
        next.measured_by = format!("`{}` on {}", got.provenance.command, got.provenance.line());
        baseline::write(path, &next)?;
        say(&format!("baseline written to {}", path.display()));
        return Ok(Outcome::Passed);
    }
    let checks = baseline::check(&current, all);
    out.line(&format!("regression check against {}:", path.display()));
    for c in &checks {
        out.line(&c.line());
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
            (Broker::PlainTokio, _) => peer(broker, opts.plain_tokio)?,
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
