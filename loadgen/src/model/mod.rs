//! The result model: what a run measured, as plain data.
//!
//! # Layout
//! - this file: a run's steps, samples, limits read at start, and the summaries.
//! - [`limit`]: which limit stopped a run, and what each means.
//! - [`histogram`]: latency histograms, and their lossless form between processes.
//! - [`units`]: how numbers, durations and sizes are written for people.
//! - [`stats`]: medians, spreads, steadiness and bootstrap intervals.
//! - [`bottleneck`]: what set a figure (broker, client, window or machine).
//! - [`compare`], [`fanout`], [`memory`], [`soak`]: what those commands measure.
//!
//! The data a run produces: what each step measured, the once-a-second samples, the limits
//! read at start, and the verdict. Plain data, so the engine, the report writers and the
//! diagnosis can be written and tested apart.

pub mod bottleneck;
pub mod compare;
pub mod fanout;
pub mod histogram;
pub mod hosts;
pub mod limit;
pub mod memory;
pub mod provenance;
pub mod soak;
pub mod stats;
pub mod units;

use serde::{Deserialize, Serialize};

pub use self::limit::{BindingLimit, LimitKind, Limits, Outcome};
pub use self::stats::median;

/// Connect and I/O errors, counted by kind, the way a user would act on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// ECONNREFUSED: nothing listening, or the listen backlog overflowed.
    pub refused: u64,
    /// No answer in time (a full accept queue drops SYNs silently).
    pub timeout: u64,
    /// EMFILE / ENFILE: out of file descriptors (on loadgen's side).
    pub emfile: u64,
    /// EADDRNOTAVAIL: out of ephemeral ports for this source address.
    pub eaddrnotavail: u64,
    /// ECONNRESET / EPIPE.
    pub reset: u64,
    /// The broker closed the connection (EOF), or answered with an ERROR instead of an ack.
    pub closed: u64,
    pub other: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.refused
            + self.timeout
            + self.emfile
            + self.eaddrnotavail
            + self.reset
            + self.closed
            + self.other
    }

    /// Non-zero error counts by kind, e.g. "120 timeout, 3 refused", or "none".
    pub fn by_kind(&self) -> String {
        let e = self;
        let kinds = [
            (e.refused, "refused"),
            (e.timeout, "timeout"),
            (e.emfile, "EMFILE"),
            (e.eaddrnotavail, "EADDRNOTAVAIL"),
            (e.reset, "reset"),
            (e.closed, "closed by broker"),
            (e.other, "other"),
        ];
        let parts: Vec<String> = kinds
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, name)| format!("{n} {name}"))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    pub fn add(&mut self, o: &ErrorCounts) {
        self.refused += o.refused;
        self.timeout += o.timeout;
        self.emfile += o.emfile;
        self.eaddrnotavail += o.eaddrnotavail;
        self.reset += o.reset;
        self.closed += o.closed;
        self.other += o.other;
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// One step of a ramp: new clients connected, then traffic held for a while.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub step: usize,
    /// The counted window's start (intended send time, on the coordinator's monotonic clock,
    /// in ns): what each worker names its own measurement of the step by, in its log.
    #[serde(default)]
    pub window_from_ns: Option<u64>,
    /// Clients the plan asked for at this step (subscribers, cumulative).
    pub target_clients: u64,
    /// Subscribers actually connected and acknowledged at the end of the step.
    pub clients: u64,
    /// New connections per second during this step's connect phase.
    pub connect_rate: f64,
    /// Connect-and-acknowledge latency of this step's new clients.
    pub connect_p50_us: u64,
    pub connect_p99_us: u64,
    /// Errors while connecting (and subscribers lost during the hold).
    pub errors: ErrorCounts,
    /// Messages per second the publishers were asked to send during the hold.
    pub offered_rate: f64,
    /// How long the traffic was published before the counted window, in seconds.
    #[serde(default)]
    pub warmup_secs: f64,
    /// How long the traffic was held and counted, in seconds.
    pub hold_secs: f64,
    /// Messages published during the hold.
    pub published: u64,
    /// Deliveries expected: each publish times the subscribers of its channel.
    pub expected: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// expected − delivered.
    pub lost: u64,
    /// Deliveries that arrived later than the latency objective.
    pub late: u64,
    /// Delivery latency, measured from each message's intended send time.
    pub latency: Percentiles,
    /// Whether the deliveries of each second of the counted window held still.
    #[serde(default)]
    pub steady: Option<bool>,
    /// What set the step's figures: CPU of every broker and loadgen thread over the window.
    #[serde(default)]
    pub bottleneck: Option<bottleneck::Bottleneck>,
    /// Averages over the step's samples.
    pub broker_cpu_pct: f64,
    pub broker_rss_bytes: u64,
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_bytes: u64,
    /// The whole machine's CPU, the kernel's own work included (mean, as the others).
    #[serde(default)]
    pub host_cpu_pct: Option<f64>,
    /// Whether every broker process was still running at the end of the step.
    pub broker_alive: bool,
    /// From the broker's STATS, when it is hubbub: failed accepts (EMFILE) and slow-consumer
    /// disconnects during this step.
    pub broker_accept_errors: u64,
    pub broker_slow_consumers: u64,
    /// Peak kernel slab memory during the step, machine-wide.
    #[serde(default)]
    pub kernel_slab_bytes: Option<u64>,
    /// Connections an accept queue had no room for, and all lost at listeners, during the
    /// step (since the last sample of the step before), machine-wide.
    #[serde(default)]
    pub listen_overflows: Option<u64>,
    #[serde(default)]
    pub listen_drops: Option<u64>,
}

