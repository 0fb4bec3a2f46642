//! Who is subscribed to what: the broker's one piece of shared state.
//!
//! A map from channel to its subscribers ([`Audience`]). Publishing looks up one channel and
//! walks only its own subscribers, so the cost of a publish is proportional to the channel's
//! audience, not to the number of channels or connections. What one read publishes is gathered
//! per channel and queued once per subscriber ([`Gather`]). A channel stores nothing but its
//! name and its audience, since a broker with a channel per client holds as many as it has
//! clients.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use parking_lot::{RwLock, RwLockReadGuard};
use tokio::sync::Notify;

use crate::audience::{Audience, Removal};
use crate::outbox::{Outbox, Push, Wakes};
use crate::protocol::encode;
use crate::stats::{self, Stats};

pub use crate::audience::ConnId;

/// Channels and their subscribers.
pub struct Registry {
    /// parking_lot's lock rather than std's: a connection with half a million subscriptions
    /// leaving takes the write lock once per channel, and std's lock, which never hands over,
    /// let that loop win it back each time while a SUBSCRIBE on another thread waited 0.6 s.
    /// parking_lot's is eventually fair (it hands the lock to a waiter about every 0.5 ms).
    channels: RwLock<HashMap<Arc<str>, Audience>>,
    stats: Arc<Stats>,
    /// Signalled when a channel gains its first subscriber or loses its last: what an
    /// upstream link subscribes to follows the set of channels here.
    interest: Notify,
    /// The channels that gained their first subscriber or lost their last since the upstream
    /// link last looked; `None` until a link asks ([`Registry::track_interest`]), so a broker
    /// without one records nothing. Bounded by the number of distinct channels: a channel is
    /// in it once however often it changed. Why: a link that re-read every channel on each
    /// change spent a core at a leaf holding 200,000 of them.
    changed: Mutex<Option<HashSet<Arc<str>>>>,
}

/// What a [`Gather`] delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// MESSAGE frames queued, counted per subscriber (one message to 100 subscribers is 100).
    pub deliveries: usize,
    /// Bytes queued, all subscribers together.
    pub bytes: usize,
}

