//! Fan-out at steady state: publishers send to subscribers of every channel as fast as the
//! broker delivers (at most `--window` messages ahead of the slowest subscriber, so the figure
//! is of delivery speed, not of how fast a broker drops slow consumers), through a warm-up that
//! is not counted and then a measured window counted second by second. Each run says whether
//! it was steady and what set its rate (the broker, loadgen, the window or the machine). It runs
//! against any protocol in [`crate::proto`], so the same run can be timed on hubbub, Redis,
//! NATS and Mosquitto.
//!
//! `--subscribers 1,10,100` sweeps the fan-out: `--repeat` runs at each count, in the order
//! given; the report has every run in `fanout.csv`, the medians with their spread in
//! `summary.md`, and both in `fanout.png`.

mod burst;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio_util::sync::CancellationToken;

pub use self::burst::measure;
use crate::model::fanout::{medians, RunRow, Spec};
use crate::model::median;
use crate::model::units::{grouped, plural};
use crate::os::read_limits;
use crate::proto::credentials::AuthOpts;
use crate::proto::dial::Dial;
use crate::proto::tls::TlsOpts;
use crate::proto::Proto;
use crate::report;
use crate::report::fanout::{medians_text, write_report, FanoutSummary};
use crate::rig::broker::UnderTest;
use crate::rig::options::{at_least_one_usize, positive_duration};
use crate::rig::progress::{say, Out};
use crate::rig::provenance;

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Broker to measure (HOST:PORT); without it loadgen starts its own (hubbub) on a free port.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// Process id of the --target broker, timed to say what set each rate.
    #[arg(long, requires = "target")]
    pub broker_pid: Option<u32>,
    /// The protocol the target speaks (`scripts/peers.sh start` runs the others on loopback).
    #[arg(long, value_enum, default_value_t = Proto::Hubbub)]
    pub proto: Proto,
    #[command(flatten)]
    pub tls: TlsOpts,
    #[command(flatten)]
    pub auth: AuthOpts,
    /// Publisher connections; publisher p publishes on channel p mod channels.
    #[arg(long, default_value_t = 1, value_parser = at_least_one_usize())]
    pub publishers: usize,
    /// Subscriber connections, each subscribed to every channel; a comma-separated list
    /// (`1,10,100,1000`) measures each count in turn.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub subscribers: Vec<usize>,
    /// Channels.
    #[arg(long, default_value_t = 1, value_parser = at_least_one_usize())]
    pub channels: usize,
    /// Time from the start of publishing that is not counted: connections warm up, buffers
    /// fill, the rate settles.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub warmup: Duration,
    /// The measured window after the warm-up, counted second by second.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
    /// Payload bytes per message (hubbub carries them as a JSON string, two quotes more).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Most messages the publishers together may be ahead of the slowest subscriber.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: u64,
    /// Runs at each subscriber count; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = at_least_one_usize())]
    pub repeat: usize,
    /// Where to write `fanout.csv` (every run), `summary.md` (medians) and `fanout.png`
    /// (default: reports/runs/<timestamp>-fanout/).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Opts {
    /// The burst measured at `subscribers` subscribers.
    pub fn spec(&self, subscribers: usize) -> Spec {
        Spec {
            publishers: self.publishers,
            subscribers,
            channels: self.channels,
            size: self.size,
            window: self.window,
            warmup: self.warmup,
            duration: self.duration,
        }
    }
}

/// Rejects subscriber lists that cannot be swept: empty, a zero, or a count twice (whose runs
/// would mix in one median).
fn check_counts(counts: &[usize]) -> anyhow::Result<()> {
    if counts.is_empty() || counts.contains(&0) {
        bail!("--subscribers needs counts of at least 1");
    }
    for (i, c) in counts.iter().enumerate() {
        if counts[..i].contains(c) {
            bail!("--subscribers lists {c} twice");
        }
    }
    Ok(())
}

