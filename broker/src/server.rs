//! The accept loop and the broker's lifecycle.
//!
//! [`Broker::run`] serves a listener until its shutdown token is cancelled; [`start`] does the
//! same on a background task and hands back the address and counters, which is how tests and
//! loadgen embed a broker.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::connection;
use crate::link;
use crate::protocol::encode;
use crate::registry::Registry;
use crate::shared::Shared;
use crate::stats::{self, Stats, StatsSnapshot};
use crate::upstream::Upstream;

/// First and longest pause after a failed `accept`. Failures such as EMFILE persist until a
/// client leaves, so retrying at once would spin a core; backing off keeps the broker serving
/// the clients it has.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));
/// How long shutdown waits for connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections the kernel may hold for `accept` (it caps this at `net.core.somaxconn`).
/// `TcpListener::bind` uses 128, and a burst of clients past that loses SYNs, which the
/// clients retry only after a second.
const LISTEN_BACKLOG: u32 = 4096;

/// Descriptors the broker keeps for itself (its listener, the runtime's, the upstream link,
/// the [`Reserve`]) when it sizes `--max-connections` from the open-files limit.
const KEPT_DESCRIPTORS: u64 = 32;

/// A broker: its settings, subscriptions and counters.
pub struct Broker {
    shared: Arc<Shared>,
    next_id: AtomicU64,
    /// `--max-connections`, or what the open-files limit allows.
    max_connections: u64,
    /// The `--metrics` listener, bound by [`Broker::bind_metrics`] and taken by `run`.
    metrics: std::sync::Mutex<Option<TcpListener>>,
    /// `--tls-cert`: every client connection is TLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// `--upstream-tls-ca`: the link to the upstream is TLS.
    link_tls: Option<crate::tls::LinkTls>,
}

/// `configured`, or what the process's open-files limit allows when it is not: a client past
/// the descriptors would meet a broker that cannot accept it, and wait unanswered.
fn connection_limit(configured: Option<usize>) -> u64 {
    if let Some(n) = configured {
        return n as u64;
    }
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => soft.saturating_sub(KEPT_DESCRIPTORS).max(1),
        Err(e) => {
            warn!(error = %e, "cannot read the open-files limit; connections are not limited");
            u64::MAX
        }
    }
}

/// A descriptor held in reserve (on `/dev/null`) so that, out of descriptors, the broker can
/// still accept a waiting client to tell it why it is refused, instead of leaving it
/// connected in the kernel's queue and unanswered (what libev's and nginx's documentation
/// describe for EMFILE). Only needed past `--max-connections` set above the open-files
/// limit, or when the broker's own descriptors grew.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn new() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }

    /// After an `accept` that failed for want of descriptors: frees the reserve, accepts a
    /// waiting client with it, sends it the ERROR and closes it, then takes the reserve back.
    /// `false` if no client was waiting (Linux takes the descriptor before it looks at the
    /// queue) or there was no reserve: the caller backs off.
    fn refuse_one(&mut self, listener: &TcpListener) -> bool {
        if self.0.take().is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
            return false;
        }
        // Accepted on the side, not through tokio: a client is either waiting now or this is
        // not the moment, and the listener is non-blocking, so this returns at once.
        let refused = match socket2::SockRef::from(listener).accept() {
            Ok((socket, peer)) => {
                debug!(peer = ?peer.as_socket(), "connection refused: out of file descriptors");
                let _ = socket.set_nonblocking(true);
                let _ = socket.send(&encode::error(TOO_MANY));
                true
            }
            Err(_) => false,
        };
        self.0 = std::fs::File::open("/dev/null").ok();
        refused
    }
}

/// The ERROR a client is refused with, at `--max-connections` or out of descriptors.
const TOO_MANY: &str = "too many connections";

/// Whether an `accept` failed for want of file descriptors, the process's or the system's.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::errno::Errno::EMFILE as i32 || code == nix::errno::Errno::ENFILE as i32
    )
}

