//! A connection's protocol state, apart from its socket: the commands it sends, what they do
//! to the registry, and what is undone when it goes.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use crate::auth::Access;
use crate::outbox::Outbox;
use crate::protocol::encode::{self, Ack};
use crate::protocol::{limits, parse_command, Command, ProtocolError, Quoted, Secret};
use crate::registry::{ConnId, Gather};
use crate::shared::Shared;
use crate::stats;
use crate::subscriptions::Subscriptions;

/// The connection's protocol state, apart from its socket.
pub(crate) struct Session {
    pub(crate) id: ConnId,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) shared: Arc<Shared>,
    /// Channels this connection is on. Its length is the `count` in acknowledgements.
    pub(crate) subscriptions: Subscriptions,
    /// The connection is a link from a broker below (it sent LINK).
    pub(crate) link: bool,
    /// What it may do: everything without a users file, else as its user may once it has
    /// authenticated (`crate::auth`). Four bytes, beside `link` in what would be padding.
    pub(crate) access: Access,
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
        if self.access == Access::CHECKING {
            // The AUTH in flight may have been answered since: take its outcome.
            if let Some(auth) = &self.shared.auth {
                self.access = auth.settle(self.id);
            }
        }
        if let Ok(Command::Publish { channel, message }) = &command {
            // Without a users file permissions cost this comparison and the one above.
            if !budget.spent() && (self.access == Access::OPEN || self.may_publish(channel)) {
                shared.publish(read, channel, message.get());
                return;
            }
        }
        read.flush();
        if let Ok(c) = &command {
            if let Err(e) = self.permit(c) {
                stats::add(&self.shared.stats.permission_denials, 1);
                self.refuse(e, read);
                return;
            }
        }
        let shared = &self.shared;
        let budget = &shared.pending.budget;
        match command {
            Ok(Command::Auth { user, password }) => self.auth(&user, password, read),
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
            Ok(Command::Link { name, id, epoch }) => {
                if let Some(id) = id
                    .as_ref()
                    .filter(|id| shared.path().iter().any(|p| p == *id))
                {
                    // The broker asking is this one or one above it: linked, it would close
                    // a loop and every message would go round it for ever.
                    shared.log_loop("LINK refused: it would close a loop", &name);
                    self.refuse(ProtocolError::LinkLoop(Quoted(id).to_string()), read);
                    return;
                }
                if let (Some(id), Some(epoch), false) = (&id, epoch, self.link) {
                    let current = shared.link_epochs.admit(id, epoch, self.id);
                    if let Some((slot, mine)) = shared.link_epochs.slot(self.id) {
                        // The rest of this read is the link's already.
                        read.guard(slot, mine);
                    }
                    if !current {
                        // Its reads are discarded from here on, and it is closed at the end
                        // of this one (`crate::epochs`).
                        tracing::info!(conn = self.id, name = %Quoted(&name), epoch,
                            "link from a broker below that has linked again since: superseded");
                    }
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

    /// Whether this connection's user may publish to `channel` (not called without a users
    /// file).
    fn may_publish(&self, channel: &str) -> bool {
        match (self.access.user(), &self.shared.auth) {
            (Some(n), Some(auth)) => auth.user(n).publish.allows(channel),
            _ => false,
        }
    }

    /// Refuses `command` when the connection's user may not send it: anything but PING and
    /// AUTH before an AUTH succeeded, a channel outside the user's patterns, LINK and STATS
    /// without their permissions. UNSUBSCRIBE is always allowed once authenticated.
    fn permit(&self, command: &Command<'_>) -> Result<(), ProtocolError> {
        let Some(auth) = self.shared.auth.as_deref() else {
            return Ok(());
        };
        let verb = match command {
            Command::Ping | Command::Auth { .. } => return Ok(()),
            Command::Subscribe { .. } => "SUBSCRIBE",
            Command::Unsubscribe { .. } => "UNSUBSCRIBE",
            Command::Publish { .. } => "PUBLISH",
            Command::Stats => "STATS",
            Command::Link { .. } => "LINK",
        };
        let Some(user) = self.access.user().map(|n| auth.user(n)) else {
            return Err(ProtocolError::NotAuthenticated(verb));
        };
        let name = || Quoted(&user.name).to_string();
        match command {
            Command::Subscribe { channel } if !user.subscribe.allows(channel) => Err(
                ProtocolError::MayNotSubscribe(name(), Quoted(channel).to_string()),
            ),
            Command::Publish { channel, .. } if !user.publish.allows(channel) => Err(
                ProtocolError::MayNotPublish(name(), Quoted(channel).to_string()),
            ),
            Command::Link { .. } if !user.link => Err(ProtocolError::MayNotLink(name())),
            Command::Stats if !user.stats => Err(ProtocolError::MayNotStats(name())),
            _ => Ok(()),
        }
    }

    /// AUTH: starts the check (`crate::auth::Auth::begin`), which answers by itself; or
    /// refuses at once when there is nothing to check.
    fn auth(&mut self, user: &str, password: Secret<'_>, read: &mut Gather<'_>) {
        let Some(auth) = self.shared.auth.clone() else {
            return self.refuse(ProtocolError::AuthNotConfigured, read);
        };
        if let Some(n) = self.access.user() {
            let name = Quoted(&auth.user(n).name).to_string();
            return self.refuse(ProtocolError::AuthAgain(name), read);
        }
        if self.access == Access::CHECKING {
            return self.refuse(ProtocolError::AuthChecking, read);
        }
        // Asked here, once per AUTH, rather than kept for every connection. A TLS client's
        // socket is not in its outbox: its failures are not slowed by address (yet).
        let peer = self.outbox.peer_ip();
        let (outbox, stats) = (Arc::clone(&self.outbox), Arc::clone(&self.shared.stats));
        auth.begin(self.id, peer, user, password.0.into_owned(), outbox, stats);
        self.access = Access::CHECKING;
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
        if let (Access::CHECKING, Some(auth)) = (self.access, &self.shared.auth) {
            auth.forget(self.id);
        }
        let subscriptions = std::mem::take(&mut self.subscriptions);
        let shared = &self.shared;
        shared
            .reaper
            .remove(&shared.registry, self.id, subscriptions);
        stats::sub(&self.shared.stats.connections_current, 1);
        if self.link {
            self.shared.link_epochs.forget(self.id);
            self.shared
                .links
                .lock()
                .expect("links lock")
                .remove(&self.id);
            stats::sub(&self.shared.stats.links, 1);
        }
    }
}