/// What a run was doing when a sample was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Starting the broker, the workers and the publishers.
    #[default]
    Starting,
    /// Connecting a step's new subscribers.
    Connecting,
    /// Publishing at the step's rate.
    Holding,
    /// Publishing done; waiting for the last deliveries.
    Draining,
}

impl StepResult {
    /// Whether every subscriber connected at this step got every delivery within the
    /// objective (those clients were held, even if more failed to connect).
    pub fn delivered_within(&self, slo_p99_us: u64) -> bool {
        self.broker_alive && self.lost == 0 && self.latency.p99_us <= slo_p99_us
    }
}

/// Per-step means of the samples taken while each step held its rate (all of the step's
/// samples if none were: connecting costs CPU that publishing does not), peak RSS and slab,
/// and the listen-queue counters' growth over the step.
pub fn fill_step_resources(steps: &mut [StepResult], samples: &[Sample]) {
    for s in steps.iter_mut() {
        let all: Vec<_> = samples.iter().filter(|x| x.step == s.step).collect();
        // The counters' growth from the last sample before the step (or the run's first).
        let before = samples
            .iter()
            .rev()
            .find(|x| x.step < s.step)
            .or(samples.first());
        let last = all.last();
        let grew =
            |read: fn(&Sample) -> Option<u64>| Some(read(last?)?.saturating_sub(read(before?)?));
        s.listen_overflows = grew(|x| x.listen_overflows);
        s.listen_drops = grew(|x| x.listen_drops);
        s.kernel_slab_bytes = all.iter().filter_map(|x| x.kernel_slab_bytes).max();
        let held: Vec<_> = all
            .iter()
            .copied()
            .filter(|x| x.phase == Phase::Holding)
            .collect();
        if all.is_empty() {
            continue;
        }
        s.broker_rss_bytes = all.iter().map(|x| x.broker_rss_bytes).max().unwrap_or(0);
        s.loadgen_rss_bytes = all.iter().map(|x| x.loadgen_rss_bytes).max().unwrap_or(0);
        let cpu = if held.is_empty() { all } else { held };
        let n = cpu.len() as f64;
        s.broker_cpu_pct = cpu.iter().map(|x| x.broker_cpu_pct).sum::<f64>() / n;
        s.loadgen_cpu_pct = cpu.iter().map(|x| x.loadgen_cpu_pct).sum::<f64>() / n;
        let host: Vec<f64> = cpu.iter().filter_map(|x| x.host_cpu_pct).collect();
        s.host_cpu_pct = (!host.is_empty()).then(|| host.iter().sum::<f64>() / host.len() as f64);
    }
}