impl Broker {
    /// A broker with `config`. Fails when its TLS certificates or keys cannot be loaded (read
    /// here, once, so that a broker with a bad one refuses to start).
    pub fn new(config: Config) -> io::Result<Self> {
        let tls = crate::tls::acceptor(&config.tls)?;
        let link_tls = crate::tls::link(&config.tls, config.upstream.as_ref())?;
        let stats = Arc::new(Stats::default());
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| default_name(config.listen));
        let upstream = config
            .upstream
            .clone()
            .map(|addr| Arc::new(Upstream::new(addr)));
        let max_connections = connection_limit(config.max_connections);
        let auth = config
            .users
            .clone()
            .map(|users| Arc::new(crate::auth::Auth::new(users)));
        Ok(Self {
            max_connections,
            metrics: Default::default(),
            tls,
            link_tls,
            shared: Arc::new(Shared {
                pending: Arc::new(config.pending_limits()),
                registry: Arc::new(Registry::new(stats.clone())),
                reaper: Default::default(),
                stats,
                config,
                name,
                upstream,
                live: Default::default(),
                id: crate::shared::random_id(),
                links: Default::default(),
                link_epochs: Default::default(),
                loop_logged: Default::default(),
                auth,
            }),
            next_id: AtomicU64::new(1),
        })
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// Binds `--metrics`, if it is set and not bound yet, and returns its address: called
    /// before `run` (which otherwise binds it itself), so that an address in use stops the
    /// broker at start and port 0's pick is known before the first client comes.
    pub fn bind_metrics(&self) -> io::Result<Option<SocketAddr>> {
        let mut slot = self.metrics.lock().expect("metrics lock");
        if slot.is_none() {
            if let Some(addr) = self.shared.config.metrics {
                *slot = Some(crate::metrics::bind(addr)?);
            }
        }
        slot.as_ref().map(TcpListener::local_addr).transpose()
    }

    /// Serves `listener` until `shutdown` is cancelled, then closes every connection.
    pub async fn run(&self, listener: TcpListener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        if let Ok(addr) = listener.local_addr() {
            let tls = self.tls.is_some();
            info!(%addr, max_connections = self.max_connections, tls, "hubbub listening on {addr}");
            if !addr.ip().is_loopback() && self.shared.auth.is_none() {
                warn!(
                    %addr,
                    "listening beyond loopback without a users file: anyone who can reach \
                     {addr} may publish, subscribe, link and read STATS (see --users)"
                );
            }
        }
        if let Err(e) = self.bind_metrics() {
            warn!(error = %e, "cannot listen for --metrics; serving without it");
        }
        // Not on `tracker`: the endpoint outlives the connections, answering /ready with 503
        // while they drain, and stops (`metrics_stop`) once they have.
        let metrics_stop = CancellationToken::new();
        let metrics = self.metrics.lock().expect("metrics lock").take().map(|l| {
            let (shared, stop) = (self.shared.clone(), metrics_stop.clone());
            tokio::spawn(crate::metrics::serve(l, shared, shutdown.clone(), stop))
        });
        let mut reserve = Reserve::new();
        let interval = self.shared.config.stats_interval;
        if !interval.is_zero() {
            tracker.spawn(log_stats(self.shared.clone(), interval, shutdown.clone()));
        }
        if let Some(upstream) = &self.shared.upstream {
            let (shared, upstream) = (self.shared.clone(), upstream.clone());
            let tls = self.link_tls.clone();
            tracker.spawn(link::run(shared, upstream, tls, shutdown.clone()));
        }
        let mut backoff = ACCEPT_BACKOFF.0;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF.0;
                    self.admit(stream, peer, &tracker);
                }
                Err(e) if out_of_descriptors(&e) && reserve.refuse_one(&listener) => {
                    stats::add(&self.shared.stats.connections_rejected, 1);
                }
                Err(e) => {
                    stats::add(&self.shared.stats.accept_errors, 1);
                    warn!(error = %e, retry_in = ?backoff, "accept failed; backing off");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                }
            }
        }
        drop(listener);
        self.shared.live.shut_all();
        tracker.close();
        let open = self.shared.stats.connections_current.load(Relaxed);
        info!(open, "shutting down");
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            warn!("connections still open after {SHUTDOWN_GRACE:?}; leaving them");
        }
        metrics_stop.cancel();
        if let Some(task) = metrics {
            let _ = task.await;
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr, tracker: &TaskTracker) {
        let stats = &self.shared.stats;
        if stats.connections_current.load(Relaxed) >= self.max_connections {
            stats::add(&stats.connections_rejected, 1);
            debug!(%peer, "connection refused: --max-connections reached");
            let _ = stream.try_write(&encode::error(TOO_MANY));
            return;
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "could not set TCP_NODELAY");
        }
        stats::add(&stats.connections_current, 1);
        stats::add(&stats.connections_total, 1);
        let id = self.next_id.fetch_add(1, Relaxed);
        debug!(conn = id, %peer, "connected");
        match &self.tls {
            None => tracker.spawn(connection::serve(stream, id, self.shared.clone())),
            Some(tls) => {
                let shared = self.shared.clone();
                tracker.spawn(connection::serve_tls(stream, id, shared, tls.clone()))
            }
        };
    }
}

