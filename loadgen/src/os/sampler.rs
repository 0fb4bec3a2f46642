//! The CPU and memory of the broker and of loadgen, read once a second.

use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::procfs::{read_listen_drops, read_slab, read_uptime, running};

/// CPU and memory of two groups of processes and of the host, at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub broker_cpu_pct: f64,
    pub broker_rss_bytes: u64,
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_bytes: u64,
    /// CPU of the whole machine (every process and the kernel's own work, softirqs among
    /// it), in % of one core, since the last reading; `None` where unreadable.
    pub host_cpu_pct: Option<f64>,
    pub host_mem_used_bytes: u64,
    pub host_mem_total_bytes: u64,
    /// Every broker process is still running.
    pub broker_alive: bool,
    /// Connections in the kernel's connection-tracking table, where it is loaded.
    pub conntrack_entries: Option<u64>,
    /// The kernel's slab memory, machine-wide.
    pub kernel_slab_bytes: Option<u64>,
    /// The listen-queue counters since boot, machine-wide: (overflows, drops).
    pub listen_drops: Option<(u64, u64)>,
    /// Files open in the whole machine.
    pub open_files: Option<u64>,
}

/// Samples the broker's processes and loadgen's own (itself and its workers).
pub struct Sampler {
    sys: System,
    broker: Vec<Pid>,
    loadgen: Vec<Pid>,
    /// Seconds since boot and seconds idle (all cores) at the last reading: the machine's
    /// CPU is the rest ([`parse_uptime`](super::procfs::parse_uptime) says why not ticks).
    uptime: Option<(f64, f64)>,
}

impl Sampler {
    pub fn new(broker: &[u32], loadgen: &[u32]) -> Self {
        let mut sampler = Self {
            sys: System::new(),
            broker: broker.iter().map(|&p| Pid::from_u32(p)).collect(),
            loadgen: loadgen.iter().map(|&p| Pid::from_u32(p)).collect(),
            uptime: None,
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
        let uptime = read_uptime();
        let cores = super::threads::online_cores().max(1) as f64;
        let host_cpu_pct = match (self.uptime, uptime) {
            (Some((up0, idle0)), Some((up1, idle1))) if up1 > up0 => {
                let idle_cores = (idle1 - idle0).max(0.0) / (up1 - up0);
                Some(100.0 * (cores - idle_cores).clamp(0.0, cores))
            }
            _ => None,
        };
        self.uptime = uptime;
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
            host_cpu_pct,
            host_mem_used_bytes: self.sys.used_memory(),
            host_mem_total_bytes: self.sys.total_memory(),
            broker_alive: self.broker.iter().all(|p| running(p.as_u32())),
            conntrack_entries: super::limits::conntrack_entries(),
            kernel_slab_bytes: read_slab(),
            listen_drops: read_listen_drops(),
            open_files: super::limits::open_files(),
        }
    }
}
