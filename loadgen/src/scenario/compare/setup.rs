//! What a comparison is: its options, the scenarios and brokers it can measure, the goals it
//! is judged by, and what it collects. Shared by the orchestration (`compare`) and the
//! measuring (`scenarios`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;

use crate::model::compare::{Goal, Measurement};
use crate::proto::Proto;
use crate::report::plots::compare::Ramp;
use crate::rig::options::{at_least_one_usize, positive_duration, positive_rate};

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
    pub const ALL: [Scenario; 6] = [
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
    pub fn fanout_shape(self) -> Option<(usize, usize, usize, usize)> {
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
pub(super) struct Collected {
    pub measurements: Vec<Measurement>,
    /// Per broker: the latency histogram of its median run.
    pub spectra: Vec<(String, Histogram<u64>)>,
    /// Per broker: its ramp's steps.
    pub ramps: Vec<Ramp>,
    pub slo_p99_us: u64,
}
