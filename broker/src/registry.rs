//! Who is subscribed to what: the broker's one piece of shared state.
//!
//! A map from channel to its subscribers. Publishing looks up one channel and walks only its
//! own subscribers, so the cost of a publish is proportional to the channel's audience, not to
//! the number of channels or connections. Subscribers are kept in an [`IndexMap`]: iteration is
//! as fast as a `Vec`'s, and removing one of 50,000 is O(1) (`swap_remove`), where a plain
//! `Vec` would make mass disconnects quadratic.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::Notify;

use crate::outbox::{Outbox, Push};
use crate::protocol::encode;
use crate::stats::{self, Stats};

/// Identifies a connection for the life of the broker process.
pub type ConnId = u64;

struct Channel {
    /// The MESSAGE frame up to the payload, encoded once when the channel appears.
    prefix: Bytes,
    subscribers: IndexMap<ConnId, Arc<Outbox>>,
}

/// Channels and their subscribers.
pub struct Registry {
    channels: RwLock<HashMap<Arc<str>, Channel>>,
    stats: Arc<Stats>,
    /// Signalled when a channel gains its first subscriber or loses its last: what an
    /// upstream link subscribes to follows the set of channels here.
    interest: Notify,
}

/// The outcome of one publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Subscribers the frame was queued for.
    pub deliveries: usize,
    /// Size of the one shared MESSAGE frame, in bytes.
    pub frame_len: usize,
}

impl Registry {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            channels: RwLock::new(HashMap::new()),
            stats,
            interest: Notify::new(),
        }
    }

    /// Adds a subscriber; returns `false` if it was already subscribed.
    pub fn subscribe(&self, channel: &str, id: ConnId, outbox: &Arc<Outbox>) -> bool {
        let mut channels = self.channels.write().expect("registry lock");
        if !channels.contains_key(channel) {
            stats::add(&self.stats.channels, 1);
            let entry = Channel {
                prefix: encode::message_prefix(channel),
                subscribers: IndexMap::new(),
            };
            channels.insert(Arc::from(channel), entry);
            self.interest.notify_one();
        }
        let entry = channels.get_mut(channel).expect("inserted above");
        let added = entry.subscribers.insert(id, Arc::clone(outbox)).is_none();
        if added {
            stats::add(&self.stats.subscriptions, 1);
        }
        added
    }

    /// Removes a subscriber; returns `false` if it was not subscribed. A channel with no
    /// subscribers left is forgotten (nothing is stored for it).
    pub fn unsubscribe(&self, channel: &str, id: ConnId) -> bool {
        let mut channels = self.channels.write().expect("registry lock");
        let Some(entry) = channels.get_mut(channel) else {
            return false;
        };
        let removed = entry.subscribers.swap_remove(&id).is_some();
        if removed {
            stats::sub(&self.stats.subscriptions, 1);
        }
        if entry.subscribers.is_empty() {
            channels.remove(channel);
            stats::sub(&self.stats.channels, 1);
            self.interest.notify_one();
        }
        removed
    }

    /// Encodes `message` once and queues the same bytes for every subscriber of `channel`.
    /// A publish to a channel nobody listens on is dropped (protocol rule 7).
    pub fn publish(&self, channel: &str, raw_message: &str) -> Published {
        self.publish_except(channel, raw_message, None)
    }

    /// Like [`Registry::publish`], but not to `except`: a message that came up a link from a
    /// broker below is never echoed back down it.
    pub fn publish_except(
        &self,
        channel: &str,
        raw_message: &str,
        except: Option<ConnId>,
    ) -> Published {
        let channels = self.channels.read().expect("registry lock");
        let Some(entry) = channels.get(channel) else {
            return Published::default();
        };
        let frame = encode::message(&entry.prefix, raw_message);
        let mut deliveries = 0;
        for (&id, outbox) in &entry.subscribers {
            if Some(id) == except {
                continue;
            }
            // An overflowing subscriber is cut off by its own connection task; the loop goes
            // on at full speed for everyone else.
            if outbox.push(frame.clone()) == Push::Queued {
                deliveries += 1;
            }
        }
        Published {
            deliveries,
            frame_len: frame.len(),
        }
    }

    /// Every channel with a subscriber.
    pub fn channels(&self) -> Vec<Arc<str>> {
        let channels = self.channels.read().expect("registry lock");
        channels.keys().cloned().collect()
    }

    /// Waits until a channel appeared or disappeared since the last call.
    pub async fn interest_changed(&self) {
        self.interest.notified().await
    }

    /// Number of subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        let channels = self.channels.read().expect("registry lock");
        channels.get(channel).map_or(0, |c| c.subscribers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn drain(outbox: &Outbox) -> Vec<Bytes> {
        let mut q = VecDeque::new();
        outbox.take(&mut q);
        q.into()
    }

    #[test]
    fn publish_reaches_only_the_channels_subscribers() {
        let stats = Arc::new(Stats::default());
        let reg = Registry::new(stats.clone());
        let (a, b) = (
            Arc::new(Outbox::new(1 << 20)),
            Arc::new(Outbox::new(1 << 20)),
        );
        assert!(reg.subscribe("x", 1, &a));
        assert!(!reg.subscribe("x", 1, &a));
        assert!(reg.subscribe("y", 2, &b));
        let p = reg.publish("x", "1");
        assert_eq!(p.deliveries, 1);
        assert_eq!(drain(&a).len(), 1);
        assert!(drain(&b).is_empty());
        assert_eq!(reg.publish("nobody", "1").deliveries, 0);
        assert_eq!(stats.snapshot().channels, 2);
        assert_eq!(stats.snapshot().subscriptions, 2);
    }

    #[test]
    fn the_last_unsubscribe_forgets_the_channel() {
        let stats = Arc::new(Stats::default());
        let reg = Registry::new(stats.clone());
        let a = Arc::new(Outbox::new(1 << 20));
        reg.subscribe("x", 1, &a);
        assert!(reg.unsubscribe("x", 1));
        assert!(!reg.unsubscribe("x", 1));
        assert_eq!(reg.subscriber_count("x"), 0);
        assert_eq!(stats.snapshot().channels, 0);
        assert_eq!(stats.snapshot().subscriptions, 0);
    }

    #[test]
    fn one_frame_is_shared_by_all_subscribers() {
        let reg = Registry::new(Arc::new(Stats::default()));
        let outs: Vec<_> = (0..3).map(|_| Arc::new(Outbox::new(1 << 20))).collect();
        for (i, o) in outs.iter().enumerate() {
            reg.subscribe("c", i as u64, o);
        }
        reg.publish("c", "\"hi\"");
        let frames: Vec<Bytes> = outs.iter().flat_map(|o| drain(o)).collect();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.as_ptr() == frames[0].as_ptr()));
    }
}
