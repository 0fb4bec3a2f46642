//! The state of the link to an upstream broker that everyone else touches: where forwarded
//! publishes go while the link is up, and its counters. The loop that keeps the link up is in
//! `link`; this part has no dependency on it, so connections can forward without knowing
//! how the link runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::address::HostPort;
use crate::outbox::{Outbox, Push, Wakes};
use crate::protocol::encode;
use crate::stats::UpstreamSnapshot;

/// The upstream link's state, shared with the connections that forward through it.
#[derive(Debug)]
pub struct Upstream {
    /// Where the upstream is, as given: a name is looked up at each connect.
    pub addr: HostPort,
    /// Where forwarded frames wait while the link is up; `None` while it is down.
    /// Overflow policy: the link's outbox is bounded like a client's (`--max-pending`); an
    /// upstream that falls that far behind is dropped and reconnected, and what was queued is
    /// lost and counted, as for any slow consumer.
    pub(crate) current: Mutex<Option<Arc<Outbox>>>,
    pub(crate) connected: AtomicBool,
    pub(crate) connects: AtomicU64,
    /// PUBLISHes written whole to the upstream's socket.
    pub(crate) forwarded: AtomicU64,
    /// PUBLISHes queued for the link and not yet written: when the link goes down (or
    /// overflows) these are lost, and counted in `dropped`, not in `forwarded`.
    pub(crate) in_flight: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Times the upstream refused this broker's AUTH or LINK.
    pub(crate) refused: AtomicU64,
    /// The upstream's path (its id, then those above it), as it last said; empty while the
    /// link is down.
    pub(crate) path: Mutex<Vec<String>>,
}

impl Upstream {
    pub fn new(addr: HostPort) -> Self {
        Self {
            addr,
            current: Mutex::new(None),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            path: Mutex::new(Vec::new()),
        }
    }

    /// Sends a publish made here up the link (dropped, and counted, while it is down).
    /// The link's task is woken through `wakes`, once per read rather than once per publish.
    pub fn forward(&self, channel: &str, raw_message: &str, wakes: &mut Wakes) {
        let current = self.current.lock().expect("upstream lock").clone();
        // Counted in flight before the push, so that the link, going down, cannot settle its
        // account between a push and its count.
        self.in_flight.fetch_add(1, Relaxed);
        let queued = current.is_some_and(|outbox| {
            let frame = Bytes::from(encode::publish_command(channel, raw_message));
            wakes.push(&outbox, frame) == Push::Queued
        });
        if !queued {
            self.in_flight.fetch_sub(1, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// `n` PUBLISHes reached the upstream's socket.
    pub(crate) fn sent(&self, n: u64) {
        self.in_flight.fetch_sub(n, Relaxed);
        self.forwarded.fetch_add(n, Relaxed);
    }

    /// The link went down: what was queued and not written is lost.
    pub(crate) fn lost_in_flight(&self) {
        self.dropped
            .fetch_add(self.in_flight.swap(0, Relaxed), Relaxed);
    }

    pub fn snapshot(&self) -> UpstreamSnapshot {
        UpstreamSnapshot {
            addr: self.addr.to_string(),
            connected: self.connected.load(Relaxed),
            connects: self.connects.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            received: self.received.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            refused: self.refused.load(Relaxed),
        }
    }
}