/// Logs the counters every `every`, but only when they changed since the last line: an idle
/// broker's log stays quiet.
async fn log_stats(shared: Arc<Shared>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = StatsSnapshot {
            uptime_ms: 0,
            ..shared.snapshot()
        };
        if last.as_ref() == Some(&s) {
            continue;
        }
        last = Some(s.clone());
        let upstream = s.upstream.as_ref().map(|u| {
            let state = if u.connected { "up" } else { "down" };
            format!(
                "{} {state} fwd={} recv={} dropped={}",
                u.addr, u.forwarded, u.received, u.dropped
            )
        });
        info!(
            connections = s.connections_current,
            channels = s.channels,
            subscriptions = s.subscriptions,
            messages_in = s.messages_in,
            messages_out = s.messages_out,
            bytes_in = s.bytes_in,
            bytes_out = s.bytes_out,
            slow_consumers = s.slow_consumers,
            protocol_errors = s.protocol_errors,
            accept_errors = s.accept_errors,
            links = s.links,
            upstream = upstream.as_deref().unwrap_or("none"),
            "stats"
        );
    }
}

/// Serves `listener` with `config` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> io::Result<()> {
    Broker::new(config)?.run(listener, shutdown).await;
    Ok(())
}

/// A broker running on a background task.
pub struct RunningBroker {
    pub addr: SocketAddr,
    /// Where `--metrics` listens, if it is set.
    pub metrics: Option<SocketAddr>,
    pub stats: Arc<Stats>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningBroker {
    /// Shuts the broker down and waits until it has closed every connection.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Binds `addr` (port 0 picks a free port) with a listen backlog sized for bursts of clients.
/// Call it inside a tokio runtime, as the listener registers with its reactor.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds `config.listen` (port 0 picks a free port) and serves it on a background task.
pub async fn start(config: Config) -> io::Result<RunningBroker> {
    let listener = bind(config.listen)?;
    let addr = listener.local_addr()?;
    let broker = Broker::new(config)?;
    let metrics = broker.bind_metrics()?;
    let stats = broker.stats();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { broker.run(listener, token).await });
    Ok(RunningBroker {
        addr,
        metrics,
        stats,
        shutdown,
        task,
    })
}

/// A broker's name when not given: its listen address, or where that is every interface
/// (`0.0.0.0`, as in a container) the host's name with the port, so that the replicas of a
/// Compose service or the pods of a Deployment tell apart in their hub's log.
fn default_name(listen: std::net::SocketAddr) -> String {
    if !listen.ip().is_unspecified() {
        return listen.to_string();
    }
    match nix::sys::utsname::uname() {
        Ok(u) => format!("{}:{}", u.nodename().to_string_lossy(), listen.port()),
        Err(_) => listen.to_string(),
    }
}
