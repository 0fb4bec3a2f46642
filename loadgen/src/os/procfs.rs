//! What loadgen reads from `/proc`: parsers for the kernel's text formats (pure, so each is
//! tested on a sample of the file) and the small readers around them.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

/// A process's resident memory, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcMem {
    /// `VmRSS`, in bytes.
    pub rss: u64,
    /// `RssAnon` (heap and stacks, not the mapped executable), in bytes; 0 where the kernel
    /// does not report it.
    pub rss_anon: u64,
}

/// Parses `VmRSS` and `RssAnon` (both in kB) out of a `/proc/PID/status` file.
pub fn parse_status(status: &str) -> Option<ProcMem> {
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let mut words = line[key.len()..].split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") | None => Some(n * 1024),
            Some(_) => None,
        }
    };
    Some(ProcMem {
        rss: kb("VmRSS:")?,
        rss_anon: kb("RssAnon:").unwrap_or(0),
    })
}

/// Parses the pages in use by TCP buffers (`TCP: ... mem N`) out of `/proc/net/sockstat`.
pub fn parse_sockstat_tcp_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "mem")?;
    words.get(at + 1)?.parse().ok()
}

/// Parses `Slab:` (in kB) out of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_slab(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("Slab:"))?;
    let kb: u64 = line["Slab:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `/proc/uptime`: seconds since boot, and seconds all cores together have spent idle.
///
/// The machine's busy share is taken from these rather than from `/proc/stat`'s user and
/// system ticks: those are counted by the timer tick, which a tickless kernel does not run
/// on an idle core, so work done in bursts shorter than a tick goes uncounted. Measured
/// here: with loadgen and a broker charged 13-19% of a core, `/proc/stat`'s ticks said 0-3%
/// and the idle time 14-20%.
pub fn parse_uptime(uptime: &str) -> Option<(f64, f64)> {
    let mut it = uptime.split_whitespace().map(|n| n.parse::<f64>().ok());
    Some((it.next()??, it.next()??))
}

/// [`parse_uptime`] now; `None` where unreadable.
pub fn read_uptime() -> Option<(f64, f64)> {
    parse_uptime(&fs::read_to_string("/proc/uptime").ok()?)
}

/// This process's CPU time (user and system, in nanoseconds) and resident set (bytes), from
/// `/proc/self`; `None` where unreadable.
pub fn read_self_usage() -> Option<(u64, u64)> {
    let (_, ticks) = super::threads::parse_stat(&fs::read_to_string("/proc/self/stat").ok()?)?;
    let cpu_ns = (ticks as f64 * 1e9 / super::threads::ticks_per_sec()) as u64;
    let mem = parse_status(&fs::read_to_string("/proc/self/status").ok()?)?;
    Some((cpu_ns, mem.rss))
}

/// TCP's listen-queue counters, machine-wide since boot, out of `/proc/net/netstat`:
/// (`ListenOverflows`, `ListenDrops`). An overflow is a connection a listener's accept queue
/// had no room for (its SYN or its final ACK dropped, the client retrying after a second);
/// drops count those and any other connection lost at a listener.
pub fn parse_netstat_listen(netstat: &str) -> Option<(u64, u64)> {
    let mut rows = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = rows.next()?.split_whitespace().collect();
    let values: Vec<&str> = rows.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let at = names.iter().position(|n| *n == name)?;
        values.get(at)?.parse().ok()
    };
    Some((get("ListenOverflows")?, get("ListenDrops")?))
}

/// [`parse_netstat_listen`] of this network namespace now; `None` where unreadable.
pub fn read_listen_drops() -> Option<(u64, u64)> {
    parse_netstat_listen(&fs::read_to_string("/proc/net/netstat").ok()?)
}

/// How many of a process's descriptors are sockets, given where its `/proc/PID/fd` links point
/// (`socket:[inode]` for a socket; a path, `pipe:[…]` or `anon_inode:[…]` otherwise).
pub fn count_socket_links<P: AsRef<Path>>(targets: impl IntoIterator<Item = P>) -> usize {
    targets
        .into_iter()
        .filter(|t| t.as_ref().as_os_str().as_bytes().starts_with(b"socket:"))
        .count()
}

/// The open socket descriptors of process `pid`, from `/proc/PID/fd` (readable for a process
/// of the same user, or by root).
pub fn read_socket_count(pid: u32) -> io::Result<usize> {
    let mut targets = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        match fs::read_link(entry?.path()) {
            Ok(target) => targets.push(target),
            // Closed between listing and reading: not open any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(count_socket_links(targets))
}

pub fn read_proc_mem(pid: u32) -> io::Result<ProcMem> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path)?;
    parse_status(&text).ok_or_else(|| io::Error::other(format!("no VmRSS in {path}")))
}

