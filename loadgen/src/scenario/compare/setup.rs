//! What a comparison is: its options, the scenarios and brokers it can measure, the goals it
//! is judged by, and what it collects. Shared by the orchestration (`compare`) and the
//! measuring (`scenarios`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::model::compare::{Goal, Measurement};
use crate::proto::Proto;
use crate::report::plots::compare::{Ramp, Spectrum};
use crate::rig::options::{at_least_one_usize, positive_duration};

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Scenarios to run, in this order but memory always first (default: all); for a fair
    /// memory figure the brokers should also be freshly started, as scripts/compare.sh does.
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Brokers to measure; hubbub is started by loadgen, the others must be running
    /// (`scripts/peers.sh start`).
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Broker::Hubbub, Broker::Redis, Broker::Nats, Broker::Mosquitto,
                              Broker::PlainTokio])]
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
    /// Where the plain tokio baseline broker (`plain-broker`, built from benches/) listens.
    #[arg(long, default_value = "127.0.0.1:4250")]
    pub plain_tokio: SocketAddr,
    /// Where Redis listens for TLS (its tls-port), for the TLS scenarios.
    #[arg(long, default_value = "127.0.0.1:6391")]
    pub redis_tls: SocketAddr,
    /// Where the NATS that requires TLS listens (a second process: nats-server 2.9 has TLS
    /// for all of a server's clients or none).
    #[arg(long, default_value = "127.0.0.1:4233")]
    pub nats_tls: SocketAddr,
    /// Where Mosquitto's TLS listener listens.
    #[arg(long, default_value = "127.0.0.1:8893")]
    pub mosquitto_tls: SocketAddr,
    /// The TLS scenarios' certificates, as `scripts/peers.sh start` makes them: `ca.pem`
    /// (trusted by loadgen), `server.pem` and `server.key` (the hubbub loadgen starts with TLS).
    #[arg(long, value_name = "DIR", default_value = "target/peers/tls")]
    pub tls_dir: PathBuf,
    /// Runs of each scenario per broker (but the ramp's and the sustainable rate's, one each);
    /// medians are compared.
    #[arg(long, default_value_t = 3, value_parser = at_least_one_usize())]
    pub repeat: usize,
    /// In-flight windows the fan-out scenarios run at (messages the publishers may be ahead
    /// of the slowest subscriber), each a scenario of its own.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub windows: Vec<u64>,
    /// Time each fan-out, latency and sustainable-rate run publishes before it counts.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub warmup: Duration,
    /// How long each of those runs counts, after the warm-up.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub duration: Duration,
    /// How long each rate of the sustainable-rate search is counted, after a 1 s warm-up:
    /// shorter than --duration, as the search tries a dozen rates.
    #[arg(long, default_value = "4s", value_parser = positive_duration)]
    pub search_hold: Duration,
    /// Idle subscribed connections in the memory scenarios.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one_usize())]
    pub memory_clients: usize,
    /// A command that restarts one peer, run with the peer's name as its last argument before
    /// each memory shape, so that every shape is measured on a freshly started broker
    /// (scripts/compare.sh passes `bash scripts/peers.sh restart`). A broker keeps much of
    /// the memory it once used, so a shape measured after another reads too little. hubbub
    /// gets a fresh process of loadgen's own for each shape either way.
    #[arg(long, value_name = "COMMAND")]
    pub restart_peers: Option<String>,
    /// The ramp scenario's ceiling: past one process's open-files limit (20,000 here), so
    /// each broker is ramped to whatever stops it first.
    #[arg(long, default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(5..))]
    pub ramp_max: u64,
    /// Where to write the comparison (default: reports/runs/<timestamp>-compare/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fail (exit status 3) when a ratio in this baseline file has fallen past its tolerance
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
    /// Fan-out at steady state: 1 publisher, 100 subscribers of its channel, 64-byte
    /// messages, at each of --windows.
    #[value(name = "fanout-1x100")]
    Fanout1x100,
    /// Fan-out: 10 publishers on 10 channels, 10 subscribers of all 10, 64-byte messages.
    #[value(name = "fanout-10x10")]
    Fanout10x10,
    /// Fan-out: 1 publisher, 1,000 subscribers, 16-byte messages.
    #[value(name = "fanout-1x1000")]
    Fanout1x1000,
    /// The highest rate delivered in full within the p99 objective, 1 publisher to 100
    /// subscribers (`loadgen throughput`): the headline throughput figure.
    Sustainable,
    /// Delivery latency at a fixed rate: 20,000 msg/s 1 → 10, and 2,000 msg/s 4 → 100.
    Latency,
    /// Memory per idle subscribed connection, over 100 shared channels and a channel each.
    Memory,
    /// Connect + subscribe at steady state: 64 connectors each connecting, subscribing to
    /// one of 1,000 channels (confirmed) and leaving, over and over; connects per second.
    Connect,
    /// fanout-1x100 at a window of 1,000, every broker that has TLS with it and without,
    /// interleaved: what TLS costs each broker's fan-out.
    #[value(name = "fanout-1x100-tls")]
    Fanout1x100Tls,
    /// connect, every broker that has TLS with it and without, interleaved: what a TLS
    /// handshake costs each broker's connects.
    #[value(name = "connect-tls")]
    ConnectTls,
    /// Ramp each broker until something stops it.
    Ramp,
}

