//! Every open client connection, so that shutdown can reach them all.
//!
//! Why a table here rather than a cancellation future in each connection's task: tokio
//! allocates a task in 128-byte steps, and a `WaitForCancellationFuture` (an intrusive list
//! node and its token, 80 bytes) is what kept the connection's future out of the 256-byte cell
//! and in the 384-byte one: 128 bytes more for every idle client. An entry here costs about
//! 30 (16 bytes in a hash table kept at most 7/8 full, and shrunk after a mass disconnect).
//!
//! The lock is taken once when a client connects and once when it leaves, never on the path
//! of a message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::audience::ConnId;
use crate::outbox::Outbox;

/// The open connections' outboxes, by connection.
#[derive(Debug, Default)]
pub(crate) struct Live(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    outboxes: HashMap<ConnId, Arc<Outbox>>,
    /// Set by [`Live::shut_all`]: a connection that arrives later is shut as it is added.
    shutting: bool,
}

impl Live {
    /// Adds a connection; shuts its outbox at once if the broker is shutting down.
    pub(crate) fn insert(&self, id: ConnId, outbox: &Arc<Outbox>) {
        let mut table = self.0.lock().expect("live lock");
        if table.shutting {
            outbox.shut();
        }
        table.outboxes.insert(id, Arc::clone(outbox));
    }

    /// Forgets a connection that has ended.
    pub(crate) fn remove(&self, id: ConnId) {
        let mut table = self.0.lock().expect("live lock");
        table.outboxes.remove(&id);
        // After a mass disconnect, give the table's memory back (a table never shrinks by
        // itself). Amortised: it happens only after three quarters of the entries left.
        let outboxes = &mut table.outboxes;
        if outboxes.capacity() > 1024 && outboxes.len() * 4 < outboxes.capacity() {
            outboxes.shrink_to_fit();
        }
    }

    /// Shuts every connection's outbox: each connection's task wakes, sees it, and ends.
    pub(crate) fn shut_all(&self) {
        let mut table = self.0.lock().expect("live lock");
        table.shutting = true;
        for outbox in table.outboxes.values() {
            outbox.shut();
        }
    }

    /// How many connections are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().expect("live lock").outboxes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuts_every_connection_and_any_that_comes_later() {
        let live = Live::default();
        let (a, b, late) = (
            Arc::new(Outbox::new(10)),
            Arc::new(Outbox::new(10)),
            Arc::new(Outbox::new(10)),
        );
        live.insert(1, &a);
        live.insert(2, &b);
        live.remove(2);
        assert_eq!(live.len(), 1);
        live.shut_all();
        assert_eq!((a.is_shut(), b.is_shut()), (true, false));
        live.insert(3, &late);
        assert!(late.is_shut());
    }
}
