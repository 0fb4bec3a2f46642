//! The hosts a distributed run's workers ran on: each agent, its clock against the
//! coordinator's, and what its workers used, second by second.

use serde::{Deserialize, Serialize};

/// One second of one host's workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// Seconds since the run started (the coordinator's).
    pub t_secs: f64,
    /// "here", or the agent's address and host name.
    pub host: String,
    /// The host's workers together, in % of one core.
    pub workers_cpu_pct: f64,
    pub workers_rss_bytes: u64,
    /// The host's whole CPU, the kernel's work included, in % of one core (containers on one
    /// machine each see the whole machine's).
    pub machine_cpu_pct: Option<f64>,
}

/// An agent, as the summary reports it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentReport {
    pub address: String,
    pub host: String,
    pub cores: usize,
    pub nofile_hard: u64,
    pub workers: usize,
    /// Subscribers its workers held at the end (or when it was lost).
    pub clients: u64,
    /// Its monotonic clock less the coordinator's at the start, and half the shortest round
    /// trip of the measurement: the true offset is within that of it.
    pub clock_offset_ns: i64,
    pub clock_uncertainty_ns: u64,
    /// The same measured again at the end; `None` if it could not be (the agent was lost).
    pub clock_offset_end_ns: Option<i64>,
    pub clock_uncertainty_end_ns: Option<u64>,
    /// Its workers' CPU (% of one core), mean and most over the run's seconds, and their
    /// largest resident set.
    pub cpu_pct_mean: f64,
    pub cpu_pct_max: f64,
    pub rss_max_bytes: u64,
    pub machine_cpu_pct_max: Option<f64>,
    /// Why one of its workers was lost, if one was.
    pub lost: Option<String>,
}

impl AgentReport {
    /// Fills the usage figures from the samples of host `name`.
    pub fn fill_usage(&mut self, name: &str, samples: &[HostSample]) {
        let mine: Vec<&HostSample> = samples.iter().filter(|s| s.host == name).collect();
        if mine.is_empty() {
            return;
        }
        self.cpu_pct_mean = mine.iter().map(|s| s.workers_cpu_pct).sum::<f64>() / mine.len() as f64;
        self.cpu_pct_max = mine.iter().map(|s| s.workers_cpu_pct).fold(0.0, f64::max);
        self.rss_max_bytes = mine.iter().map(|s| s.workers_rss_bytes).max().unwrap_or(0);
        self.machine_cpu_pct_max = mine
            .iter()
            .filter_map(|s| s.machine_cpu_pct)
            .reduce(f64::max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_taken_from_the_hosts_own_samples() {
        let at = |host: &str, cpu, rss, machine| HostSample {
            t_secs: 1.0,
            host: host.into(),
            workers_cpu_pct: cpu,
            workers_rss_bytes: rss,
            machine_cpu_pct: machine,
        };
        let samples = [
            at("a", 10.0, 100, Some(50.0)),
            at("b", 90.0, 900, Some(99.0)),
            at("a", 30.0, 300, None),
        ];
        let mut r = AgentReport::default();
        r.fill_usage("a", &samples);
        assert_eq!(
            (
                r.cpu_pct_mean,
                r.cpu_pct_max,
                r.rss_max_bytes,
                r.machine_cpu_pct_max
            ),
            (20.0, 30.0, 300, Some(50.0))
        );
    }
}