pub async fn run(opts: Opts, interrupt: &CancellationToken, out: Out) -> anyhow::Result<()> {
    check_counts(&opts.subscribers)?;
    if opts.tls.tls_ca.is_some() && opts.target.is_none() {
        bail!("--tls-ca needs --target: the hubbub loadgen starts itself speaks no TLS");
    }
    let auth = opts
        .auth
        .credentials(opts.proto)
        .map_err(anyhow::Error::msg)?;
    let dial = Dial::new(opts.proto, opts.tls.client()?).with_auth(auth);
    let dir = opts
        .out
        .clone()
        .unwrap_or_else(|| report::default_out("fanout"));
    report::create_dir(&dir)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let targets: Vec<SocketAddr> = opts.target.into_iter().collect();
    let pids: Vec<u32> = opts.broker_pid.into_iter().collect();
    let broker = UnderTest::resolve(&targets, &pids, opts.proto, &[])?;
    let over = match opts.tls.tls_ca.is_some() {
        true => " over TLS",
        false => "",
    };
    let setup = setup_text(&opts, &format!("{}{over}", broker.describe()));
    let named = [(opts.proto.to_string(), opts.proto, broker.addrs[0])];
    let limits = read_limits(broker.pids.first().copied(), 1);
    let provenance = provenance::gather_as(&named, &limits, &dial.auth).await;
    let mut rows = Vec::new();
    let swept = sweep(&opts, &dial, &broker, &mut rows, interrupt, out).await;
    if swept.is_ok() && opts.subscribers.len() > 1 {
        out.line(&medians_text(&medians(&rows)));
    }
    // A sweep that failed part-way still reports the runs it finished.
    let written = match rows.is_empty() {
        false => write_report(&dir, &setup, &rows, &provenance).map(|()| {
            say(&format!("report written to {}", dir.display()));
        }),
        true => Ok(()),
    };
    out.summary(&FanoutSummary {
        setup: &setup,
        runs: &rows,
        provenance: &provenance,
    })?;
    broker.stop().await?;
    swept?;
    Ok(written?)
}

/// `--repeat` runs at each subscriber count, each printed and added to `rows` as it ends,
/// then the count's median.
async fn sweep(
    opts: &Opts,
    dial: &Dial,
    broker: &UnderTest,
    rows: &mut Vec<RunRow>,
    interrupt: &CancellationToken,
    out: Out,
) -> anyhow::Result<()> {
    let (addr, pid) = (broker.addrs[0], broker.pids.first().copied());
    let broker = broker.describe();
    for &subscribers in &opts.subscribers {
        let spec = opts.spec(subscribers);
        out.line(&format!(
            "fan-out: {} publisher(s) of {} B messages on {} channel(s) to {} subscribers, window \
             {}, {} warm-up then {} measured; {broker}",
            spec.publishers,
            spec.size,
            spec.channels,
            spec.subscribers,
            grouped(spec.window),
            humantime::format_duration(spec.warmup),
            humantime::format_duration(spec.duration),
        ));
        let mut rates = Vec::new();
        for i in 0..opts.repeat {
            if interrupt.is_cancelled() {
                // The runs so far stand; the report is written with them.
                return Ok(());
            }
            let tag = format!("{}-{subscribers}-{i}", std::process::id());
            let r = measure(addr, pid, dial.clone(), &spec, &tag)
                .await
                .with_context(|| format!("{subscribers} subscribers, run {}", i + 1))?;
            out.line(&format!(
                "run {}: {:.0} deliveries/s over {:.1} s ({}, cv {:.1}%, trend {:+.1}%); {}: {}",
                i + 1,
                r.rate(),
                r.elapsed.as_secs_f64(),
                if r.steadiness.steady {
                    "steady"
                } else {
                    "NOT steady"
                },
                r.steadiness.cv * 100.0,
                r.steadiness.trend * 100.0,
                r.bottleneck.class.name(),
                r.bottleneck.evidence,
            ));
            rates.push(r.rate());
            rows.push(RunRow::new(&spec, i + 1, &r));
        }
        if let Some(m) = median(rates) {
            out.line(&format!("median: {m:.0} deliveries/s"));
        }
    }
    Ok(())
}

/// What was measured, in a line short enough for the chart's subtitle: `broker` is
/// "hubbub started by loadgen" or "{proto} at {addr}".
fn setup_text(opts: &Opts, broker: &str) -> String {
    let work = format!(
        "window {}, {} warm-up then {} measured",
        grouped(opts.window),
        humantime::format_duration(opts.warmup),
        humantime::format_duration(opts.duration)
    );
    format!(
        "{}, {}, {} B messages, {work}, {} per subscriber count; {broker}",
        plural(opts.publishers, "publisher"),
        plural(opts.channels, "channel"),
        opts.size,
        plural(opts.repeat, "run"),
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn fanout_opts(args: &[&str]) -> Result<Opts, clap::Error> {
        let all = ["loadgen", "fanout"].iter().chain(args);
        match crate::Opts::try_parse_from(all)?.command {
            crate::Command::Fanout(o) => Ok(o),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn subscriber_lists() {
        let o = fanout_opts(&[]).unwrap();
        assert_eq!(o.subscribers, [100]);
        assert_eq!(o.spec(100).duration, Duration::from_secs(10));
        assert_eq!(o.spec(100).warmup, Duration::from_secs(2));
        let o = fanout_opts(&["--subscribers", "1,10,100", "--duration", "3s"]).unwrap();
        assert_eq!(o.subscribers, [1, 10, 100]);
        assert_eq!(o.spec(10).duration, Duration::from_secs(3));
        assert!(fanout_opts(&["--duration", "0s"]).is_err());
        assert!(check_counts(&[1, 10]).is_ok());
        assert!(check_counts(&[]).is_err());
        assert!(check_counts(&[1, 0]).is_err());
        assert!(check_counts(&[10, 1, 10]).is_err());
    }
}
