//! The broker's counters, readable from outside through the STATS extension and a periodic
//! log line.
//!
//! Plain relaxed atomics: a counter is bumped once per publish (not once per delivery) so the
//! fan-out loop pays nothing for them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Live counters, shared by every connection.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections refused because `--max-connections` was reached.
    pub connections_rejected: AtomicU64,
    /// Channels with at least one subscriber.
    pub channels: AtomicU64,
    /// (connection, channel) pairs.
    pub subscriptions: AtomicU64,
    /// PUBLISH commands received.
    pub messages_in: AtomicU64,
    /// MESSAGE frames queued for subscribers (one publish to 100 subscribers counts 100).
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Failed `accept` calls (out of file descriptors, for one).
    pub accept_errors: AtomicU64,
    /// Connections that announced themselves as links from brokers below.
    pub links: AtomicU64,
    /// PUBLISHes discarded from a link superseded by a newer link of the same broker below
    /// (`crate::epochs`).
    pub link_superseded: AtomicU64,
    /// PUBLISHes and growing frames refused because the memory budget was spent.
    pub budget_refusals: AtomicU64,
    /// Connections closed for a first command or a frame that came too late.
    pub deadlines_missed: AtomicU64,
    /// AUTHs refused for a wrong user or password.
    pub auth_failures: AtomicU64,
    /// Commands refused for want of a permission, or of an AUTH first.
    pub permission_denials: AtomicU64,
    /// TLS handshakes that failed or did not finish within --first-command-deadline: a
    /// client's here, or (on a leaf) the link's to its upstream.
    pub tls_handshake_failures: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            connections_current: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            channels: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            links: AtomicU64::new(0),
            link_superseded: AtomicU64::new(0),
            budget_refusals: AtomicU64::new(0),
            deadlines_missed: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            permission_denials: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy of [`Stats`]; this is the body of the STATS reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// The broker's version (its crate's), so a measurement can record what it measured.
    #[serde(default)]
    pub version: String,
    pub uptime_ms: u64,
    pub connections_current: u64,
    pub connections_total: u64,
    pub connections_rejected: u64,
    pub channels: u64,
    pub subscriptions: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub slow_consumers: u64,
    pub protocol_errors: u64,
    pub accept_errors: u64,
    pub links: u64,
    /// PUBLISHes discarded from links superseded by a newer link of the same broker below.
    #[serde(default)]
    pub link_superseded: u64,
    /// PUBLISHes and growing frames refused because `--memory-budget` was spent.
    #[serde(default)]
    pub budget_refusals: u64,
    /// Connections closed for a first command or a frame that came too late.
    #[serde(default)]
    pub deadlines_missed: u64,
    /// Bytes held in unfinished frames and output queues, as the memory budget counts them.
    #[serde(default)]
    pub memory_held: u64,
    /// AUTHs refused for a wrong user or password (`--users`).
    #[serde(default)]
    pub auth_failures: u64,
    /// Commands refused for want of a permission, or of an AUTH first (`--users`).
    #[serde(default)]
    pub permission_denials: u64,
    /// TLS handshakes that failed or did not finish in time (`--tls-cert`, and on a leaf
    /// `--upstream-tls-ca`).
    #[serde(default)]
    pub tls_handshake_failures: u64,
    /// The link to the upstream broker, if this broker has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSnapshot>,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            connections_current: self.connections_current.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            connections_rejected: self.connections_rejected.load(Relaxed),
            channels: self.channels.load(Relaxed),
            subscriptions: self.subscriptions.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            slow_consumers: self.slow_consumers.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            links: self.links.load(Relaxed),
            link_superseded: self.link_superseded.load(Relaxed),
            budget_refusals: self.budget_refusals.load(Relaxed),
            deadlines_missed: self.deadlines_missed.load(Relaxed),
            memory_held: 0,
            auth_failures: self.auth_failures.load(Relaxed),
            permission_denials: self.permission_denials.load(Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            upstream: None,
        }
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Subtracts `n` from a gauge.
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Relaxed);
}

/// The link's counters, as the STATS reply shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSnapshot {
    pub addr: String,
    pub connected: bool,
    /// Successful connections so far (1 + reconnects).
    pub connects: u64,
    /// PUBLISH frames sent up.
    pub forwarded: u64,
    /// MESSAGE frames that came down and were delivered here.
    pub received: u64,
    /// Publishes not forwarded because the link was down or overflowed.
    pub dropped: u64,
    /// Times the upstream refused this broker's AUTH or LINK (`--upstream-user`).
    #[serde(default)]
    pub refused: u64,
}
