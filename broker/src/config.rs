//! The broker's settings: one struct, used as the `broker` binary's flags and built directly
//! by tests and loadgen.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// Limits and addresses of one broker.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (HOST:PORT; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:4243", env = "HUBBUB_LISTEN")]
    pub listen: SocketAddr,

    /// Largest frame a client may send, in bytes (K, M, G suffixes are powers of 1024).
    /// A longer one gets an ERROR and the connection is closed.
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    pub max_frame: usize,

    /// Output a client may have waiting (in bytes; K, M, G suffixes) before it counts as a
    /// slow consumer and is disconnected at once, so that it cannot slow others or grow the
    /// broker.
    #[arg(long, default_value = "32M", value_parser = parse_size)]
    pub max_pending: usize,

    /// Output a client may have waiting for --pending-soft-for before it counts as a slow
    /// consumer: a reader that keeps up falls this far behind only for the moment a burst
    /// takes to read, one that stays behind is cut.
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    pub pending_soft: usize,

    /// How long a client's output may stay past --pending-soft (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub pending_soft_for: Duration,

    /// Memory the broker may hold in unfinished frames and output queues, all connections
    /// together (K, M, G suffixes). Past it a PUBLISH, and a frame still growing past 16K, get
    /// an ERROR instead of the process growing (the frame's connection is closed); work is
    /// accepted again once what is held drains.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub memory_budget: usize,

    /// How long a new connection may take to send its first complete command (0: for ever).
    /// Past it, it gets an ERROR and is closed: a connection that never speaks would hold a
    /// descriptor for nothing.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub first_command_deadline: Duration,

    /// How long a frame may stay unfinished, from its first byte to its newline (0: for ever).
    /// Past it, the connection gets an ERROR and is closed, and the frame's memory is freed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub frame_deadline: Duration,

    /// Longest channel name, in bytes (K suffix allowed). A SUBSCRIBE, UNSUBSCRIBE or PUBLISH
    /// naming a longer one gets an ERROR; the connection stays open.
    #[arg(long, default_value = "1K", value_parser = parse_size)]
    pub max_channel: usize,

    /// Most channels one connection may be subscribed to; one more SUBSCRIBE gets an ERROR.
    /// A link from a broker below (LINK) is not held to it: it subscribes to every channel of
    /// its leaf.
    #[arg(long, default_value_t = 10_000)]
    pub max_subscriptions: usize,

    /// Deepest nesting of arrays and objects in a published message; a deeper one gets an
    /// ERROR and is not relayed (serde_json, among others, parses 128 levels).
    #[arg(long, default_value_t = 128)]
    pub max_depth: usize,

    /// Most simultaneous client connections; one more gets an ERROR "too many connections"
    /// and is closed. [default: what the open-files limit allows, less 32 descriptors kept
    /// for the broker itself]
    #[arg(long)]
    pub max_connections: Option<usize>,

    /// Upstream broker to link to (HOST:PORT, the host an address or a name looked up at
    /// each connect), making this broker a leaf of a hub topology: channels subscribed here
    /// are subscribed there, and messages flow both ways.
    #[arg(long)]
    pub upstream: Option<crate::address::HostPort>,

    /// How long the link to --upstream may go without a byte from the upstream before it is
    /// dropped and made again (it sends a PING after a third of this in silence). A hub
    /// across a network that stops answering, cut off or frozen, otherwise holds the link
    /// until the kernel gives up on it, a quarter of an hour later. 0: never.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,

    /// This broker's name, announced to its upstream (default: its listen address, or on
    /// every interface the host's name and the port).
    #[arg(long, env = "HUBBUB_NAME")]
    pub name: Option<String>,

    /// Users file (TOML: argon2 password hashes and what each user may do; README.md,
    /// "Authentication"). With it, a client must AUTH before anything but PING, and may then
    /// publish, subscribe, LINK and ask STATS only as its user allows. Read at start.
    #[arg(long, value_name = "FILE", value_parser = load_users)]
    pub users: Option<std::sync::Arc<crate::auth::Users>>,

    /// User this broker authenticates as at its --upstream (which needs a users file giving
    /// it the link permission).
    #[arg(long, value_name = "NAME", requires = "upstream_password")]
    pub upstream_user: Option<String>,

    /// File whose first line is the password of --upstream-user (never on the command line,
    /// where every user of the machine could read it).
    #[arg(
        long = "upstream-password-file",
        value_name = "PATH",
        value_parser = read_secret,
        requires = "upstream_user"
    )]
    pub upstream_password: Option<crate::protocol::Secret<'static>>,

    /// TLS for clients (--tls-cert, --tls-key, --tls-client-ca) and for the link to the
    /// upstream (--upstream-tls-*): `crate::tls`.
    #[command(flatten)]
    pub tls: crate::tls::TlsConfig,

    /// How often to log a line of counters (e.g. 10s; 0 turns it off).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub stats_interval: Duration,

    /// Serve Prometheus metrics over HTTP on this address (HOST:PORT; port 0 picks a free
    /// one): `/metrics` (the STATS counters), `/ready`, `/health`. Off by default. Anyone who
    /// reaches it reads the counters: an address beyond loopback is warned about at start.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

impl Config {
    /// The slow-consumer policy every client's outbox is held to.
    pub fn pending_limits(&self) -> crate::pending::PendingLimits {
        crate::pending::PendingLimits::new(
            self.max_pending,
            self.pending_soft,
            self.pending_soft_for,
        )
        .with_budget(self.memory_budget)
    }

    /// The limits every command is checked against.
    pub fn limits(&self) -> crate::protocol::Limits {
        crate::protocol::Limits {
            max_channel: self.max_channel,
            max_depth: self.max_depth,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4243".parse().expect("valid address"),
            max_frame: 1 << 20,
            max_pending: 32 << 20,
            pending_soft: 8 << 20,
            pending_soft_for: Duration::from_secs(10),
            memory_budget: 1 << 30,
            first_command_deadline: Duration::from_secs(30),
            frame_deadline: Duration::from_secs(30),
            max_channel: 1 << 10,
            max_subscriptions: 10_000,
            max_depth: 128,
            max_connections: None,
            upstream: None,
            upstream_timeout: Duration::from_secs(10),
            name: None,
            users: None,
            upstream_user: None,
            upstream_password: None,
            tls: Default::default(),
            stats_interval: Duration::from_secs(10),
            metrics: None,
        }
    }
}

/// `--users`: reads and checks the users file when the flags are parsed, so that a broker
/// with a bad one refuses to start, naming what is wrong.
fn load_users(path: &str) -> Result<std::sync::Arc<crate::auth::Users>, String> {
    crate::auth::Users::load(std::path::Path::new(path))
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string())
}

/// A password file's first line (without its line ending); an empty one is refused.
pub fn read_secret(path: &str) -> Result<crate::protocol::Secret<'static>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(format!("{path} holds no password on its first line"));
    }
    Ok(crate::protocol::Secret(line.to_owned().into()))
}

/// Parses `1048576`, `64K`, `1M`, `2G` (binary multiples; a trailing `B` or `iB` is allowed).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 1048576, 64K or 1M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("lots").is_err());
    }
}
