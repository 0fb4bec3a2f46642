//! A connection's protocol state, apart from its socket: the commands it sends, what they do
//! to the registry, and what is undone when it goes.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use crate::outbox::Outbox;
use crate::protocol::encode::{self, Ack};
use crate::protocol::{limits, parse_command, Command, ProtocolError, Quoted};
use crate::registry::{ConnId, Gather};
use crate::shared::Shared;
use crate::stats;
use crate::subscriptions::Subscriptions;

/// Subscriptions past which a connection's are removed on a blocking thread when it goes, not
/// on the worker thread that ran it (see [`Session`]'s `Drop`).
const REMOVED_IN_PLACE: usize = 1024;

/// The connection's protocol state, apart from its socket.
pub(crate) struct Session {
    pub(crate) id: ConnId,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) shared: Arc<Shared>,
    /// Channels this connection is on. Its length is the `count` in acknowledgements.
    pub(crate) subscriptions: Subscriptions,
    /// The connection is a link from a broker below (it sent LINK).
    pub(crate) link: bool,
}

impl Session {
    /// Queues a reply; written through, or this task woken, when the read's wake-ups are.
    fn reply(&self, frame: Bytes, read: &mut Gather<'_>) {
        // Overflow is noticed by the connection's own loop, like any other slow consumer.
        let _ = read.wakes().push(&self.outbox, frame);
    }

    /// Handles one frame. A PUBLISH is gathered into `read`; anything else first flushes it,
    /// so that this client sees replies and its own published messages in the order it sent
    /// the commands, and so that the registry's write lock is free to take.
    pub(crate) fn handle(&mut self, line: &[u8], read: &mut Gather<'_>) {
        let shared = &self.shared;
        let command = parse_command(line).and_then(|c| {
            limits::check(&c, &shared.config.limits())?;
            Ok(c)
        });
        let budget = &shared.pending.budget;
        if let Ok(Command::Publish { channel, message }) = &command {
            if !budget.spent() {
                shared.publish(read, channel, message.get());
                return;
            }
        }
        read.flush();
        match command {
            Ok(Command::Publish { .. }) => {
                stats::add(&shared.stats.budget_refusals, 1);
                self.refuse(ProtocolError::BudgetSpent(budget.limit()), read);
            }
            Ok(Command::Subscribe { channel })
                if !self.link
                    && self.subscriptions.len() >= shared.config.max_subscriptions
                    && !self.subscriptions.contains(&channel) =>
            {
                self.refuse(
                    ProtocolError::TooManySubscriptions(shared.config.max_subscriptions),
                    read,
                );
            }
            Ok(Command::Subscribe { channel }) => {
                let added = self.subscriptions.insert(&channel);
                // The ack is queued before the subscription takes effect, so it is written
                // before any MESSAGE on the channel (protocol rule 2).
                self.reply(
                    encode::ack(Ack::Subscribe, &channel, self.subscriptions.len()),
                    read,
                );
                if added {
                    shared.registry.subscribe(&channel, self.id, &self.outbox);
                }
            }
            Ok(Command::Unsubscribe { channel }) => {
                if self.subscriptions.remove(&channel) {
                    shared.registry.unsubscribe(&channel, self.id);
                }
                self.reply(
                    encode::ack(Ack::Unsubscribe, &channel, self.subscriptions.len()),
                    read,
                );
            }
            Ok(Command::Ping) => self.reply(encode::pong(), read),
            Ok(Command::Stats) => self.reply(encode::stats(&shared.snapshot()), read),
            Ok(Command::Link { name, id }) => {
                if let Some(id) = id.filter(|id| shared.path().iter().any(|p| p == id)) {
                    // The broker asking is this one or one above it: linked, it would close
                    // a loop and every message would go round it for ever.
                    shared.log_loop("LINK refused: it would close a loop", &name);
                    self.refuse(ProtocolError::LinkLoop(Quoted(&id).to_string()), read);
                    return;
                }
                if !self.link {
                    self.link = true;
                    read.set_except(Some(self.id));
                    stats::add(&shared.stats.links, 1);
                    let outbox = Arc::clone(&self.outbox);
                    shared
                        .links
                        .lock()
                        .expect("links lock")
                        .insert(self.id, outbox);
                    tracing::info!(conn = self.id, name = %Quoted(&name), "link from a broker below");
                }
                self.reply(encode::link_reply(&shared.name, &shared.path()), read);
            }
            Err(e) => self.refuse(e, read),
        }
    }

    /// Answers a refused command with its ERROR, and counts it.
    fn refuse(&self, e: ProtocolError, read: &mut Gather<'_>) {
        stats::add(&self.shared.stats.protocol_errors, 1);
        debug!(conn = self.id, error = %e, "protocol error");
        self.reply(encode::error(&e.to_string()), read);
    }
}

impl Drop for Session {
    /// Subscriptions belong to the connection (protocol rule 1): they go with it, however the
    /// task ends.
    fn drop(&mut self) {
        self.outbox.close();
        self.shared.live.remove(self.id);
        let (id, shared) = (self.id, Arc::clone(&self.shared));
        let mut subscriptions = std::mem::take(&mut self.subscriptions);
        let many = subscriptions.len() > REMOVED_IN_PLACE;
        let mut remove = move || {
            for channel in subscriptions.drain() {
                shared.registry.unsubscribe(&channel, id);
            }
        };
        // A link may hold every channel of its leaf. Removed here, half a million of them
        // kept this worker thread for 0.6 s, and with it the tasks tokio had queued on it
        // (its LIFO slot cannot be stolen by the other worker): the accept loop and other
        // clients waited. On a blocking thread the channels go one write lock at a time,
        // which the registry's lock hands to other waiters, and the workers go on.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if many => {
                drop(runtime.spawn_blocking(remove));
            }
            _ => remove(),
        }
        stats::sub(&self.shared.stats.connections_current, 1);
        if self.link {
            self.shared
                .links
                .lock()
                .expect("links lock")
                .remove(&self.id);
            stats::sub(&self.shared.stats.links, 1);
        }
    }
}
