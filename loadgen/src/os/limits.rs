//! The limits that decide how many clients fit, read once at the start of a run.

use std::fs;

use sysinfo::{MemoryRefreshKind, System};

use super::procfs::nofile_of;
use crate::model::Limits;

const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CONNTRACK_COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";

/// Connections the kernel is tracking now, where connection tracking is loaded.
pub fn conntrack_entries() -> Option<u64> {
    sysctl(CONNTRACK_COUNT).and_then(|s| s.parse().ok())
}

/// Files open in the whole machine now (the first figure of `fs.file-nr`).
pub fn open_files() -> Option<u64> {
    sysctl("/proc/sys/fs/file-nr")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn sysctl(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Reads every limit that bounds the number of clients.
pub fn read_limits(broker_pid: Option<u32>, source_addresses: usize) -> Limits {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
    let broker = broker_pid.and_then(nofile_of);
    let ports = sysctl("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u32>());
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999));
    let mut sys = System::new();
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    Limits {
        loadgen_nofile_soft: soft,
        loadgen_nofile_hard: hard,
        broker_nofile_soft: broker.map(|b| b.0),
        broker_nofile_hard: broker.map(|b| b.1),
        ephemeral_ports: ports,
        somaxconn: sysctl("/proc/sys/net/core/somaxconn").and_then(|s| s.parse().ok()),
        file_max: sysctl("/proc/sys/fs/file-max").and_then(|s| s.parse().ok()),
        conntrack_max: sysctl(CONNTRACK_MAX).and_then(|s| s.parse().ok()),
        mem_total_bytes: sys.total_memory(),
        cores: super::threads::online_cores(),
        source_addresses,
    }
}
