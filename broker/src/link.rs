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
//!
//! With `--upstream-user`, the link first sends AUTH and waits for its reply before it sends
//! LINK, subscribes or forwards anything (the upstream refuses any other command until then).
//! An upstream that refuses it (a wrong password, no link permission, or a users file where
//! this broker has no user) is logged and retried after `REFUSED_PAUSE`, doubling: a
//! misconfigured leaf knocks a few times a minute, never storms the hub.
//!
//! The upstream is named as given (`--upstream hub:4243`) and looked up at each attempt. A link
//! that hears nothing from the upstream for `--upstream-timeout` (a PING goes up after a third
//! of it in silence, and its PONG is enough) is dropped and made again, like one that closed:
//! across a network, a hub that is cut off or frozen sends no FIN, and without this the link
//! would wait for the kernel to give up on its unacknowledged bytes, a quarter of an hour.
//!
//! With `--upstream-tls-ca` the link is TLS: the handshake runs after each connect, and the
//! link's own task encrypts and decrypts on the same loop (`crate::transport::Socket`).

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
use crate::silence::{Heard, Quiet};
use crate::stats;
use crate::tls::LinkTls;
use crate::transport::{Socket, TlsSocket};
use crate::upstream::Upstream;

/// First and longest pause between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Longest pause before trying again a link that closed a loop.
const LOOP_PAUSE: Duration = Duration::from_secs(5);

/// First and longest pause before trying again a link the upstream refused (its AUTH or its
/// LINK): that takes an operator to fix, not a moment.
const REFUSED_PAUSE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(60));

/// How long the link's TLS handshake may take (`--upstream-tls-ca`).
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Keeps the link up until `shutdown`; over TLS with `tls`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    upstream: Arc<Upstream>,
    tls: Option<LinkTls>,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF.0;
    let mut refused_pause = REFUSED_PAUSE.0;
    // Which connection this is, sent with LINK: an upstream that still holds an older one
    // (frozen while this broker gave up on it) takes nothing more from it once this is up.
    let mut epoch = 0u64;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = connect(&shared, &upstream, tls.as_ref()) => r,
        };
        match attempt {
            Ok(stream) => {
                backoff = BACKOFF.0;
                let outbox = Arc::new(Outbox::new(shared.config.max_pending));
                if credentials(&shared).is_none() {
                    up(&upstream, &outbox);
                }
                epoch += 1;
                let why = serve(&shared, &upstream, stream, &outbox, epoch, &shutdown).await;
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
                } else if why.get_ref().is_some_and(|e| e.is::<Refused>()) {
                    upstream.refused.fetch_add(1, Relaxed);
                    warn!(upstream = %upstream.addr, reason = %why, retry_in = ?refused_pause,
                        "the upstream refused this broker's link (see --upstream-user)");
                    backoff = refused_pause;
                    refused_pause = (refused_pause * 2).min(REFUSED_PAUSE.1);
                } else {
                    refused_pause = REFUSED_PAUSE.0;
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

/// Connects to the upstream, and runs the TLS handshake when the link is TLS (a failed one
/// is counted, and retried like a refused connection).
async fn connect(
    shared: &Shared,
    upstream: &Upstream,
    tls: Option<&LinkTls>,
) -> io::Result<Socket> {
    let timeout = shared.config.upstream_timeout;
    let connecting = TcpStream::connect(upstream.addr.as_pair());
    let stream = match timeout.is_zero() {
        true => connecting.await?,
        false => tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )
            })??,
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Socket::Plain(stream));
    };
    let handshake = tls.connector.connect(tls.name.clone(), stream);
    let why = match tokio::time::timeout(HANDSHAKE, handshake).await {
        Ok(Ok(stream)) => {
            let (stream, session) = stream.into_inner();
            return Ok(Socket::Tls(TlsSocket::new(stream, session)));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("not finished within {HANDSHAKE:?}"),
    };
    stats::add(&shared.stats.tls_handshake_failures, 1);
    Err(io::Error::other(format!("TLS handshake failed: {why}")))
}

/// Ready when the link's socket may have input; at once when `primed` (a TLS handshake may
/// have read past its end, and what it read waits in the session, not in the socket).
async fn readable(socket: &Socket, primed: bool) -> io::Result<()> {
    if primed {
        return Ok(());
    }
    socket.stream().readable().await
}

/// The user and password this broker authenticates as upstream, if it has them.
fn credentials(shared: &Shared) -> Option<(&str, &str)> {
    let config = &shared.config;
    let password = config.upstream_password.as_ref()?;
    Some((config.upstream_user.as_deref()?, &password.0))
}

/// The link is usable: publishes made here go up it from now on.
fn up(upstream: &Upstream, outbox: &Arc<Outbox>) {
    *upstream.current.lock().expect("upstream lock") = Some(outbox.clone());
    upstream.connected.store(true, Relaxed);
    upstream.connects.fetch_add(1, Relaxed);
    info!(upstream = %upstream.addr, "link to upstream up");
}

