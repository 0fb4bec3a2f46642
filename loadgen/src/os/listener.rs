//! Which process listens on a local TCP port: so a comparison needs only the addresses of the
//! brokers it measures, and still samples each one's CPU and memory from `/proc/PID`.
//!
//! The kernel lists listening sockets with their inode in `/proc/net/tcp` (and `tcp6`); the
//! process holding one has a descriptor linking to `socket:[INODE]` under `/proc/PID/fd`.

use std::fs;

/// `st` of a listening socket in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The inodes of the sockets listening on `port` in the text of `/proc/net/tcp` or
/// `/proc/net/tcp6` (any local address).
pub fn listening_inodes(proc_net_tcp: &str, port: u16) -> Vec<u64> {
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let listening = *fields.get(3)? == LISTEN;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .filter(|&inode| inode != 0)
        .collect()
}

/// The pid of the process listening on local TCP `port`, if one is (and is visible to us).
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let fds = fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|link| wanted.iter().any(|w| link.as_os_str() == w.as_str()))
            .then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18F6 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41221 1 0000000000000000 100 0 0 10 0
   1: 0100007F:18F6 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 41300 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 50001 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_only_the_listening_socket_of_the_port() {
        // 0x18F6 = 6390: the listener, not the established connection to it.
        assert_eq!(listening_inodes(TCP, 6390), vec![41221]);
        assert_eq!(listening_inodes(TCP, 8080), vec![50001]);
        assert!(listening_inodes(TCP, 1).is_empty());
        assert!(listening_inodes("header only\n", 6390).is_empty());
    }

    #[test]
    fn finds_this_process_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(pid_listening_on(port), None);
    }
}
