//! What every connection of one broker shares: its settings, the registry, the counters and
//! the upstream link's state, and the two things a PUBLISH does with them (deliver here, send
//! on upstream). The accept loop (`server`), the connections and the link all depend on this,
//! and it on none of them.

use std::sync::Arc;

use crate::config::Config;
use crate::live::Live;
use crate::protocol::Limits;
use crate::registry::{Gather, Registry};
use crate::stats::{self, Stats, StatsSnapshot};
use crate::upstream::Upstream;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// `config`'s limits on commands, as the protocol checks them.
    pub(crate) limits: Limits,
    pub(crate) registry: Registry,
    pub(crate) stats: Arc<Stats>,
    /// Announced to the upstream broker.
    pub(crate) name: String,
    pub(crate) upstream: Option<Arc<Upstream>>,
    /// Every open client connection, for shutdown to end them.
    pub(crate) live: Live,
}

impl Shared {
    /// A PUBLISH made at this broker, by a client or by a link from a broker below: gathered
    /// for the subscribers here (`read`, which a link's exception is set on, so it never goes
    /// back down the link it came up) and sent on upstream.
    pub(crate) fn publish(&self, read: &mut Gather<'_>, channel: &str, raw_message: &str) {
        stats::add(&self.stats.messages_in, 1);
        read.publish(channel, raw_message);
        if let Some(upstream) = &self.upstream {
            upstream.forward(channel, raw_message, read.wakes());
        }
    }

    /// The counters, with the upstream link's.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        s.upstream = self.upstream.as_ref().map(|u| u.snapshot());
        s
    }
}