/// Bytes the kernel holds in TCP buffers, machine-wide; `None` where it cannot be read.
fn read_kernel_tcp() -> Option<u64> {
    let pages = parse_sockstat_tcp_pages(&fs::read_to_string("/proc/net/sockstat").ok()?)?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    Some(pages * u64::try_from(page).ok()?)
}

/// Kernel memory, machine-wide, in bytes; `None` where unreadable.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelMem {
    pub tcp: Option<u64>,
    pub slab: Option<u64>,
}

pub fn read_kernel() -> KernelMem {
    KernelMem {
        tcp: read_kernel_tcp(),
        slab: read_slab(),
    }
}

/// The kernel's slab memory, machine-wide, in bytes; `None` where unreadable.
pub fn read_slab() -> Option<u64> {
    parse_meminfo_slab(&fs::read_to_string("/proc/meminfo").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uptime_and_idle() {
        assert_eq!(parse_uptime("5168.61 4430.30\n"), Some((5168.61, 4430.30)));
        assert_eq!(parse_uptime("5168.61\n"), None);
        assert_eq!(parse_uptime("x 1\n"), None);
    }

    #[test]
    fn parses_the_listen_queue_counters() {
        let netstat =
            "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops TCPHPHits\n\
                       TcpExt: 0 0 17 19 123\n\
                       IpExt: InNoRoutes ListenOverflows\n\
                       IpExt: 5 6\n";
        assert_eq!(parse_netstat_listen(netstat), Some((17, 19)));
        assert_eq!(
            parse_netstat_listen("TcpExt: ListenDrops\nTcpExt: 3\n"),
            None
        );
        assert_eq!(parse_netstat_listen(""), None);
    }

    #[test]
    fn parses_the_open_files_row() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            1024                 20000                files\n";
        assert_eq!(parse_nofile(text), Some((1024, 20000)));
        let text = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_nofile(text), Some((u64::MAX, u64::MAX)));
    }

    #[test]
    fn parses_rss_from_status() {
        let status = "Name:\tloadgen\nVmPeak:\t  200000 kB\nVmRSS:\t   12345 kB\n\
                      RssAnon:\t    8000 kB\nRssFile:\t    4345 kB\n";
        assert_eq!(
            parse_status(status),
            Some(ProcMem {
                rss: 12345 * 1024,
                rss_anon: 8000 * 1024
            })
        );
        // Older kernels have no RssAnon.
        assert_eq!(
            parse_status("VmRSS:\t 10 kB\n").map(|m| (m.rss, m.rss_anon)),
            Some((10240, 0))
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
        assert_eq!(parse_status("VmRSS:\t 10 MB\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = read_proc_mem(std::process::id()).unwrap();
        assert!(me.rss > 0 && me.rss_anon <= me.rss);
    }

    #[test]
    fn parses_tcp_pages_from_sockstat() {
        let sockstat = "sockets: used 9\n\
                        TCP: inuse 1 orphan 0 tw 2003 alloc 1 mem 165\n\
                        UDP: inuse 0 mem 0\n";
        assert_eq!(parse_sockstat_tcp_pages(sockstat), Some(165));
        assert_eq!(parse_sockstat_tcp_pages("UDP: inuse 0 mem 3\n"), None);
        assert_eq!(parse_sockstat_tcp_pages("TCP: inuse 1 mem\n"), None);
    }

    #[test]
    fn parses_slab_from_meminfo() {
        let meminfo = "MemTotal:       24684000 kB\nSlab:             137532 kB\n\
                       SReclaimable:      98008 kB\n";
        assert_eq!(parse_meminfo_slab(meminfo), Some(137532 * 1024));
        assert_eq!(parse_meminfo_slab("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn counts_socket_links() {
        let links = [
            "/dev/null",
            "socket:[123456]",
            "pipe:[77]",
            "anon_inode:[eventpoll]",
            "socket:[9]",
            "/tmp/socket:[1]",
        ];
        assert_eq!(count_socket_links(links), 2);
        assert_eq!(count_socket_links(Vec::<std::path::PathBuf>::new()), 0);
    }

    #[test]
    fn counts_another_process_sockets() {
        use std::process::{Command, Stdio};
        // A child whose only socket is its stdin (every other descriptor of this process is
        // close-on-exec), so the count is exact even with other tests opening sockets.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(std::os::fd::OwnedFd::from(listener))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sleep runs");
        let sockets = read_socket_count(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(sockets.unwrap(), 1);
    }

    #[test]
    fn reads_limits_and_samples_this_process() {
        let me = std::process::id();
        assert!(nofile_of(me).is_some());
        assert!(running(me));
        let limits = crate::os::read_limits(Some(me), 1);
        assert!(limits.cores >= 1 && limits.mem_total_bytes > 0);
        let mut s = crate::os::Sampler::new(&[me], &[]);
        let r = s.read();
        assert!(r.broker_alive && r.broker_rss_bytes > 0);
    }
}
