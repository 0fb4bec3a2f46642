//! Which limit stopped a run, what each limit means to a person (the words every report and
//! the verdict use), and how a run ended, as the exit status says it.

use serde::{Deserialize, Serialize};

/// Which limit stopped the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Nothing failed: the ramp reached `--max-clients`.
    MaxClients,
    /// The broker ran out of file descriptors (its open-files limit).
    BrokerOpenFiles,
    /// loadgen ran out of file descriptors.
    LoadgenOpenFiles,
    /// Source ports ran out (EADDRNOTAVAIL).
    EphemeralPorts,
    /// The kernel's connection-tracking table was full, so new connections' SYNs were dropped.
    #[serde(rename = "conntrack_table")]
    ConnTrack,
    /// The system-wide file table (fs.file-max) was full: no process could open a socket.
    FileTable,
    /// The broker's CPU was saturated.
    BrokerCpu,
    /// The machine's CPU was saturated, and the broker's share of it is not known (it runs
    /// where loadgen cannot sample it: another container or host, no --broker-pid).
    MachineCpu,
    /// Host or broker memory ran short.
    Memory,
    /// Deliveries were later than the objective.
    LatencyObjective,
    /// Deliveries went missing without another explanation.
    MessageLoss,
    /// The broker process exited.
    BrokerGone,
    /// loadgen itself was saturated, so the result says nothing about the broker.
    LoadgenCpu,
    /// Connections failed for a reason none of the above explains.
    ConnectErrors,
    /// The run was interrupted (Ctrl-C or SIGTERM) before it found a limit.
    Interrupted,
    /// A worker stopped answering (its process exited, or its agent's host went silent), so
    /// the step it was in could not be counted.
    WorkerLost,
}

/// The verdict, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingLimit {
    pub kind: LimitKind,
    pub evidence: String,
    /// The step that failed, when one did.
    #[serde(default)]
    pub step: Option<usize>,
}

/// How a run ended, for the exit status (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The run went to its end and every step met the objective: exit status 0.
    Passed,
    /// A step missed the objective (late or lost deliveries, failed connects: the ramp
    /// found its limit below `--max-clients`), or a regression check failed: exit status 3.
    ObjectiveMissed,
    /// The broker under test exited during the run: exit status 4.
    BrokerGone,
    /// Ctrl-C or SIGTERM stopped the run; the report holds what was measured: 130.
    Interrupted,
}

impl Outcome {
    /// The process exit status for this outcome.
    pub fn exit_status(self) -> u8 {
        match self {
            Outcome::Passed => 0,
            Outcome::ObjectiveMissed => 3,
            Outcome::BrokerGone => 4,
            Outcome::Interrupted => 130,
        }
    }

    /// The outcome of a run whose verdict is `kind`.
    pub fn of(kind: LimitKind) -> Self {
        match kind {
            LimitKind::MaxClients => Outcome::Passed,
            LimitKind::BrokerGone => Outcome::BrokerGone,
            LimitKind::Interrupted => Outcome::Interrupted,
            _ => Outcome::ObjectiveMissed,
        }
    }
}

impl LimitKind {
    /// Every kind.
    pub const ALL: [LimitKind; 16] = [
        LimitKind::MaxClients,
        LimitKind::BrokerOpenFiles,
        LimitKind::LoadgenOpenFiles,
        LimitKind::EphemeralPorts,
        LimitKind::ConnTrack,
        LimitKind::FileTable,
        LimitKind::BrokerCpu,
        LimitKind::MachineCpu,
        LimitKind::Memory,
        LimitKind::LatencyObjective,
        LimitKind::MessageLoss,
        LimitKind::BrokerGone,
        LimitKind::LoadgenCpu,
        LimitKind::ConnectErrors,
        LimitKind::Interrupted,
        LimitKind::WorkerLost,
    ];

