//! What every connection of one broker shares: its settings, the registry, the counters and
//! the upstream link's state, and the two things a PUBLISH does with them (deliver here, send
//! on upstream). The accept loop (`server`), the connections and the link all depend on this,
//! and it on none of them.

use std::sync::Arc;

use crate::config::Config;
use crate::registry::{ConnId, Registry};
use crate::stats::{self, Stats, StatsSnapshot};
use crate::upstream::Upstream;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) stats: Arc<Stats>,
    /// Announced to the upstream broker.
    pub(crate) name: String,
    pub(crate) upstream: Option<Arc<Upstream>>,
}

impl Shared {
    /// Delivers a message to the subscribers here, except `except`, and counts it.
    pub(crate) fn deliver(&self, channel: &str, raw_message: &str, except: Option<ConnId>) {
        let p = self.registry.publish_except(channel, raw_message, except);
        if p.deliveries > 0 {
            stats::add(&self.stats.messages_out, p.deliveries as u64);
            stats::add(&self.stats.bytes_out, (p.deliveries * p.frame_len) as u64);
        }
    }

    /// A PUBLISH made at this broker, by a client or by a link from a broker below (`from`):
    /// delivered here (never back down the link it came up) and sent on upstream.
    pub(crate) fn publish(&self, channel: &str, raw_message: &str, from_link: Option<ConnId>) {
        stats::add(&self.stats.messages_in, 1);
        self.deliver(channel, raw_message, from_link);
        if let Some(upstream) = &self.upstream {
            upstream.forward(channel, raw_message);
        }
    }

    /// The counters, with the upstream link's.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        s.upstream = self.upstream.as_ref().map(|u| u.snapshot());
        s
    }
}