impl Scenario {
    /// Memory first: allocators keep what earlier connections freed, and a broker that has
    /// already held thousands of clients grows less for the next ones, so each broker is
    /// measured while as fresh as the others. The ramp last, as it takes each to its limit.
    pub const ALL: [Scenario; 10] = [
        Scenario::Memory,
        Scenario::Fanout1x100,
        Scenario::Fanout10x10,
        Scenario::Fanout1x1000,
        Scenario::Sustainable,
        Scenario::Latency,
        Scenario::Connect,
        Scenario::Fanout1x100Tls,
        Scenario::ConnectTls,
        Scenario::Ramp,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout1x100 => "fanout-1x100",
            Scenario::Fanout10x10 => "fanout-10x10",
            Scenario::Fanout1x1000 => "fanout-1x1000",
            Scenario::Sustainable => "sustainable",
            Scenario::Latency => "latency",
            Scenario::Memory => "memory",
            Scenario::Connect => "connect",
            Scenario::Fanout1x100Tls => "fanout-1x100-tls",
            Scenario::ConnectTls => "connect-tls",
            Scenario::Ramp => "ramp",
        }
    }

    /// A TLS scenario's two halves: the names its runs without TLS and with it are reported
    /// under, each a table of its own, and the TLS ÷ plain ratio per broker between them.
    pub fn tls_halves(self) -> Option<(&'static str, &'static str)> {
        match self {
            Scenario::Fanout1x100Tls => {
                Some(("fanout-1x100-w1000-plain", "fanout-1x100-w1000-tls"))
            }
            Scenario::ConnectTls => Some(("connect-plain", "connect-tls")),
            _ => None,
        }
    }

    /// The fan-out shape: (publishers, subscribers, channels, message bytes).
    pub fn fanout_shape(self) -> Option<(usize, usize, usize, usize)> {
        match self {
            Scenario::Fanout1x100 => Some((1, 100, 1, 64)),
            Scenario::Fanout10x10 => Some((10, 10, 10, 64)),
            Scenario::Fanout1x1000 => Some((1, 1000, 1, 16)),
            _ => None,
        }
    }

    /// The names its results are reported under: a fan-out shape once per window, the
    /// latency and memory scenarios once per shape.
    pub fn reported_as(self, windows: &[u64]) -> Vec<String> {
        match self {
            s if s.fanout_shape().is_some() => windows
                .iter()
                .map(|w| format!("{}-w{w}", s.name()))
                .collect(),
            Scenario::Latency => LATENCY_SHAPES.iter().map(|l| l.name.to_string()).collect(),
            Scenario::Memory => MEMORY_SHAPES.iter().map(|m| m.0.to_string()).collect(),
            Scenario::Sustainable => vec!["sustainable-1x100".into()],
            s if s.tls_halves().is_some() => {
                let (plain, tls) = s.tls_halves().expect("checked");
                vec![plain.into(), tls.into()]
            }
            s => vec![s.name().into()],
        }
    }
}

/// Connections the connect scenario opens at once: enough that the round trip of one does
/// not set the rate on its own, few enough that no broker's listen queue (128 for the
/// smallest default) overflows.
pub const CONNECTORS: usize = 64;

/// One fixed-rate latency shape.
#[derive(Debug, Clone, Copy)]
pub struct LatencyShape {
    pub name: &'static str,
    pub publishers: usize,
    pub subscribers: u64,
    pub rate: f64,
}

/// The project's two latency targets.
pub const LATENCY_SHAPES: [LatencyShape; 2] = [
    LatencyShape {
        name: "latency-1x10-20k",
        publishers: 1,
        subscribers: 10,
        rate: 20_000.0,
    },
    LatencyShape {
        name: "latency-4x100-2k",
        publishers: 4,
        subscribers: 100,
        rate: 2_000.0,
    },
];

/// How many channels a memory shape spreads `clients` over.
pub type ChannelsFor = fn(usize) -> usize;