    /// A short human description of a limit, worded to follow "the ramp stopped because".
    pub fn describe(self) -> &'static str {
        match self {
            LimitKind::MaxClients => "it reached its client cap (--max-clients)",
            LimitKind::BrokerOpenFiles => "the broker ran out of open files",
            LimitKind::LoadgenOpenFiles => "loadgen ran out of open files",
            LimitKind::EphemeralPorts => "loadgen ran out of source ports",
            LimitKind::ConnTrack => "the kernel's connection-tracking table was full",
            LimitKind::FileTable => "the machine's file table (fs.file-max) was full",
            LimitKind::BrokerCpu => "the broker ran out of CPU",
            LimitKind::MachineCpu => "the machine ran out of CPU (the broker's share not measured: it runs where loadgen cannot sample it)",
            LimitKind::Memory => "memory ran short",
            LimitKind::LatencyObjective => "deliveries missed the latency objective",
            LimitKind::MessageLoss => "deliveries were lost",
            LimitKind::BrokerGone => "the broker exited",
            LimitKind::LoadgenCpu => "loadgen ran out of CPU (a limit of the test, not the broker)",
            LimitKind::ConnectErrors => "connections failed",
            LimitKind::Interrupted => "it was interrupted (Ctrl-C or SIGTERM)",
            LimitKind::WorkerLost => "a load generator worker was lost (its process exited or its agent's host went silent)",
        }
    }

    /// What to change to get further than this limit.
    pub fn advice(self) -> &'static str {
        match self {
            LimitKind::MaxClients => "Nothing broke yet: raise --max-clients to find the real limit (check that loadgen's open-files limit and source ports cover the higher count).",
            LimitKind::BrokerOpenFiles => "Raise the broker's open-files limit (`ulimit -n` up to the hard limit; raise the hard limit as root, e.g. LimitNOFILE= in its systemd unit or /etc/security/limits.conf), or spread the clients over a hub of brokers, each with its own limit: without --target, loadgen starts one by itself when one process cannot hold the clients (`--brokers K` for K leaves); with brokers of your own, `scripts/hub.sh start 4`, then `loadgen ramp --max-clients N --target $(scripts/hub.sh targets) --broker-pid $(scripts/hub.sh pids)`, then `scripts/hub.sh stop` (README, \"A hub of brokers\").",
            LimitKind::LoadgenOpenFiles => "Raise loadgen's open-files limit before running (`ulimit -n $(ulimit -Hn)`; raise the hard limit as root), or give each worker process fewer clients (--per-process).",
            LimitKind::ConnTrack => "Every TCP connection, loopback ones included, takes an entry in netfilter's connection-tracking table once the conntrack module is loaded (Docker's rules load it), and a full table drops new SYNs, which time out. Raise it as root: `sysctl -w net.netfilter.nf_conntrack_max=2097152` (each entry is a 256-byte kernel slab object, `grep nf_conntrack /proc/slabinfo`), or stop tracking loopback altogether: `iptables -t raw -A PREROUTING -i lo -j NOTRACK; iptables -t raw -A OUTPUT -o lo -j NOTRACK`.",
            LimitKind::FileTable => "Every open socket is an open file, and a loopback connection is two (one at each end), so fs.file-max bounds the connections of the whole machine at about half its value. Raise it as root: `sysctl -w fs.file-max=4194304` (each open file costs the kernel a few hundred bytes of slab until it is used). A process with CAP_SYS_ADMIN (root, usually) is not held to it.",
            LimitKind::EphemeralPorts => "Give loadgen more loopback source addresses (--sources; each of 127.0.0.2, 127.0.0.3, … adds a full port range), or widen the range: `sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"`.",
            LimitKind::BrokerCpu => "Give the broker more cores (or a machine of its own, so loadgen does not share them), or spread clients over more brokers in a hub; a profile (`perf record -e cpu-clock`) at this load shows where the CPU goes.",
            LimitKind::MachineCpu => "Brokers and load generators shared a machine whose CPU was full, and the broker's own use could not be read (no --broker-pid: in another container or on another host). Run the brokers and the agents on machines of their own, or give --broker-pid where the broker's process is visible, to tell which of them set the limit.",
            LimitKind::Memory => "Add memory or use less per client: divide broker RSS by clients to see the cost of one, look at per-connection buffers, and run loadgen on another machine so the two do not share memory.",
            LimitKind::LatencyObjective => "The broker keeps every client but delivers late: look at broker CPU and slow consumers, give it more cores, lower the publish rate, or loosen the objective (--slo-p99) if it is stricter than users need.",
            LimitKind::MessageLoss => "Deliveries went missing: check the broker's slow-consumer disconnects (raise its pending-bytes limit, or have subscribers read faster) and its log.",
            LimitKind::BrokerGone => "The broker exited: read its log and stderr, check for the OOM killer (`dmesg | grep -i oom`), fix the crash and rerun.",
            LimitKind::LoadgenCpu => "The load generator was the bottleneck: give loadgen its own cores (`taskset`) or its own machine, then rerun; until then the result says nothing about the broker.",
            LimitKind::ConnectErrors => "Read the errors by kind: refused means a full listen backlog (raise net.core.somaxconn and the broker's backlog), timeouts a full accept queue or a stalled broker; check the broker's log.",
            LimitKind::Interrupted => "The steps above were measured in full; run the command again and let it finish to find the limit.",
            LimitKind::WorkerLost => "The steps before it were measured in full. Read the evidence for which worker and agent, and that agent's log (`docker logs`, `kubectl logs`): a host that was cut off or frozen, or a worker that crashed. Its subscribers were not counted in the step it was lost in, so that step is left out.",
        }
    }
}

/// The limits that decide how many clients fit, read at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub loadgen_nofile_soft: u64,
    pub loadgen_nofile_hard: u64,
    /// Of the broker process, when loadgen knows its pid.
    pub broker_nofile_soft: Option<u64>,
    pub broker_nofile_hard: Option<u64>,
    /// net.ipv4.ip_local_port_range.
    pub ephemeral_ports: (u32, u32),
    /// net.core.somaxconn.
    pub somaxconn: Option<u64>,
    /// fs.file-max.
    pub file_max: Option<u64>,
    /// net.netfilter.nf_conntrack_max, where connection tracking is loaded: every TCP
    /// connection takes an entry, loopback ones too.
    #[serde(default)]
    pub conntrack_max: Option<u64>,
    pub mem_total_bytes: u64,
    pub cores: usize,
    /// Loopback source addresses loadgen spreads connections over.
    pub source_addresses: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_words_and_an_outcome() {
        for k in LimitKind::ALL {
            assert!(!k.describe().is_empty());
            assert!(k.advice().len() > 40);
        }
        assert_eq!(Outcome::of(LimitKind::MaxClients).exit_status(), 0);
        assert_eq!(Outcome::of(LimitKind::BrokerCpu).exit_status(), 3);
        assert_eq!(Outcome::of(LimitKind::BrokerGone).exit_status(), 4);
        assert_eq!(Outcome::of(LimitKind::Interrupted).exit_status(), 130);
    }
}
