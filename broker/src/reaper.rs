//! Undoes a departed connection's many subscriptions on one thread of its own, off the
//! runtime's workers.
//!
//! A link may hold every channel of its leaf, and an ordinary client up to
//! `--max-subscriptions`. Removed on the worker thread that ran the connection, half a million
//! of them kept that thread for 0.6 s, and with it the tasks tokio had queued there (its LIFO
//! slot cannot be stolen by the other worker): the accept loop and other clients waited. Handed
//! to tokio's blocking pool instead, each departure took a thread of its own, so a thousand such
//! clients leaving at once started hundreds of threads, each with its stack. Here one thread,
//! started the first time it is needed, takes them in turn, one registry write lock per channel,
//! which the registry's (fair) lock hands to other waiters in between.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock, Weak};

use crate::registry::{ConnId, Registry};
use crate::subscriptions::Subscriptions;

/// Departures waiting for the reaper thread.
///
/// Overflow policy: when this many are waiting, the next departure's subscriptions are removed
/// where it happens, on the caller's thread, as they were before this queue existed. Reaching
/// it needs over a thousand clients of more than [`REMOVED_IN_PLACE`] subscriptions each to
/// leave faster than one thread removes about a million subscriptions a second, which
/// subscribing them at all makes unlikely; the queue holds only what those sessions already
/// held, so it never makes the broker larger than its clients did.
const QUEUE: usize = 1024;

/// A departure with at most this many subscriptions is undone in place: quicker than a
/// hand-over, and too short to hold anyone up.
pub(crate) const REMOVED_IN_PLACE: usize = 1024;

type Departure = (ConnId, Subscriptions);

/// The reaper of one broker: a queue to a thread made on first use.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    queue: OnceLock<SyncSender<Departure>>,
}

impl Reaper {
    /// Removes connection `id`'s `subscriptions` from `registry`: in place when they are few
    /// or the reaper is full, otherwise on the reaper thread.
    pub(crate) fn remove(&self, registry: &Arc<Registry>, id: ConnId, subs: Subscriptions) {
        if subs.len() <= REMOVED_IN_PLACE {
            return remove(registry, id, subs);
        }
        let queue = self.queue.get_or_init(|| start(Arc::downgrade(registry)));
        match queue.try_send((id, subs)) {
            Ok(()) => {}
            Err(TrySendError::Full((id, subs)) | TrySendError::Disconnected((id, subs))) => {
                remove(registry, id, subs)
            }
        }
    }
}

fn remove(registry: &Registry, id: ConnId, mut subscriptions: Subscriptions) {
    for channel in subscriptions.drain() {
        registry.unsubscribe(&channel, id);
    }
}

/// Starts the reaper thread. It holds the registry weakly, and the broker's end drops the
/// queue's sender, which ends the thread.
fn start(registry: Weak<Registry>) -> SyncSender<Departure> {
    let (tx, rx) = sync_channel::<Departure>(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("hubbub-reaper".into())
        .spawn(move || {
            while let Ok((id, subscriptions)) = rx.recv() {
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                remove(&registry, id, subscriptions);
            }
        });
    // Without a thread the receiver is gone, every send is refused, and departures are undone
    // in place: slower for the others, never lost.
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the reaper thread; subscriptions are removed in place");
    }
    tx
}
