//! The options every measurement on the rig shares, and the parsers that refuse what cannot
//! be measured (a zero rate, no channels, a hold of nothing) at the command line, naming the
//! flag and what it takes, before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{RangedU64ValueParser, TypedValueParser};
use clap::{Args, Parser};

use hubbub::address::HostPort;

use super::agents::dial::AgentOpts;
use super::plan::Placement;
use crate::proto::credentials::AuthOpts;
use crate::proto::tls::TlsOpts;
use crate::proto::Proto;

/// How long a `--target` name may take to appear.
const RESOLVE_WAIT: Duration = Duration::from_secs(30);

/// Options every measurement shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Broker(s) to load, HOST:PORT[,HOST:PORT…], a name standing for every address it
    /// resolves to (a Compose service's replicas); without it loadgen starts its own (hubbub).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<HostPort>,
    /// The protocol the target speaks (`scripts/peers.sh start` runs the others on loopback).
    #[arg(long, value_enum, default_value_t = Proto::Hubbub)]
    pub proto: Proto,
    /// Process id(s) of an external broker, to sample its CPU, memory and limits.
    #[arg(long, value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
    /// Without --target: the hubbub brokers loadgen starts. 1 is one broker; more is a hub
    /// with that many leaves, the clients spread over the leaves [default: as many as the
    /// clients need, one leaf per open-files hard limit less a margin]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub brokers: Option<u64>,
    /// With several brokers: spread every channel's subscribers over all of them, or keep
    /// each channel on one (`by-channel`: a message then crosses the hub to one leaf only).
    #[arg(long, value_enum, default_value_t = Placement::Spread)]
    pub placement: Placement,
    /// Publisher connections.
    #[arg(long, default_value_t = 4, value_parser = at_least_one_usize())]
    pub publishers: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Time each hold publishes before it counts: connections warm up, the rate settles.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Latency objective for the 99th percentile (e.g. 50ms).
    #[arg(long, default_value = "50ms", value_parser = positive_duration)]
    pub slo_p99: Duration,
    /// Where to write the report (default: reports/runs/<timestamp>-<command>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Subscribers per worker process (default: the open-files hard limit less a margin).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub per_process: Option<u64>,
    /// Loopback source addresses to connect from, 127.0.0.1 … 127.0.0.N (default: enough for
    /// the ephemeral ports).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    pub sources: Option<u8>,
    /// How long a subscriber may take to connect and be acknowledged.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    pub connect_timeout: Duration,
    /// Connects in flight at once, per worker.
    #[arg(long, default_value_t = 256, value_parser = at_least_one_usize())]
    pub connect_concurrency: usize,
    #[command(flatten)]
    pub tls: TlsOpts,
    #[command(flatten)]
    pub auth: AuthOpts,
    #[command(flatten)]
    pub agents: AgentOpts,
}

impl Common {
    /// `--target`'s addresses: every address each name resolves to ([`super::resolve`]),
    /// waiting up to [`RESOLVE_WAIT`] for names to appear.
    pub async fn targets(&self) -> anyhow::Result<Vec<SocketAddr>> {
        super::resolve::resolve("--target", &self.target, None, RESOLVE_WAIT).await
    }

    /// The latency objective in microseconds, the unit every histogram here counts in.
    pub fn slo_us(&self) -> u64 {
        self.slo_p99.as_micros() as u64
    }
}

/// The clients of a fixed-size run (`throughput`, `latency`).
#[derive(Debug, Clone, Args)]
pub struct Audience {
    /// Subscribers.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub subscribers: u64,
    /// Channels; subscriber n listens on channel n mod channels, message n goes to the same.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub channels: u64,
}

impl Default for Common {
    /// What a user gets with no flags: the defaults are the command line's, written once.
    fn default() -> Self {
        defaults::<Common>()
    }
}

impl Default for Audience {
    fn default() -> Self {
        defaults::<Audience>()
    }
}

/// The options a command line with none of `T`'s flags gives.
pub fn defaults<T: Args>() -> T {
    #[derive(Parser)]
    struct Wrap<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    Wrap::<T>::parse_from(["loadgen"]).inner
}

/// A `usize` of at least 1.
pub fn at_least_one_usize() -> impl TypedValueParser<Value = usize> {
    RangedU64ValueParser::<usize>::new().range(1..)
}

/// A rate in messages per second: a finite number above 0.
pub fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a number above 0 (messages per second)".into()),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

/// A duration (`500ms`, `5s`, `2m`) longer than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e} (try 500ms, 5s or 2m)"))?;
    if d.is_zero() {
        return Err("must be longer than zero (try 500ms, 5s or 2m)".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_must_be_positive() {
        assert_eq!(positive_rate("2000"), Ok(2000.0));
        assert_eq!(positive_rate("0.5"), Ok(0.5));
        assert!(positive_rate("0").is_err());
        assert!(positive_rate("-1").is_err());
        assert!(positive_rate("inf").is_err());
        assert!(positive_rate("fast").is_err());
        assert_eq!(positive_duration("5s"), Ok(Duration::from_secs(5)));
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("soon").is_err());
    }

    #[test]
    fn defaults_are_the_command_lines() {
        let c = Common::default();
        assert_eq!(c.publishers, 4);
        assert_eq!(c.slo_p99, Duration::from_millis(50));
        assert!(c.target.is_empty());
        assert_eq!(Audience::default().subscribers, 100);
    }
}