impl Registry {
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            channels: RwLock::new(HashMap::new()),
            stats,
            interest: Notify::new(),
            changed: Mutex::new(None),
        }
    }

    /// Records that `channel`'s interest changed, for the link, and wakes it. Called with the
    /// write lock held, so that [`Registry::track_interest`]'s snapshot and this are ordered.
    fn interest_moved(&self, channel: &Arc<str>) {
        if let Some(changed) = self.changed.lock().expect("changed lock").as_mut() {
            changed.insert(Arc::clone(channel));
        }
        self.interest.notify_one();
    }

    /// Every channel with a subscriber, and from now on a record of the channels whose
    /// interest changes ([`Registry::interest_changes`]): what an upstream link subscribes to
    /// when it connects, then follows.
    pub fn track_interest(&self) -> Vec<Arc<str>> {
        let channels = self.channels.read();
        *self.changed.lock().expect("changed lock") = Some(HashSet::new());
        channels.keys().cloned().collect()
    }

    /// The channels whose interest changed since the last call (or [`track_interest`]), each
    /// with whether it has a subscriber now.
    ///
    /// [`track_interest`]: Registry::track_interest
    pub fn interest_changes(&self) -> Vec<(Arc<str>, bool)> {
        let changed = match self.changed.lock().expect("changed lock").as_mut() {
            Some(changed) => std::mem::take(changed),
            None => return Vec::new(),
        };
        let channels = self.channels.read();
        changed
            .into_iter()
            .map(|c| {
                let wanted = channels.contains_key(&c);
                (c, wanted)
            })
            .collect()
    }

    /// Adds a subscriber; returns `false` if it was already subscribed.
    ///
    /// Takes the write lock: a [`Gather`] open on this thread must be flushed first.
    pub fn subscribe(&self, channel: &str, id: ConnId, outbox: &Arc<Outbox>) -> bool {
        let mut channels = self.channels.write();
        let added = match channels.get_mut(channel) {
            Some(audience) => audience.insert(id, outbox),
            None => {
                stats::add(&self.stats.channels, 1);
                let name: Arc<str> = Arc::from(channel);
                self.interest_moved(&name);
                channels.insert(name, Audience::One(id, Arc::clone(outbox)));
                true
            }
        };
        if added {
            stats::add(&self.stats.subscriptions, 1);
        }
        added
    }

    /// Removes a subscriber; returns `false` if it was not subscribed. A channel with no
    /// subscribers left is forgotten (nothing is stored for it).
    ///
    /// Takes the write lock: a [`Gather`] open on this thread must be flushed first.
    pub fn unsubscribe(&self, channel: &str, id: ConnId) -> bool {
        let mut channels = self.channels.write();
        let Some(audience) = channels.get_mut(channel) else {
            return false;
        };
        let removed = audience.remove(id);
        if removed == Removal::NotThere {
            return false;
        }
        stats::sub(&self.stats.subscriptions, 1);
        if removed == Removal::Last {
            if let Some((name, _)) = channels.remove_entry(channel) {
                self.interest_moved(&name);
            }
            stats::sub(&self.stats.channels, 1);
            shrink_after_removal(&mut channels);
        }
        true
    }

    /// Starts gathering the publishes of one read (see [`Gather`]); none of them reaches
    /// `except`, so that a message that came up a link is never echoed back down it.
    pub fn gather(&self, except: Option<ConnId>) -> Gather<'_> {
        Gather {
            registry: self,
            except,
            channels: None,
            pending: Vec::new(),
            wakes: Wakes::default(),
            epoch: None,
            superseded: false,
        }
    }

    /// Publishes one message at once: encodes it and queues the same bytes for every
    /// subscriber of `channel`. A publish to a channel nobody listens on is dropped (protocol
    /// rule 7).
    pub fn publish(&self, channel: &str, raw_message: &str) -> Published {
        let mut gather = self.gather(None);
        gather.publish(channel, raw_message);
        gather.flush()
    }

    /// Waits until a channel appeared or disappeared since the last call.
    pub async fn interest_changed(&self) {
        self.interest.notified().await
    }

    /// Number of subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        let channels = self.channels.read();
        channels.get(channel).map_or(0, Audience::len)
    }
}

/// The publishes of one read from one connection, gathered into one buffer per channel and
/// queued for each subscriber once, when the read is done ([`Gather::flush`], or drop).
///
/// Why: a pipelining publisher's read holds hundreds of PUBLISH frames. Queued one by one,
/// each message costs every subscriber an outbox lock, a reference count and a frame in its
/// `writev`; gathered, each subscriber pays that once per read, whatever the read held. A
/// read that holds one publish (a publisher at a modest rate) costs what it did before.
///
/// The registry's read lock is held from the first publish to the flush, so that the
/// subscribers a message reaches are the channel's subscribers when it was published: a
/// SUBSCRIBE on another thread waits for the flush (one read's parsing, never a system call),
/// and so cannot receive a message published before it took effect (protocol rule 2).
/// Hence also: flush before this thread takes the write lock ([`Registry::subscribe`],
/// [`Registry::unsubscribe`]), or it deadlocks; flushing an empty gather costs nothing.
pub struct Gather<'r> {
    registry: &'r Registry,
    except: Option<ConnId>,
    channels: Option<RwLockReadGuard<'r, HashMap<Arc<str>, Audience>>>,
    /// Per channel published to, in order of first publish: nearly always one.
    pending: Vec<Pending>,
    /// The subscribers to write to or wake once the lock is released.
    wakes: Wakes,
    /// A link's read: its broker's epoch slot and this link's epoch. Each flush delivers
    /// under the slot's lock, and only while the link is its broker's newest
    /// (`crate::epochs`); a superseded link's publishes are discarded.
    epoch: Option<(Arc<crate::epochs::Slot>, u64)>,
    superseded: bool,
}

struct Pending {
    channel: Arc<str>,
    /// The MESSAGE frame up to the payload, encoded once per read.
    prefix: Bytes,
    /// The MESSAGE frames, one after the other, exactly as subscribers receive them.
    frames: BytesMut,
    messages: usize,
}