/// Whether the broker's process was sampled, from its resident set: a sampled process always
/// has one, so 0 means loadgen could not read it (in another container or on another host,
/// no --broker-pid), and its CPU's 0 then says nothing.
pub fn broker_sampled(rss_bytes: u64) -> bool {
    rss_bytes > 0
}

/// One once-a-second sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_secs: f64,
    pub step: usize,
    pub phase: Phase,
    pub clients: u64,
    /// Deliveries per second, as the subscribers received them over their last second.
    pub delivered_per_sec: u64,
    /// Deliveries per second the publishing rate calls for (0 while not publishing):
    /// the rate times the subscribers a message reaches on average.
    pub expected_per_sec: u64,
    /// CPU of the broker process(es), in % of one core (200 = two cores busy).
    pub broker_cpu_pct: f64,
    pub broker_rss_bytes: u64,
    /// CPU and RSS of loadgen and its workers together.
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_bytes: u64,
    pub host_mem_used_bytes: u64,
    pub host_mem_total_bytes: u64,
    /// CPU of the whole machine, the kernel's own work included, in % of one core.
    #[serde(default)]
    pub host_cpu_pct: Option<f64>,
    /// Connections in the kernel's connection-tracking table (machine-wide), where it is
    /// loaded: its limit is one of the walls ([`Limits::conntrack_max`]).
    #[serde(default)]
    pub conntrack_entries: Option<u64>,
    /// The kernel's slab memory (sockets, their files and epoll entries among it),
    /// machine-wide, in bytes.
    #[serde(default)]
    pub kernel_slab_bytes: Option<u64>,
    /// Open files in the whole machine (the first figure of /proc/sys/fs/file-nr), against
    /// [`Limits::file_max`].
    #[serde(default)]
    pub open_files: Option<u64>,
    /// The listen-queue counters since boot, machine-wide: connections an accept queue had
    /// no room for (`ListenOverflows`), and every connection lost at a listener
    /// (`ListenDrops`).
    #[serde(default)]
    pub listen_overflows: Option<u64>,
    #[serde(default)]
    pub listen_drops: Option<u64>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The largest client count at which every delivery arrived within the objective.
    pub clients_held: u64,
    /// The run was stopped by Ctrl-C or SIGTERM; `steps` holds what was measured before.
    #[serde(default)]
    pub interrupted: bool,
    pub binding_limit: BindingLimit,
    pub limits: Limits,
    pub command_line: String,
    pub slo_p99_us: u64,
    pub steps: Vec<StepResult>,
    /// Where the figures came from: commit, versions, machine.
    #[serde(default)]
    pub provenance: Option<provenance::Provenance>,
    /// The agents whose workers held the subscribers (`--agents`); empty when they ran here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<hosts::AgentReport>,
}

/// `summary.json` of a fixed-size run (`loadgen throughput` or `loadgen latency`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// `throughput` or `latency`.
    pub kind: String,
    pub subscribers: u64,
    pub publishers: usize,
    pub channels: u64,
    pub size: usize,
    /// throughput: the highest offered rate at which every delivery arrived within the
    /// objective; latency: the rate held.
    pub rate: f64,
    /// Deliveries per second at that rate.
    pub deliveries_per_sec: f64,
    /// Delivery latency at that rate.
    pub latency: Percentiles,
    /// Why the search stopped, if the broker fell behind.
    pub stopped_because: Option<String>,
    /// The run was stopped by Ctrl-C or SIGTERM; `steps` holds what was measured before.
    #[serde(default)]
    pub interrupted: bool,
    pub slo_p99_us: u64,
    pub limits: Limits,
    pub command_line: String,
    pub steps: Vec<StepResult>,
    /// Where the figures came from: commit, versions, machine.
    #[serde(default)]
    pub provenance: Option<provenance::Provenance>,
}

