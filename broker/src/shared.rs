//! What every connection of one broker shares: its settings, the registry, the counters and
//! the upstream link's state, and the two things a PUBLISH does with them (deliver here, send
//! on upstream). The accept loop (`server`), the connections and the link all depend on this,
//! and it on none of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::audience::ConnId;
use crate::auth::Auth;
use crate::config::Config;
use crate::live::Live;
use crate::outbox::Outbox;
use crate::pending::PendingLimits;
use crate::protocol::{encode, Quoted};
use crate::reaper::Reaper;
use crate::registry::{Gather, Registry};
use crate::stats::{self, Stats, StatsSnapshot};
use crate::upstream::Upstream;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// `config`'s slow-consumer policy, shared by every client's outbox.
    pub(crate) pending: Arc<PendingLimits>,
    /// Shared with the [`Reaper`]'s thread, which holds it weakly.
    pub(crate) registry: Arc<Registry>,
    /// Undoes the departures of connections with many subscriptions, off the workers.
    pub(crate) reaper: Reaper,
    pub(crate) stats: Arc<Stats>,
    /// Announced to the upstream broker.
    pub(crate) name: String,
    pub(crate) upstream: Option<Arc<Upstream>>,
    /// Every open client connection, for shutdown to end them.
    pub(crate) live: Live,
    /// This broker's id in a hub: random, made at start, so that a link can tell whether the
    /// brokers above it include itself (a loop), whatever their names and addresses.
    pub(crate) id: String,
    /// The connections that are links from brokers below, told this broker's path whenever it
    /// changes. A few per broker.
    pub(crate) links: Mutex<HashMap<ConnId, Arc<Outbox>>>,
    /// Which link of each broker below is its newest (LINK's epoch): `crate::epochs`.
    pub(crate) link_epochs: crate::epochs::LinkEpochs,
    /// A refused loop was logged at warning level; later ones are logged at debug level, as
    /// the broker below keeps trying every few seconds.
    pub(crate) loop_logged: AtomicBool,
    /// The users and the AUTHs being checked (`--users`); `None` without a users file.
    pub(crate) auth: Option<Arc<Auth>>,
}

/// A fresh random id (64 bits, hex).
pub(crate) fn random_id() -> String {
    format!("{:016x}", random_u64())
}

/// 64 random bits, enough for an id or a jitter: std's hasher keys are random per process,
/// and the clock's nanoseconds differ between calls. Not for secrets.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
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

    /// This broker's id, then those of the brokers above it as its upstream last said, nearest
    /// first.
    pub(crate) fn path(&self) -> Vec<String> {
        let mut path = vec![self.id.clone()];
        if let Some(upstream) = &self.upstream {
            path.extend(upstream.path.lock().expect("upstream lock").iter().cloned());
        }
        path
    }

    /// Tells every link from below this broker's path, after it changed: a broker below that
    /// finds its own id in it is in a loop and drops its link.
    pub(crate) fn announce_path(&self) {
        let frame = encode::link_reply(&self.name, &self.path());
        for outbox in self.links.lock().expect("links lock").values() {
            let _ = outbox.push(frame.clone());
        }
    }

    /// Logs a link refused for closing a loop: at warning level the first time, then at debug
    /// level.
    pub(crate) fn log_loop(&self, what: &str, name: &str) {
        if self.loop_logged.swap(true, Relaxed) {
            tracing::debug!(name = %Quoted(name), "{what}");
        } else {
            tracing::warn!(name = %Quoted(name), "{what} (logged once; later ones at debug level)");
        }
    }

    /// The counters, with the upstream link's.
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        s.upstream = self.upstream.as_ref().map(|u| u.snapshot());
        s.memory_held = self.pending.budget.held() as u64;
        s
    }
}
