//! Burst fan-out: publishers send a fixed number of messages to subscribers of every channel as
//! fast as the broker delivers them; the result is deliveries per second. It runs against any
//! protocol in [`crate::proto`], so the same burst can be timed on hubbub, Redis, NATS and
//! Mosquitto.
//!
//! The publishers are flow-controlled against the slowest subscriber (together at most
//! `window` messages ahead of it) so that the measurement is of delivery speed, not of how fast
//! a broker can drop slow consumers (or, for Mosquitto, silently drop their messages).
//!
//! `--subscribers 1,10,100` sweeps the fan-out: `--repeat` runs at each count, in the order
//! given. `--deliveries N` sizes each count's bursts to about N deliveries, so that every run
//! does a comparable amount of work however many subscribers share each message; `--out DIR`
//! writes every run to `fanout.csv`, the medians to `summary.md` and both to `fanout.png`.

mod burst;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use tokio_util::sync::CancellationToken;

pub use self::burst::measure;
use crate::model::fanout::{medians, publishes_per_publisher, RunRow, Spec};
use crate::model::median;
use crate::model::units::{grouped, plural};
use crate::proto::Proto;
use crate::report;
use crate::report::fanout::{medians_text, write_report};
use crate::rig::broker::UnderTest;
use crate::rig::options::at_least_one_usize;
use crate::rig::progress::say;

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Broker to measure (HOST:PORT); without it loadgen starts its own (hubbub) on a free port.
    #[arg(long)]
    pub target: Option<SocketAddr>,
    /// The protocol the target speaks (`scripts/peers.sh start` runs the others on loopback).
    #[arg(long, value_enum, default_value_t = Proto::Hubbub)]
    pub proto: Proto,
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
    /// Messages each publisher sends per run.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub publishes: u64,
    /// Deliveries per run instead of --publishes: each publisher sends
    /// max(1, N / (publishers × subscribers)), so runs at every subscriber count do about as
    /// much work.
    #[arg(long, conflicts_with = "publishes", value_parser = clap::value_parser!(u64).range(1..))]
    pub deliveries: Option<u64>,
    /// Payload bytes per message (hubbub carries them as a JSON string, two quotes more).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Most messages the publishers together may be ahead of the slowest subscriber.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
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
            publishes: publishes_per_publisher(
                self.deliveries,
                self.publishes,
                self.publishers,
                subscribers,
            ),
            size: self.size,
            window: self.window,
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

pub async fn run(opts: Opts, interrupt: &CancellationToken) -> anyhow::Result<()> {
    check_counts(&opts.subscribers)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| report::default_out("fanout"));
    report::create_dir(&out)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let targets: Vec<SocketAddr> = opts.target.into_iter().collect();
    let broker = UnderTest::resolve(&targets, &[], opts.proto, &[])?;
    let setup = setup_text(&opts, &broker.describe());
    let mut rows = Vec::new();
    let swept = sweep(&opts, &broker, &mut rows, interrupt).await;
    if swept.is_ok() && opts.subscribers.len() > 1 {
        print!("{}", medians_text(&medians(&rows)));
    }
    // A sweep that failed part-way still reports the runs it finished.
    let written = match rows.is_empty() {
        false => write_report(&out, &setup, &rows).map(|()| {
            say(&format!("report written to {}", out.display()));
        }),
        true => Ok(()),
    };
    broker.stop().await?;
    swept?;
    Ok(written?)
}

/// `--repeat` runs at each subscriber count, each printed and added to `rows` as it ends,
/// then the count's median.
async fn sweep(
    opts: &Opts,
    broker: &UnderTest,
    rows: &mut Vec<RunRow>,
    interrupt: &CancellationToken,
) -> anyhow::Result<()> {
    let addr = broker.addrs[0];
    let broker = broker.describe();
    for &subscribers in &opts.subscribers {
        let spec = opts.spec(subscribers);
        println!(
            "fan-out: {} publisher(s) × {} publishes of {} B on {} channel(s) to {} subscribers, \
             {broker}",
            spec.publishers, spec.publishes, spec.size, spec.channels, spec.subscribers,
        );
        let mut rates = Vec::new();
        for i in 0..opts.repeat {
            if interrupt.is_cancelled() {
                // The runs so far stand; the report is written with them.
                return Ok(());
            }
            let tag = format!("{}-{subscribers}-{i}", std::process::id());
            let r = measure(addr, opts.proto, &spec, &tag)
                .await
                .with_context(|| format!("{subscribers} subscribers, run {}", i + 1))?;
            println!(
                "run {}: {} deliveries in {:.3} s = {:.0} deliveries/s",
                i + 1,
                r.deliveries,
                r.elapsed.as_secs_f64(),
                r.per_second()
            );
            rates.push(r.per_second());
            rows.push(RunRow::new(&spec, i + 1, &r));
        }
        if let Some(m) = median(rates) {
            println!("median: {m:.0} deliveries/s");
        }
    }
    Ok(())
}

/// What was measured, in a line short enough for the chart's subtitle: `broker` is
/// "hubbub started by loadgen" or "{proto} at {addr}".
fn setup_text(opts: &Opts, broker: &str) -> String {
    let work = match opts.deliveries {
        Some(n) => format!("about {} deliveries per run", grouped(n)),
        None => format!("{} publishes per publisher per run", opts.publishes),
    };
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
        assert_eq!(o.spec(100).publishes, 100_000);
        let o = fanout_opts(&["--subscribers", "1,10,100", "--deliveries", "1000"]).unwrap();
        assert_eq!(o.subscribers, [1, 10, 100]);
        assert_eq!(o.spec(10).publishes, 100);
        assert!(fanout_opts(&["--deliveries", "10", "--publishes", "10"]).is_err());
        assert!(check_counts(&[1, 10]).is_ok());
        assert!(check_counts(&[]).is_err());
        assert!(check_counts(&[1, 0]).is_err());
        assert!(check_counts(&[10, 1, 10]).is_err());
    }
}
