//! Where a figure came from: the source it was built from, the versions of everything
//! measured, the machine, its limits, and the exact command. Recorded in every summary.json
//! and comparison.json, so a figure can be traced and a run repeated.

use serde::{Deserialize, Serialize};

use super::limit::Limits;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// When the run started, UTC (RFC 3339).
    #[serde(default)]
    pub measured_at: String,
    /// The git commit loadgen was built from, and whether the tree held uncommitted changes
    /// (outside reports/) when it ran; `None` where the source tree is not a git checkout (an installed binary).
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub loadgen_version: String,
    /// Each broker measured and the version it reported (hubbub's own from STATS; Redis from
    /// INFO; NATS from its greeting; Mosquitto from `$SYS/broker/version`).
    pub brokers: Vec<BrokerVersion>,
    pub kernel: String,
    pub cpu_model: String,
    pub cores: usize,
    pub limits: Limits,
    pub command: String,
}

impl Provenance {
    /// One line saying when, from which commit and on what a run was measured.
    pub fn line(&self) -> String {
        let commit = match (&self.git_commit, self.git_dirty) {
            (Some(c), Some(true)) => format!("commit {} with uncommitted changes", short(c)),
            (Some(c), _) => format!("commit {}", short(c)),
            (None, _) => format!("loadgen {}", self.loadgen_version),
        };
        format!(
            "{}, {commit}, {} ({} cores), {}",
            self.measured_at, self.cpu_model, self.cores, self.kernel
        )
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerVersion {
    pub broker: String,
    pub address: String,
    /// `None` when it could not be asked.
    pub version: Option<String>,
}
