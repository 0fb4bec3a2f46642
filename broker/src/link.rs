//! The link to an upstream broker (hub topology): a client of the upstream with an outer
//! reconnect loop.
//!
//! The link announces itself with `LINK`, then keeps the upstream subscribed to exactly the
//! channels that have a subscriber here (local clients or links from brokers below), forwards
//! what is published here, and delivers what comes down to the subscribers here. It never
//! sends back up what came down, and the upstream never echoes back down what came up (it
//! knows the connection is a link), so every subscriber in the tree gets each message once.
//!
//! Nothing is stored: what is published while the link is down is not forwarded, and after a
//! reconnect the link re-subscribes everything of interest and goes on.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::frame::LineReader;
use crate::outbox::{Outbox, Taken};
use crate::protocol::encode::{self, Ack};
use crate::protocol::event::{parse_event, parse_link_path, parse_message, Event};
use crate::protocol::Quoted;
use crate::shared::{random_u64, Shared};
use crate::stats;
use crate::upstream::Upstream;
use crate::write::write_frames_seeing;

/// First and longest pause between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Longest pause before trying again a link that closed a loop.
const LOOP_PAUSE: Duration = Duration::from_secs(5);

/// Keeps the link up until `shutdown`.
pub(crate) async fn run(shared: Arc<Shared>, upstream: Arc<Upstream>, shutdown: CancellationToken) {
    let mut backoff = BACKOFF.0;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = TcpStream::connect(upstream.addr) => r,
        };
        match attempt {
            Ok(stream) => {
                backoff = BACKOFF.0;
                let _ = stream.set_nodelay(true);
                let outbox = Arc::new(Outbox::new(shared.config.max_pending));
                *upstream.current.lock().expect("upstream lock") = Some(outbox.clone());
                upstream.connected.store(true, Relaxed);
                upstream.connects.fetch_add(1, Relaxed);
                info!(upstream = %upstream.addr, "link to upstream up");
                let why = serve(&shared, &upstream, stream, &outbox, &shutdown).await;
                upstream.connected.store(false, Relaxed);
                *upstream.current.lock().expect("upstream lock") = None;
                outbox.close();
                upstream.lost_in_flight();
                upstream.path.lock().expect("upstream lock").clear();
                shared.announce_path();
                if shutdown.is_cancelled() {
                    return;
                }
                if why.get_ref().is_some_and(|e| e.is::<Loop>()) {
                    // Not to be retried at once: the topology has to change first. And after
                    // a random pause: two brokers linked to each other at the same moment both
                    // drop, and retrying in step they would drop again for ever; apart, the
                    // first back stands and the other is refused.
                    shared.log_loop(&format!("link to upstream dropped: {why}"), "");
                    backoff = LOOP_PAUSE.mul_f64(0.2 + 0.8 * (random_u64() % 1000) as f64 / 1000.0);
                } else {
                    warn!(upstream = %upstream.addr, reason = %why, "link to upstream down; reconnecting");
                }
            }
            Err(e) => {
                warn!(upstream = %upstream.addr, error = %e, retry_in = ?backoff, "cannot reach upstream");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// One connection's life: announce, subscribe, relay both ways. Returns why it ended.
async fn serve(
    shared: &Shared,
    upstream: &Upstream,
    stream: TcpStream,
    outbox: &Arc<Outbox>,
    shutdown: &CancellationToken,
) -> io::Error {
    let mut link = Link {
        stream,
        writing: VecDeque::new(),
        subscribed: HashSet::new(),
        lines: LineReader::new(shared.config.max_frame * 2 + 4096),
    };
    let _ = outbox.push(encode::link_command(&shared.name, &shared.id));
    link.subscribe_all(shared, outbox);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let want_write = !link.writing.is_empty();
        tokio::select! {
            _ = shutdown.cancelled() => return io::ErrorKind::Interrupted.into(),
            _ = shared.registry.interest_changed() => link.sync_interest(shared, outbox),
            _ = outbox.ready(), if !want_write => {
                if outbox.take(&mut link.writing) == Taken::Overflowed {
                    return io::Error::other("upstream fell behind by more than --max-pending");
                }
                if let Err(e) = link.flush(upstream, outbox) {
                    return e;
                }
            }
            r = link.stream.writable(), if want_write => {
                if let Err(e) = r.and_then(|_| link.flush(upstream, outbox)) {
                    return e;
                }
            }
            r = link.stream.readable() => {
                if let Err(e) = r {
                    return e;
                }
                match link.stream.try_read(&mut scratch) {
                    Ok(0) => return io::ErrorKind::UnexpectedEof.into(),
                    Ok(n) => {
                        // Gathered like a client's read, and flushed when dropped.
                        let mut read = shared.registry.gather(None);
                        let mut fault = None;
                        let fed = link.lines.feed(&scratch[..n], |line| {
                            if let Some((channel, message)) = parse_message(line) {
                                if shared.pending.budget.spent() {
                                    // Refused like a client's PUBLISH; nobody to tell.
                                    stats::add(&shared.stats.budget_refusals, 1);
                                    return;
                                }
                                upstream.received.fetch_add(1, Relaxed);
                                // Delivered here only: what came down never goes back up.
                                read.publish(&channel, message.get());
                            } else if fault.is_none() {
                                fault = other_frame(shared, upstream, line);
                            }
                        });
                        drop(read);
                        if let Err(e) = fed {
                            return io::Error::other(e);
                        }
                        if let Some(e) = fault {
                            return e;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return e,
                }
            }
        }
    }
}

/// The link closes a loop: the brokers above this one include itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Loop(String);

/// A frame from the upstream other than a MESSAGE: a LINK frame gives the upstream's path,
/// kept and passed down (or, holding this broker's id, a loop); an ERROR refusing the LINK is a
/// loop the upstream saw first. Returns why to drop the link, if so.
fn other_frame(shared: &Shared, upstream: &Upstream, line: &[u8]) -> Option<io::Error> {
    if let Some(path) = parse_link_path(line) {
        if path.contains(&shared.id) {
            let why = "the brokers above include this one, so the link closes a loop";
            return Some(io::Error::other(Loop(why.into())));
        }
        *upstream.path.lock().expect("upstream lock") = path;
        shared.announce_path();
        return None;
    }
    match parse_event(line) {
        Ok(Event::Error { message }) if message.starts_with("LINK: refused") => {
            Some(io::Error::other(Loop(message)))
        }
        Ok(Event::Error { message }) => {
            warn!(upstream = %upstream.addr, error = %Quoted(&message), "the upstream refused a frame");
            None
        }
        _ => None,
    }
}

struct Link {
    stream: TcpStream,
    writing: VecDeque<Bytes>,
    /// Channels the upstream has been asked to send here.
    subscribed: HashSet<Arc<str>>,
    lines: LineReader,
}

impl Link {
    /// On connecting: subscribes upstream to every channel with a subscriber here, and starts
    /// following the changes.
    fn subscribe_all(&mut self, shared: &Shared, outbox: &Arc<Outbox>) {
        for channel in shared.registry.track_interest() {
            self.follow(channel, true, outbox);
        }
    }

    /// Subscribes upstream to channels that gained their first subscriber here since the last
    /// look and unsubscribes from those that lost their last: the changes only, not every
    /// channel again.
    fn sync_interest(&mut self, shared: &Shared, outbox: &Arc<Outbox>) {
        for (channel, wanted) in shared.registry.interest_changes() {
            self.follow(channel, wanted, outbox);
        }
    }

    /// Subscribes or unsubscribes upstream, if that changes anything.
    fn follow(&mut self, channel: Arc<str>, wanted: bool, outbox: &Arc<Outbox>) {
        let ack = if wanted {
            if self.subscribed.contains(&channel) {
                return;
            }
            Ack::Subscribe
        } else if self.subscribed.remove(&channel) {
            Ack::Unsubscribe
        } else {
            return;
        };
        let _ = outbox.push(Bytes::from(encode::subscribe_command(ack, &channel)));
        if wanted {
            self.subscribed.insert(channel);
        }
    }

    /// Writes what the socket takes; the PUBLISHes written whole are counted as forwarded.
    fn flush(&mut self, upstream: &Upstream, outbox: &Outbox) -> io::Result<()> {
        let mut publishes = 0;
        let written = write_frames_seeing(&self.stream, &mut self.writing, |frame| {
            publishes += u64::from(frame.starts_with(encode::PUBLISH_PREFIX));
        });
        // Counted even when the write then failed: those frames went out before it did.
        upstream.sent(publishes);
        outbox.written(written?, !self.writing.is_empty());
        Ok(())
    }
}
