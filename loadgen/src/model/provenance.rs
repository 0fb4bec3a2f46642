//! Where a figure came from: the source it was built from, the versions of everything
//! measured, the machine, its limits, and the exact command. Recorded in every summary.json
//! and comparison.json, so a figure can be traced and a run repeated.

use serde::{Deserialize, Serialize};

use super::limit::Limits;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The git commit loadgen was built from, and whether the tree held uncommitted changes
    /// when it ran; `None` where the source tree is not a git checkout (an installed binary).
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerVersion {
    pub broker: String,
    pub address: String,
    /// `None` when it could not be asked.
    pub version: Option<String>,
}