/// `summary.json` of `loadgen latency`: the fixed-size run's summary with the outcome of the
/// stalled subscribers (`--stalled`) beside it, in the same JSON object.
///
/// A wrapper rather than two more fields of [`RunSummary`], which `throughput` shares and
/// which has no use for them. Flattened, so a latency `summary.json` still reads as a
/// [`RunSummary`], and one written before `--stalled` existed still reads as this (0 and 0).
/// Not in `steps.csv`: the stalled subscribers are a property of the whole run, not a column
/// of its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    #[serde(flatten)]
    pub run: RunSummary,
    /// Extra subscribers on every channel that never read their sockets. They are not among
    /// `subscribers`, and no step's `expected`, `delivered` or latency counts them.
    #[serde(default)]
    pub stalled: u64,
    /// How many of them the broker had closed by the end of the hold (seen by loadgen as EOF
    /// or a reset); compare each step's `broker_slow_consumers`, the broker's own count.
    #[serde(default)]
    pub stalled_disconnected: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_summary() -> RunSummary {
        RunSummary {
            kind: "latency".into(),
            subscribers: 100,
            publishers: 4,
            channels: 1,
            size: 1024,
            rate: 2000.0,
            deliveries_per_sec: 200_000.0,
            latency: Percentiles {
                p50_us: 300,
                p90_us: 500,
                p99_us: 900,
                p999_us: 2_000,
                max_us: 5_000,
            },
            stopped_because: None,
            interrupted: false,
            slo_p99_us: 50_000,
            limits: Limits {
                ephemeral_ports: (32768, 60999),
                broker_nofile_soft: Some(1024),
                ..Default::default()
            },
            command_line: "loadgen latency --stalled 10".into(),
            provenance: None,
            steps: vec![StepResult {
                step: 1,
                expected: 4_000_000,
                delivered: 4_000_000,
                broker_slow_consumers: 10,
                ..Default::default()
            }],
        }
    }

    /// The listen counters grow from the last sample of the step before; slab is a peak.
    #[test]
    fn a_steps_kernel_counters_come_from_its_samples() {
        let sample = |step, phase, overflows, slab| Sample {
            step,
            phase,
            listen_overflows: Some(overflows),
            listen_drops: Some(overflows * 2),
            kernel_slab_bytes: slab,
            ..Sample::default()
        };
        let samples = [
            sample(0, Phase::Starting, 100, Some(10)),
            sample(1, Phase::Connecting, 103, Some(30)),
            sample(1, Phase::Holding, 104, Some(20)),
            sample(2, Phase::Connecting, 110, None),
            sample(2, Phase::Holding, 110, Some(50)),
        ];
        let mut steps = [1, 2, 3].map(|step| StepResult {
            step,
            ..StepResult::default()
        });
        fill_step_resources(&mut steps, &samples);
        assert_eq!(steps[0].listen_overflows, Some(4));
        assert_eq!(steps[0].listen_drops, Some(8));
        assert_eq!(steps[0].kernel_slab_bytes, Some(30));
        assert_eq!(steps[1].listen_overflows, Some(6));
        assert_eq!(steps[1].kernel_slab_bytes, Some(50));
        // A step with no samples has nothing to say.
        assert_eq!(steps[2].listen_overflows, None);
        assert_eq!(steps[2].kernel_slab_bytes, None);
    }

    #[test]
    fn errors_in_words() {
        assert_eq!(ErrorCounts::default().by_kind(), "none");
        let e = ErrorCounts {
            timeout: 17,
            refused: 2,
            ..Default::default()
        };
        assert_eq!(e.by_kind(), "2 refused, 17 timeout");
        assert_eq!(e.total(), 19);
    }

    #[test]
    fn latency_summary_is_a_run_summary_with_two_more_fields() {
        let s = LatencySummary {
            run: run_summary(),
            stalled: 10,
            stalled_disconnected: 9,
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["stalled"], 10);
        assert_eq!(json["stalled_disconnected"], 9);
        assert_eq!(json["kind"], "latency", "flattened, not nested");
        assert_eq!(
            serde_json::from_value::<LatencySummary>(json.clone()).unwrap(),
            s
        );
        assert_eq!(
            serde_json::from_value::<RunSummary>(json).unwrap(),
            run_summary()
        );

        // Written before --stalled existed.
        let old = serde_json::to_value(run_summary()).unwrap();
        let read = serde_json::from_value::<LatencySummary>(old).unwrap();
        assert_eq!((read.stalled, read.stalled_disconnected), (0, 0));
        assert_eq!(read.run, run_summary());
    }
}
