//! Which link from a broker below is its newest, so that an older one still open delivers
//! nothing more (LINK's `epoch`).
//!
//! A hub frozen (`docker pause`, a stopped VM) while its leaves give up on their links and
//! make new ones still has its kernel accept and acknowledge all of them: thawed, it reads the
//! old links and the new one at once, on several threads, and would deliver a leaf's older
//! publishes after its newer ones, breaking order per publisher. So each LINK carries an
//! epoch that grows with each connection its broker makes; the newest one admitted is the
//! broker's current link, and a link's read is delivered only under the broker's lock and
//! only while it is current. An older link's deliveries therefore all precede the newer
//! link's admission, which precedes every delivery of the newer link; what an older link
//! brings after that is discarded (counted in `link_superseded`) and the connection closed.
//! Its broker below had given that connection up already and counted what it sent on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::audience::ConnId;

/// One broker below: the epoch of its newest link. Locked for a link's read's delivery.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    current: Mutex<u64>,
}

/// The links with an epoch, by the id of the broker they come from and by connection. A few
/// entries: one per broker below, one per link.
#[derive(Debug, Default)]
pub(crate) struct LinkEpochs {
    by_broker: Mutex<HashMap<String, Arc<Slot>>>,
    by_conn: Mutex<HashMap<ConnId, (Arc<Slot>, u64)>>,
}

/// A link's read may be delivered while this is held and [`Current::is_current`].
pub(crate) struct Current<'a> {
    guard: MutexGuard<'a, u64>,
    mine: u64,
}

impl Current<'_> {
    pub(crate) fn is_current(&self) -> bool {
        *self.guard == self.mine
    }
}

impl LinkEpochs {
    /// A LINK from broker `id` with `epoch` on connection `conn`, recorded either way: true
    /// if it is from now on the broker's current link, false if a newer one is in already
    /// (its reads are then discarded, and it is closed, like any superseded link).
    pub(crate) fn admit(&self, id: &str, epoch: u64, conn: ConnId) -> bool {
        let slot = {
            let mut by_broker = self.by_broker.lock().expect("epochs lock");
            Arc::clone(by_broker.entry(id.to_string()).or_default())
        };
        let current = {
            let mut current = slot.current.lock().expect("epoch lock");
            *current = (*current).max(epoch);
            *current == epoch
        };
        self.by_conn
            .lock()
            .expect("epochs lock")
            .insert(conn, (slot, epoch));
        current
    }

    /// The slot of `conn`, if it is a link admitted with an epoch (the one lookup per read of
    /// a link; plain clients never get here).
    pub(crate) fn slot(&self, conn: ConnId) -> Option<(Arc<Slot>, u64)> {
        self.by_conn
            .lock()
            .expect("epochs lock")
            .get(&conn)
            .cloned()
    }

    /// The connection closed; a broker with no link left is forgotten.
    pub(crate) fn forget(&self, conn: ConnId) {
        let Some((slot, _)) = self.by_conn.lock().expect("epochs lock").remove(&conn) else {
            return;
        };
        let mut by_broker = self.by_broker.lock().expect("epochs lock");
        // Held by the map and by `slot` here, and by no link any more.
        if Arc::strong_count(&slot) == 2 {
            by_broker.retain(|_, s| !Arc::ptr_eq(s, &slot));
        }
    }
}

impl Slot {
    pub(crate) fn lock(&self, mine: u64) -> Current<'_> {
        Current {
            guard: self.current.lock().expect("epoch lock"),
            mine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_link_is_current_and_an_older_one_is_refused_or_superseded() {
        let e = LinkEpochs::default();
        assert!(e.admit("leaf", 1, 10));
        let (old, mine) = e.slot(10).unwrap();
        assert!(old.lock(mine).is_current());
        assert!(e.admit("leaf", 3, 11), "a newer link supersedes");
        assert!(
            !old.lock(mine).is_current(),
            "the older one is no longer current"
        );
        assert!(
            !e.admit("leaf", 2, 12),
            "one older than the current is not current"
        );
        let (late, mine) = e.slot(12).unwrap();
        assert!(!late.lock(mine).is_current(), "so its reads are discarded");
        assert!(
            e.admit("other", 1, 13),
            "another broker's links are its own"
        );
        let (new, mine) = e.slot(11).unwrap();
        assert!(new.lock(mine).is_current());
    }

    #[test]
    fn a_broker_whose_links_all_closed_is_forgotten() {
        let e = LinkEpochs::default();
        assert!(e.admit("leaf", 5, 1));
        assert!(e.admit("leaf", 6, 2));
        e.forget(1);
        assert_eq!(e.by_broker.lock().unwrap().len(), 1, "link 2 still open");
        e.forget(2);
        assert!(e.by_broker.lock().unwrap().is_empty());
        // A restarted broker below (a new process) starts its epochs again: admitted.
        assert!(e.admit("leaf", 1, 3));
    }
}
