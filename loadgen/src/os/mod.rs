//! What loadgen reads from the operating system: the limits that decide how many clients fit,
//! read once at start, and the CPU and memory of the broker and of loadgen, once a second.

pub mod listener;

use std::fs;

use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::model::Limits;

/// `(soft, hard)` open-files limit of a process, from `/proc/PID/limits`.
pub fn nofile_of(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_nofile(&text)
}

/// Parses the "Max open files" row of a `/proc/PID/limits` file.
pub fn parse_nofile(limits: &str) -> Option<(u64, u64)> {
    let row = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut numbers = row["Max open files".len()..].split_whitespace();
    let mut next = || -> Option<u64> {
        match numbers.next()? {
            "unlimited" => Some(u64::MAX),
            n => n.parse().ok(),
        }
    };
    Some((next()?, next()?))
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
        mem_total_bytes: sys.total_memory(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        source_addresses,
    }
}

/// CPU and memory of two groups of processes and of the host, at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub broker_cpu_pct: f64,
    pub broker_rss_bytes: u64,
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_bytes: u64,
    pub host_mem_used_bytes: u64,
    pub host_mem_total_bytes: u64,
    /// Every broker process is still running.
    pub broker_alive: bool,
}

/// Samples the broker's processes and loadgen's own (itself and its workers).
pub struct Sampler {
    sys: System,
    broker: Vec<Pid>,
    loadgen: Vec<Pid>,
}

/// Whether a process is running (not gone, not a zombie).
pub fn running(pid: u32) -> bool {
    // A dead child stays a zombie until reaped; count it as gone.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with('Z') || s.starts_with('X'))
        }
        Err(_) => false,
    }
}

impl Sampler {
    pub fn new(broker: &[u32], loadgen: &[u32]) -> Self {
        let mut sampler = Self {
            sys: System::new(),
            broker: broker.iter().map(|&p| Pid::from_u32(p)).collect(),
            loadgen: loadgen.iter().map(|&p| Pid::from_u32(p)).collect(),
        };
        // CPU use is a difference between two refreshes: take the first now.
        sampler.read();
        sampler
    }

    /// Reads CPU (since the last call) and memory now.
    pub fn read(&mut self) -> Reading {
        let all: Vec<Pid> = self.broker.iter().chain(&self.loadgen).copied().collect();
        let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
        self.sys
            .refresh_processes_specifics(ProcessesToUpdate::Some(&all), true, kind);
        self.sys
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let sum = |pids: &[Pid]| {
            pids.iter()
                .filter_map(|p| self.sys.process(*p))
                .fold((0.0, 0), |(c, m), p| {
                    (c + p.cpu_usage() as f64, m + p.memory())
                })
        };
        let (broker_cpu_pct, broker_rss_bytes) = sum(&self.broker);
        let (loadgen_cpu_pct, loadgen_rss_bytes) = sum(&self.loadgen);
        Reading {
            broker_cpu_pct,
            broker_rss_bytes,
            loadgen_cpu_pct,
            loadgen_rss_bytes,
            host_mem_used_bytes: self.sys.used_memory(),
            host_mem_total_bytes: self.sys.total_memory(),
            broker_alive: self.broker.iter().all(|p| running(p.as_u32())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_open_files_row() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            1024                 20000                files\n";
        assert_eq!(parse_nofile(text), Some((1024, 20000)));
        let text = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_nofile(text), Some((u64::MAX, u64::MAX)));
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(nofile_of(me).is_some());
        assert!(running(me));
        let limits = read_limits(Some(me), 1);
        assert!(limits.cores >= 1 && limits.mem_total_bytes > 0);
        let mut s = Sampler::new(&[me], &[]);
        let r = s.read();
        assert!(r.broker_alive && r.broker_rss_bytes > 0);
    }
}