/// The in-flight window of the TLS fan-out scenario: CI's, and the one hubbub's targets use.
pub const TLS_WINDOW: u64 = 1_000;

/// The flags loadgen gives a hubbub it starts.
pub fn hubbub_args(opts: &Opts) -> Vec<String> {
    match opts.hubbub_threads {
        Some(n) => vec!["--threads".into(), n.to_string()],
        None => Vec::new(),
    }
}

/// The flags loadgen gives the hubbub it starts for the TLS scenarios: its own flags, and the
/// server certificate and key of `--tls-dir`.
pub fn hubbub_tls_args(opts: &Opts) -> Vec<String> {
    let file = |name: &str| opts.tls_dir.join(name).display().to_string();
    let mut args = hubbub_args(opts);
    args.extend([
        "--tls-cert".into(),
        file("server.pem"),
        "--tls-key".into(),
        file("server.key"),
    ]);
    args
}

/// Memory shapes: (name, channels given the client count).
pub const MEMORY_SHAPES: [(&str, ChannelsFor); 2] = [
    ("memory-shared", |_| 100),
    ("memory-own-channel", |clients| clients),
];

/// The project's targets, as goals a comparison of these windows is judged by: fan-out at
/// the windows of 1,000 and 10,000 (where they were run), p99 at both latency shapes, memory
/// in both shapes, the connect + subscribe rate; and in each of them, ahead of the plain
/// tokio baseline. A goal whose brokers were not measured is left out of the report.
pub fn goals(windows: &[u64]) -> Vec<Goal> {
    let peers: &'static [&'static str] = &["redis", "nats"];
    let plain: &'static [&'static str] = &["plain-tokio"];
    let mut goals = Vec::new();
    let mut goal = |scenario: String, metric, against, factor| {
        goals.push(Goal {
            scenario,
            metric,
            against,
            factor,
        })
    };
    for (shape, factor) in [
        ("fanout-1x100", 1.5),
        ("fanout-10x10", 1.5),
        ("fanout-1x1000", 2.0),
    ] {
        for w in windows.iter().filter(|w| [1_000, 10_000].contains(*w)) {
            let scenario = format!("{shape}-w{w}");
            goal(scenario.clone(), "deliveries_per_sec", peers, factor);
            goal(scenario, "deliveries_per_sec", plain, 1.0);
        }
    }
    for l in LATENCY_SHAPES {
        goal(l.name.into(), "p99_ms", peers, 0.6);
        goal(l.name.into(), "p99_ms", plain, 1.0);
    }
    for (name, _) in MEMORY_SHAPES {
        goal(name.into(), "rss_per_conn_bytes", &["mosquitto"], 1.0);
        goal(name.into(), "rss_per_conn_bytes", plain, 1.0);
    }
    goal(
        "connect".into(),
        "connects_per_sec",
        &["redis", "nats", "mosquitto"],
        1.2,
    );
    goal("connect".into(), "connects_per_sec", plain, 1.0);
    goals
}

/// The brokers a comparison can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Broker {
    Hubbub,
    Redis,
    Nats,
    Mosquitto,
    /// The plain tokio broker in benches/ (`plain-broker`): a baseline, not a product.
    #[value(name = "plain-tokio")]
    PlainTokio,
}

impl Broker {
    pub fn name(self) -> &'static str {
        match self {
            Broker::Hubbub => "hubbub",
            Broker::Redis => "redis",
            Broker::Nats => "nats",
            Broker::Mosquitto => "mosquitto",
            Broker::PlainTokio => "plain-tokio",
        }
    }

    /// How a sentence names it.
    pub fn title(self) -> &'static str {
        match self {
            Broker::Hubbub => "hubbub",
            Broker::Redis => "Redis",
            Broker::Nats => "NATS",
            Broker::Mosquitto => "Mosquitto",
            Broker::PlainTokio => "a plain tokio broker",
        }
    }

    pub fn proto(self) -> Proto {
        match self {
            Broker::Hubbub => Proto::Hubbub,
            Broker::Redis => Proto::Redis,
            Broker::Nats => Proto::Nats,
            Broker::Mosquitto => Proto::Mqtt,
            Broker::PlainTokio => Proto::Hubbub,
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
pub(super) struct Collected {
    pub measurements: Vec<Measurement>,
    /// Per latency scenario and broker: the histogram of its median run.
    pub spectra: Vec<Spectrum>,
    /// Per broker: its ramp's steps.
    pub ramps: Vec<Ramp>,
    pub provenance: crate::model::provenance::Provenance,
    pub slo_p99_us: u64,
}
