//! What a soak's misbehaving populations share: their options, the counts and the clock they
//! report into, how they connect and subscribe, and how their tasks are run until the soak
//! stops.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::model::soak::{AbuseCounts, Populations};
use crate::proto::Proto;
use crate::rig::options::{positive_duration, positive_rate};

/// How long a misbehaving client waits after a failed connect before it tries again, so that
/// a broker that refuses is not stormed.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The misbehaving populations' sizes and pace.
#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Churn connections alive at once: each connects, subscribes to a random channel of the
    /// healthy ones, reads and drops what comes, and leaves after a few seconds.
    #[arg(long, default_value_t = 200)]
    pub churn: u64,
    /// New churn connections per second (so each lives --churn ÷ this on average).
    #[arg(long, default_value_t = 50.0, value_parser = positive_rate)]
    pub churn_rate: f64,
    /// Burst readers: subscribe to the burst channel and read every burst as fast as they
    /// can; each must receive every message of every burst and never be cut.
    #[arg(long, default_value_t = 10)]
    pub burst_readers: u64,
    /// How often the burst publisher writes a burst, all at once.
    #[arg(long, default_value = "30s", value_parser = positive_duration)]
    pub burst_every: Duration,
    /// Messages in a burst.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub burst_messages: u64,
    /// Payload bytes of a burst message.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(32..))]
    pub burst_size: u64,
    /// Slow consumers: subscribe to the burst channel, stop reading, look after --slow-stall
    /// whether the broker cut them, and start again.
    #[arg(long, default_value_t = 10)]
    pub slow: u64,
    /// How long a slow consumer does not read. The default outlasts what the broker's own
    /// defaults take to cut it with the default bursts: past --pending-soft 8M (two bursts of
    /// 5 MB) for --pending-soft-for 10s, which the broker finds when it next queues output for
    /// it, the third burst: at most 90 s after subscribing.
    #[arg(long, default_value = "100s", value_parser = positive_duration)]
    pub slow_stall: Duration,
    /// Malformed clients: bad JSON, an unknown command, an over-long channel name, a JSON
    /// value that is not an object, then half a frame and silence; again when closed.
    #[arg(long, default_value_t = 50)]
    pub malformed: u64,
    /// How long a malformed client waits after its half frame for the broker to close the
    /// connection (its frame deadline) before it gives up and reconnects.
    #[arg(long, default_value = "40s", value_parser = positive_duration)]
    pub half_frame_wait: Duration,
}

impl Opts {
    /// Clients of every misbehaving population at once (churn at its most).
    pub fn total(&self) -> u64 {
        self.churn + self.burst_readers + self.slow + self.malformed
    }

    /// The populations of a soak of `clients` in all.
    pub fn populations(&self, clients: u64) -> Populations {
        Populations {
            clients,
            healthy: clients.saturating_sub(self.total()),
            churn: self.churn,
            churn_per_sec: self.churn_rate,
            burst_readers: self.burst_readers,
            burst_messages: self.burst_messages,
            burst_bytes: self.burst_size,
            burst_every_secs: self.burst_every.as_secs_f64(),
            slow: self.slow,
            slow_stall_secs: self.slow_stall.as_secs_f64(),
            malformed: self.malformed,
        }
    }
}

/// What every misbehaving client's task shares.
pub struct Shared {
    pub target: SocketAddr,
    /// Cancelled when the soak ends (or is interrupted): every task stops at its next await.
    pub stop: CancellationToken,
    /// What times in the report are counted from.
    pub origin: Instant,
    /// How long a connect, and the acknowledgement it waits for, may take.
    pub timeout: Duration,
    pub(super) counts: Mutex<AbuseCounts>,
}

impl Shared {
    /// Counts something into the current window.
    pub fn count(&self, add: impl FnOnce(&mut AbuseCounts)) {
        add(&mut self.counts.lock().expect("abuse counts lock"));
    }

    /// Connects (through `socket`, when it needs setting up first) and subscribes to
    /// `channel`, within the timeout; a failure is counted, and waited out for a moment.
    pub async fn subscribed(
        &self,
        channel: &str,
        socket: Option<TcpSocket>,
    ) -> Option<(TcpStream, Vec<u8>)> {
        self.within_timeout(async {
            let mut stream = match socket {
                Some(s) => s.connect(self.target).await?,
                None => TcpStream::connect(self.target).await?,
            };
            stream.set_nodelay(true)?;
            let early = Proto::Hubbub
                .subscribe(&mut stream, channel, Vec::new())
                .await?;
            Ok((stream, early))
        })
        .await
    }

    /// `setup` (a connect and what it waits for) within the timeout; a failure is counted, and
    /// waited out for a moment.
    pub async fn within_timeout<T>(&self, setup: impl Future<Output = io::Result<T>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, setup).await {
            Ok(Ok(done)) => Some(done),
            _ => {
                self.failed_connect().await;
                None
            }
        }
    }

    /// Counts a failed connect and waits [`RETRY_AFTER`].
    pub async fn failed_connect(&self) {
        self.count(|c| c.abuser_connect_failures += 1);
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// Runs `task` on `tracker` until it ends or `token` is cancelled (dropping it, and with it
/// its sockets).
pub fn until(
    tracker: &TaskTracker,
    token: &CancellationToken,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let token = token.clone();
    tracker.spawn(async move { token.run_until_cancelled(task).await });
}
