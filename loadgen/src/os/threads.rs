//! CPU time of every thread of a set of processes, and the CPU a process may use at most: what
//! the bottleneck behind a figure is judged from.
//!
//! Thread times come from `/proc/PID/task/TID/stat` (user + system ticks); a snapshot at the
//! start of a measured window and one at its end give each thread's share of a core over the
//! window. The CPU a process may use is the least of the machine's cores, its CPU affinity and
//! its cgroup's CPU quota (v1 `cpu.cfs_quota_us`, v2 `cpu.max`), so a load generator held to a
//! fraction of a core counts as saturated at that fraction.

use std::collections::BTreeMap;
use std::fs;
use std::time::Instant;

use crate::model::bottleneck::Usage;

/// Every thread's CPU ticks at one moment.
#[derive(Debug, Clone)]
pub struct ThreadTimes {
    at: Instant,
    /// (pid, tid) → (thread name, user + system ticks).
    threads: BTreeMap<(u32, u32), (String, u64)>,
    /// The CPU the processes may use at most, in cores.
    available_cores: f64,
}

/// The thread name and user + system ticks in the text of a `/proc/…/stat` file.
pub fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    // After the name: state (field 3) … utime (field 14), stime (field 15).
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Ticks per second of the stat files' times (`CLK_TCK`).
pub fn ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The threads of `pids` now (processes that are gone are skipped).
pub fn snapshot(pids: &[u32]) -> ThreadTimes {
    let mut threads = BTreeMap::new();
    for &pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(t) = fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                threads.insert((pid, tid), t);
            }
        }
    }
    let available_cores = pids.iter().map(|&p| available_cores(p)).fold(0.0, f64::max);
    ThreadTimes {
        at: Instant::now(),
        threads,
        available_cores,
    }
}

/// What the threads used between two snapshots of the same processes.
pub fn usage(before: &ThreadTimes, after: &ThreadTimes) -> Usage {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let per_sec = ticks_per_sec();
    let mut total = 0.0;
    let (mut busiest, mut busiest_pct) = (String::new(), 0.0);
    for (key, (name, ticks)) in &after.threads {
        let was = before.threads.get(key).map_or(0, |t| t.1);
        let pct = ticks.saturating_sub(was) as f64 / per_sec / secs * 100.0;
        total += pct;
        if pct > busiest_pct {
            (busiest, busiest_pct) = (name.clone(), pct);
        }
    }
    Usage {
        total_pct: total,
        busiest_thread_pct: busiest_pct,
        busiest_thread: busiest,
        threads: after.threads.len(),
        available_cores: after.available_cores,
    }
}

/// The machine's online cores, whatever this process may use of them (std's
/// `available_parallelism` is this process's share: under a CPU quota it would call the
/// machine smaller than it is).
pub fn online_cores() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(1, |n| n.max(1) as usize)
}

/// The cores a process may use: the least of the machine's, its affinity's and its cgroup's.
pub fn available_cores(pid: u32) -> f64 {
    let online = online_cores() as f64;
    let affinity = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(pid as i32))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .count() as f64
        })
        .unwrap_or(online);
    let quota = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|c| cgroup_quota(&c, |path| fs::read_to_string(path).ok()));
    online.min(affinity).min(quota.unwrap_or(f64::INFINITY))
}

/// The CPU quota, in cores, of the cgroup a `/proc/PID/cgroup` text names (the least along
/// its path, as a parent's quota binds its children too), reading the controller files
/// through `read`; `None` when no quota is set.
pub fn cgroup_quota(cgroup: &str, read: impl Fn(&str) -> Option<String>) -> Option<f64> {
    let mut least: Option<f64> = None;
    let mut take = |cores: Option<f64>| {
        if let Some(c) = cores {
            least = Some(least.map_or(c, |l| l.min(c)));
        }
    };
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next()?, parts.next()?);
        for dir in ancestors(path) {
            if controllers.split(',').any(|c| c == "cpu") {
                // cgroup v1.
                for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
                    let quota = read(&format!("{root}{dir}/cpu.cfs_quota_us"));
                    let period = read(&format!("{root}{dir}/cpu.cfs_period_us"));
                    take(quota.zip(period).and_then(|(q, p)| v1_cores(&q, &p)));
                }
            } else if controllers.is_empty() {
                // cgroup v2 (the unified hierarchy).
                for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                    take(read(&format!("{root}{dir}/cpu.max")).and_then(|m| v2_cores(&m)));
                }
            }
        }
    }
    least
}

/// `/a/b` → `/a/b`, `/a`, `` (the root, which has no quota file to speak of).
fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path.trim_end_matches('/').to_string();
    while !p.is_empty() {
        out.push(p.clone());
        p.truncate(p.rfind('/').unwrap_or(0));
    }
    out
}

fn v1_cores(quota: &str, period: &str) -> Option<f64> {
    let q: i64 = quota.trim().parse().ok()?;
    let p: i64 = period.trim().parse().ok()?;
    (q > 0 && p > 0).then(|| q as f64 / p as f64)
}

fn v2_cores(max: &str) -> Option<f64> {
    let mut parts = max.split_whitespace();
    let q: f64 = parts.next()?.parse().ok()?; // "max" does not parse: no quota
    let p: f64 = parts.next()?.parse().ok()?;
    (p > 0.0).then(|| q / p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_threads_name_and_ticks() {
        let stat = "4242 (tokio-runtime-w) S 1 4242 1 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 \
                    3 0 1000 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(("tokio-runtime-w".into(), 200)));
        // A name with spaces and parentheses.
        let odd = "7 (a (b) c) R 1 7 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1";
        assert_eq!(parse_stat(odd), Some(("a (b) c".into(), 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn the_least_quota_along_the_path_binds() {
        let files = |path: &str| -> Option<String> {
            match path {
                "/sys/fs/cgroup/cpu/lg/cpu.cfs_quota_us" => Some("20000\n".into()),
                "/sys/fs/cgroup/cpu/lg/cpu.cfs_period_us" => Some("100000\n".into()),
                "/sys/fs/cgroup/cpu/lg/inner/cpu.cfs_quota_us" => Some("-1\n".into()),
                "/sys/fs/cgroup/cpu/lg/inner/cpu.cfs_period_us" => Some("100000\n".into()),
                "/sys/fs/cgroup/unified/box/cpu.max" => Some("150000 100000\n".into()),
                _ => None,
            }
        };
        assert_eq!(cgroup_quota("4:cpu,cpuacct:/lg/inner\n", files), Some(0.2));
        assert_eq!(cgroup_quota("0::/box\n", files), Some(1.5));
        assert_eq!(cgroup_quota("4:cpu:/\n0::/\n", files), None);
        assert_eq!(v2_cores("max 100000"), None);
    }

    #[test]
    fn this_process_uses_cpu_when_it_spins() {
        let me = std::process::id();
        let before = snapshot(&[me]);
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let u = usage(&before, &snapshot(&[me]));
        assert!(u.total_pct > 30.0, "{u:?}");
        assert!(u.busiest_thread_pct > 30.0 && u.threads >= 1, "{u:?}");
        assert!(u.available_cores >= 1.0, "{u:?}");
    }
}