/// One connection's life: authenticate (with credentials), announce, subscribe, relay both
/// ways. Returns why it ended.
async fn serve(
    shared: &Shared,
    upstream: &Upstream,
    stream: Socket,
    outbox: &Arc<Outbox>,
    epoch: u64,
    shutdown: &CancellationToken,
) -> io::Error {
    let mut primed = matches!(stream, Socket::Tls(_));
    let mut link = Link {
        epoch,
        stream,
        writing: VecDeque::new(),
        subscribed: HashSet::new(),
        lines: LineReader::new(shared.config.max_frame * 2 + 4096),
    };
    // Until the upstream accepts the AUTH, nothing else is sent (it would be refused).
    let mut ready = match credentials(shared) {
        Some((user, password)) => {
            let _ = outbox.push(encode::auth_command(user, password));
            false
        }
        None => {
            link.announce(shared, outbox);
            true
        }
    };
    let mut scratch = vec![0u8; 64 * 1024];
    let mut heard = Heard::new(shared.config.upstream_timeout);
    loop {
        let want_write = !link.writing.is_empty() || link.stream.unsent();
        tokio::select! {
            _ = shutdown.cancelled() => return io::ErrorKind::Interrupted.into(),
            _ = heard.tick() => match heard.check() {
                Quiet::Fine => {}
                Quiet::Ask => {
                    let _ = outbox.push(encode::ping_command());
                }
                Quiet::Gone(silent) => {
                    return io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("nothing from the upstream for {silent:?} (--upstream-timeout)"),
                    );
                }
            },
            _ = shared.registry.interest_changed(), if ready => link.sync_interest(shared, outbox),
            _ = outbox.ready(), if !want_write => {
                if outbox.take(&mut link.writing) == Taken::Overflowed {
                    return io::Error::other("upstream fell behind by more than --max-pending");
                }
                if let Err(e) = link.flush(upstream, outbox) {
                    return e;
                }
            }
            r = link.stream.stream().writable(), if want_write => {
                if let Err(e) = r.and_then(|_| link.flush(upstream, outbox)) {
                    return e;
                }
            }
            r = readable(&link.stream, primed) => {
                primed = false;
                if let Err(e) = r {
                    return e;
                }
                match link.stream.read(&mut scratch) {
                    Ok(0) => return io::ErrorKind::UnexpectedEof.into(),
                    Ok(n) => {
                        heard.now();
                        // Gathered like a client's read, and flushed when dropped.
                        let mut read = shared.registry.gather(None);
                        let (mut fault, mut accepted) = (None, false);
                        let fed = link.lines.feed(&scratch[..n], |line| {
                            if !ready && is_auth_reply(line) {
                                accepted = true;
                                return;
                            }
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
                        if accepted && !ready {
                            ready = true;
                            up(upstream, outbox);
                            link.announce(shared, outbox);
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

/// The upstream refused this broker's AUTH or LINK; its ERROR.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Whether `line` is the upstream's reply to an AUTH that succeeded.
fn is_auth_reply(line: &[u8]) -> bool {
    matches!(parse_event(line), Ok(Event::Other { kind }) if kind == "AUTH")
}

/// Whether an ERROR from the upstream refuses this broker as a link: its AUTH failed, its
/// user may not link, or the upstream wants an AUTH this broker was not given.
fn refuses_the_link(message: &str) -> bool {
    message.starts_with("AUTH: ")
        || (message.starts_with("LINK: user ") && message.ends_with(" may not link"))
        || message.contains(": authenticate first")
}

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
        Ok(Event::Error { message }) if refuses_the_link(&message) => {
            Some(io::Error::other(Refused(message)))
        }
        Ok(Event::Error { message }) => {
            warn!(upstream = %upstream.addr, error = %Quoted(&message), "the upstream refused a frame");
            None
        }
        _ => None,
    }
}

struct Link {
    /// Which of this broker's connections to the upstream this is (LINK's `epoch`).
    epoch: u64,
    /// Plain, or TLS (`--upstream-tls-ca`).
    stream: Socket,
    writing: VecDeque<Bytes>,
    /// Channels the upstream has been asked to send here.
    subscribed: HashSet<Arc<str>>,
    lines: LineReader,
}

impl Link {
    /// Announces the link (LINK) and subscribes upstream to every channel of interest.
    fn announce(&mut self, shared: &Shared, outbox: &Arc<Outbox>) {
        let _ = outbox.push(encode::link_command(&shared.name, &shared.id, self.epoch));
        self.subscribe_all(shared, outbox);
    }

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

    /// Writes what the socket takes; the PUBLISHes written whole (over TLS: encrypted whole)
    /// are counted as forwarded.
    fn flush(&mut self, upstream: &Upstream, outbox: &Outbox) -> io::Result<()> {
        let mut publishes = 0;
        let written = self.stream.write_frames_seeing(&mut self.writing, |frame| {
            publishes += u64::from(frame.starts_with(encode::PUBLISH_PREFIX));
        });
        // Counted even when the write then failed: those frames went out before it did.
        upstream.sent(publishes);
        outbox.written(written?, !self.writing.is_empty());
        Ok(())
    }
}