impl Gather<'_> {
    /// Adds a publish; a channel with no subscribers drops it (protocol rule 7).
    pub fn publish(&mut self, channel: &str, raw_message: &str) {
        let registry = self.registry;
        let channels = self
            .channels
            .get_or_insert_with(|| registry.channels.read());
        let Some(name) = channels.get_key_value(channel).map(|(name, _)| name) else {
            return;
        };
        let at = match self
            .pending
            .iter()
            .position(|p| Arc::ptr_eq(&p.channel, name))
        {
            Some(at) => at,
            None => {
                self.pending.push(Pending {
                    channel: Arc::clone(name),
                    prefix: encode::message_prefix(channel),
                    frames: BytesMut::new(),
                    messages: 0,
                });
                self.pending.len() - 1
            }
        };
        let pending = &mut self.pending[at];
        encode::message_into(&mut pending.frames, &pending.prefix, raw_message);
        pending.messages += 1;
    }

    /// From now on, publishes do not reach `except` (a connection that has just become a link).
    /// Flushes first: what was gathered keeps the exception it was gathered under.
    pub fn set_except(&mut self, except: Option<ConnId>) {
        self.flush();
        self.except = except;
    }

    /// The wake-ups this read has called for so far, for other pushes made during it (the
    /// upstream link's) to join; seen to at the flush.
    pub fn wakes(&mut self) -> &mut Wakes {
        &mut self.wakes
    }

    /// From now on, deliver only while link epoch `mine` is current in `slot` (a link's
    /// read: `crate::epochs`). Flushes first: what was gathered before is not a link's.
    pub(crate) fn guard(&mut self, slot: Arc<crate::epochs::Slot>, mine: u64) {
        self.flush();
        self.epoch = Some((slot, mine));
    }

    /// Whether a flush found the link superseded (and discarded what it had gathered).
    pub fn superseded(&self) -> bool {
        self.superseded
    }

    /// Queues everything gathered for the subscribers, counts it, releases the registry, and
    /// then writes to or wakes the subscribers it reached.
    pub fn flush(&mut self) -> Published {
        let mut out = Published::default();
        // Held until every push is queued: an older link's deliveries all precede a newer
        // link's admission, which precedes any of the newer link's (`crate::epochs`).
        let current = self.epoch.as_ref().map(|(slot, mine)| slot.lock(*mine));
        if current.as_ref().is_some_and(|c| !c.is_current()) {
            let discarded: usize = self.pending.drain(..).map(|p| p.messages).sum();
            stats::add(&self.registry.stats.link_superseded, discarded as u64);
            self.superseded = true;
        }
        if let Some(channels) = self.channels.take() {
            for pending in self.pending.drain(..) {
                let audience = channels
                    .get(&pending.channel)
                    .expect("a channel cannot go while the read lock is held");
                let chunk = exact(pending.frames);
                for (id, outbox) in audience.iter() {
                    if Some(id) == self.except {
                        continue;
                    }
                    // An overflowing subscriber is cut off by its own connection task; the
                    // loop goes on at full speed for everyone else.
                    if self.wakes.push(outbox, chunk.clone()) == Push::Queued {
                        out.deliveries += pending.messages;
                        out.bytes += chunk.len();
                    }
                }
            }
        }
        drop(current);
        // No lock held from here on: writing through makes system calls.
        self.wakes.finish();
        if out.deliveries > 0 {
            let stats = &self.registry.stats;
            stats::add(&stats.messages_out, out.deliveries as u64);
            stats::add(&stats.bytes_out, out.bytes as u64);
        }
        out
    }
}

impl Drop for Gather<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `frames` frozen, copied into an exactly sized buffer when growing it left more than a
/// quarter unused: outboxes count a chunk's length against the slow-consumer limit, so what
/// they hold must not be much larger than what they count.
fn exact(frames: BytesMut) -> Bytes {
    if frames.capacity() - frames.len() > frames.len() / 4 {
        Bytes::copy_from_slice(&frames)
    } else {
        frames.freeze()
    }
}

/// Gives a map's memory back once most of its entries have gone (a table never shrinks by
/// itself: 500,000 channels, once gone, still held 36 MB). Amortised, as it happens only after
/// three quarters of the entries left; and only once at most 8,192 are left, because the
/// rehash is done under the registry's write lock and must not hold up publishes (measured
/// with 65,536 left: a 30 ms pause for every other client). What stays held is the table of a
/// registry of that size, about 0.6 MB.
fn shrink_after_removal<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    const MOST_REHASHED: usize = 1 << 13;
    if map.capacity() > 1024 && map.len() * 4 < map.capacity() && map.len() <= MOST_REHASHED {
        map.shrink_to_fit();
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
    fn interest_changes_are_recorded_once_tracked_and_only_the_changes() {
        let reg = Registry::new(Arc::new(Stats::default()));
        let outbox = Arc::new(Outbox::new(1 << 20));
        reg.subscribe("before", 1, &outbox);
        // Nothing is recorded until a link asks.
        assert_eq!(reg.interest_changes(), Vec::new());
        assert_eq!(reg.track_interest(), vec![Arc::<str>::from("before")]);
        reg.subscribe("a", 1, &outbox);
        reg.subscribe("a", 2, &outbox); // a second subscriber is no change of interest
        reg.subscribe("b", 1, &outbox);
        reg.unsubscribe("b", 1);
        reg.unsubscribe("before", 1);
        let mut changes = reg.interest_changes();
        changes.sort();
        assert_eq!(
            changes,
            vec![
                ("a".into(), true),
                ("b".into(), false),
                ("before".into(), false)
            ]
        );
        assert_eq!(reg.interest_changes(), Vec::new());
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
    fn a_reads_publishes_reach_each_subscriber_as_one_chunk_in_order() {
        let stats = Arc::new(Stats::default());
        let reg = Registry::new(stats.clone());
        let outs: Vec<_> = (0..3).map(|_| Arc::new(Outbox::new(1 << 20))).collect();
        for (i, o) in outs.iter().enumerate() {
            reg.subscribe("c", i as u64, o);
        }
        reg.subscribe("d", 0, &outs[0]);
        let mut read = reg.gather(Some(2));
        read.publish("c", "1");
        read.publish("d", "2");
        read.publish("nobody", "0");
        read.publish("c", "3");
        let p = read.flush();
        assert_eq!(
            p.deliveries,
            2 * 2 + 1,
            "c twice to 0 and 1 (not 2), d once to 0"
        );
        let c = b"{\"type\":\"MESSAGE\",\"channel\":\"c\",\"message\":1}\n\
                  {\"type\":\"MESSAGE\",\"channel\":\"c\",\"message\":3}\n";
        let d = b"{\"type\":\"MESSAGE\",\"channel\":\"d\",\"message\":2}\n";
        assert_eq!(drain(&outs[0]), [&c[..], &d[..]]);
        assert_eq!(drain(&outs[1]), [&c[..]]);
        assert!(drain(&outs[2]).is_empty(), "the exception gets nothing");
        assert_eq!(p.bytes, 2 * c.len() + d.len());
        assert_eq!(stats.snapshot().messages_out, 5);
        assert_eq!(stats.snapshot().bytes_out, p.bytes as u64);
    }

    #[test]
    fn a_subscribe_made_while_a_read_is_gathered_gets_none_of_it() {
        let reg = Arc::new(Registry::new(Arc::new(Stats::default())));
        let (a, b) = (
            Arc::new(Outbox::new(1 << 20)),
            Arc::new(Outbox::new(1 << 20)),
        );
        reg.subscribe("c", 1, &a);
        let mut read = reg.gather(None);
        read.publish("c", "1");
        // Another connection subscribes on another thread while the read is gathered: it
        // waits for the flush, so the message published before it does not reach it.
        let late = std::thread::spawn({
            let (reg, b) = (reg.clone(), b.clone());
            move || reg.subscribe("c", 2, &b)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        read.flush();
        assert!(late.join().unwrap());
        assert_eq!(drain(&a).len(), 1);
        assert!(drain(&b).is_empty());
        assert_eq!(reg.publish("c", "2").deliveries, 2);
    }

    #[test]
    fn a_read_of_one_publish_allocates_exactly_its_frame() {
        let mut frames = BytesMut::new();
        encode::message_into(&mut frames, b"{\"p\":", "1");
        assert_eq!(frames.capacity(), frames.len());
        assert_eq!(exact(frames).len(), 8);
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
