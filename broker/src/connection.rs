//! One client connection: the only place the broker touches a client socket.
//!
//! A single task per connection both reads and writes. It waits on the socket becoming
//! readable, its [`Outbox`] receiving frames, (while a write is unfinished) the socket becoming
//! writable, and (while one runs) a deadline for its first command or an unfinished frame.
//! Reads go into a per-thread scratch buffer, so an idle connection owns no read buffer; writes
//! drain everything queued and send it with one `writev`.
//!
//! A TLS client (`--tls-cert`) is served by the same code over a `TlsSocket` instead of
//! [`Plain`] (`crate::transport`): its handshake runs first, in this task, under the
//! first-command deadline; then the same loop reads, decrypting, and writes, encrypting.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::deadline::{Deadlines, Missed};
use crate::frame::LineReader;
use crate::outbox::{Outbox, Taken};
use crate::protocol::encode;
use crate::registry::ConnId;
use crate::session::Session;
use crate::shared::Shared;
use crate::stats;
use crate::subscriptions::Subscriptions;
use crate::transport::{self, Plain, Transport};

/// Bytes read per `read` call. Shared per thread, never per connection.
const SCRATCH: usize = 64 * 1024;
/// Reads per wake-up before giving other connections a turn.
const READS_PER_WAKE: usize = 8;
/// How long a connection being closed for a bad frame waits for its ERROR to be sent.
const LINGER: Duration = Duration::from_millis(500);

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    ClientClosed,
    /// A frame too long, late, or refused for the memory budget: told why, then closed.
    BadFrame,
    SlowConsumer,
    Shutdown,
}

/// A connection's buffers and its transport. A plain client's socket is in its outbox, where
/// a read's [`crate::outbox::Wakes`] can write small deliveries through it without waking
/// this task; a TLS client's is in its `transport::TlsSocket`.
struct Connection<T: Transport = Plain> {
    lines: LineReader,
    session: Session,
    /// Frames taken from the outbox and not yet fully written.
    writing: VecDeque<Bytes>,
    /// The first command's, or an unfinished frame's, if one is running.
    deadlines: Deadlines,
    /// No bytes at all for a plain client.
    transport: T,
}

impl<T: Transport> Drop for Connection<T> {
    /// An unfinished frame's memory is no longer held: off the broker's budget.
    fn drop(&mut self) {
        self.session
            .shared
            .pending
            .budget
            .change(self.lines.held(), 0);
    }
}

enum Wake {
    Shutdown,
    Late(Missed),
    Readable(io::Result<()>),
    Queued,
    Writable(io::Result<()>),
}

/// Serves one accepted client until it leaves, misbehaves or the broker shuts down.
/// The caller has already counted it in `connections_current`.
///
/// Not an `async fn`: the connection is assembled before the future is made, so the future
/// holds it once, rather than also keeping the arguments it was built from (an `async fn`
/// stores its arguments apart from its locals). Every idle client is one such future.
pub(crate) fn serve(
    stream: TcpStream,
    id: ConnId,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    let outbox = Arc::new(Outbox::with_socket(Arc::clone(&shared.pending), stream));
    let deadlines = Deadlines::connected(shared.config.first_command_deadline);
    let session = session(id, outbox, shared);
    run(Connection::new(session, deadlines, Plain))
}

/// A new connection's protocol state; from now on shutdown reaches it through its outbox (see
/// `crate::live`), and its end is counted when the session is dropped.
fn session(id: ConnId, outbox: Arc<Outbox>, shared: Arc<Shared>) -> Session {
    shared.live.insert(id, &outbox);
    Session {
        id,
        outbox,
        access: crate::auth::Access::at_connect(shared.auth.as_deref()),
        shared,
        subscriptions: Subscriptions::default(),
        link: false,
    }
}

/// [`serve`] for a client of a TLS listener: the handshake first, within the first-command
/// deadline (which then goes on for the first command), then the same loop over the session.
/// A handshake that fails or runs out of time is counted and the connection dropped: there is
/// no channel yet to tell the client why in. Its outbox has no socket, so nothing is ever
/// written through from a publisher's thread; this task encrypts and writes everything.
pub(crate) fn serve_tls(
    stream: TcpStream,
    id: ConnId,
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl Future<Output = ()> + Send {
    let outbox = Arc::new(Outbox::with_limits(Arc::clone(&shared.pending)));
    let mut deadlines = Deadlines::connected(shared.config.first_command_deadline);
    let session = session(id, outbox, shared);
    async move {
        let accept = acceptor.accept(stream);
        let tls = match transport::handshake(accept, &session.outbox, &mut deadlines).await {
            Ok(tls) => tls,
            Err(transport::Unfinished::Shutdown) => return,
            Err(transport::Unfinished::Failed(why)) => {
                stats::add(&session.shared.stats.tls_handshake_failures, 1);
                debug!(conn = id, "TLS handshake failed: {why}");
                return;
            }
        };
        run(Connection::new(session, deadlines, tls)).await
    }
}

/// The connection's loop, then its close. Written out here rather than in an `async fn`
/// method: a nested future would add its own frame (its references and state) to every
/// connection's task; this is the one future, holding the connection once. Not an `async fn`
/// either, for the reason [`serve`] is not: it would keep its argument apart from its locals.
#[allow(clippy::manual_async_fn)]
fn run<T: Transport>(mut conn: Connection<T>) -> impl Future<Output = ()> + Send {
    async move {
        let close = loop {
            let wake = poll_fn(|cx| conn.poll_wake(cx)).await;
            match conn.step(wake) {
                Ok(None) => {}
                Ok(Some(close)) => break Ok(close),
                Err(e) => break Err(e),
            }
        };
        if let Some(linger) = conn.finish(close) {
            linger.await;
        }
    }
}

impl<T: Transport> Connection<T> {
    fn new(session: Session, deadlines: Deadlines, transport: T) -> Self {
        Self {
            lines: LineReader::new(session.shared.config.max_frame),
            session,
            writing: VecDeque::new(),
            deadlines,
            transport,
        }
    }

    /// Frames or encrypted bytes are still to be written.
    fn has_output(&self) -> bool {
        !self.writing.is_empty() || self.transport.unsent()
    }

    /// Counts or logs why the connection ended; after a bad frame, returns the graceful close
    /// still to be awaited.
    ///
    /// Not an `async fn`, and that close is boxed: this rare path's future (its timer above
    /// all) would otherwise set the size of every connection's task, since a task is as large
    /// as its largest state.
    fn finish(
        &mut self,
        close: io::Result<Close>,
    ) -> Option<Pin<Box<impl Future<Output = ()> + Send + '_>>> {
        let id = self.session.id;
        match close {
            Ok(Close::SlowConsumer) => {
                let shared = &self.session.shared;
                stats::add(&shared.stats.slow_consumers, 1);
                let why = shared.pending.why();
                warn!(conn = id, "slow consumer disconnected: {why}");
                // Told why, where its socket takes it: after the frame it is in the middle of
                // (if any), in place of everything else it was to get.
                self.writing.truncate(1);
                self.writing.push_back(encode::error(&why));
                return Some(Box::pin(self.linger_close()));
            }
            Ok(Close::BadFrame) => return Some(Box::pin(self.linger_close())),
            Ok(reason) => debug!(conn = id, ?reason, "connection closed"),
            Err(e) => debug!(conn = id, error = %e, "connection failed"),
        }
        None
    }

    /// Does what `wake` calls for; returns why to close, if so.
    fn step(&mut self, wake: Wake) -> io::Result<Option<Close>> {
        match wake {
            Wake::Shutdown => return Ok(Some(Close::Shutdown)),
            Wake::Late(missed) => {
                let shared = &self.session.shared;
                stats::add(&shared.stats.deadlines_missed, 1);
                debug!(conn = self.session.id, "{missed}");
                let _ = self.session.outbox.push(encode::error(&missed.to_string()));
                return self.closing(Close::BadFrame);
            }
            Wake::Readable(r) => {
                r?;
                if let Some(close) = self.read_ready()? {
                    return self.closing(close);
                }
            }
            Wake::Queued => {
                let was_writing = self.has_output();
                if self.session.outbox.take(&mut self.writing) == Taken::Overflowed {
                    return Ok(Some(Close::SlowConsumer));
                }
                if !was_writing {
                    // Otherwise the socket is full: `Writable` will say when to go on.
                    self.flush()?;
                }
            }
            Wake::Writable(r) => {
                r?;
                self.flush()?;
            }
        }
        Ok(None)
    }

    /// Sends what is already queued (the ERROR for a bad frame, say) before closing for
    /// `close`.
    fn closing(&mut self, close: Close) -> io::Result<Option<Close>> {
        if self.session.outbox.take(&mut self.writing) == Taken::Overflowed {
            return Ok(Some(Close::SlowConsumer));
        }
        self.flush()?;
        Ok(Some(close))
    }

    /// What to do next, polled in priority order. Written by hand rather than with `select!`
    /// so that waiting costs no space in the task: `select!` keeps every branch's future (the
    /// socket's `readable()` and `writable()` futures are 150 bytes each) in the task of every
    /// idle connection, whereas the `poll_*` functions keep one waker in the socket's and the
    /// outbox's own state.
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        // While a write is unfinished the socket's writability matters, not the outbox.
        let want_write = self.has_output();
        let outbox = &self.session.outbox;
        // `Outbox::shut` also wakes the task through the outbox's waker, which every path
        // below leaves registered (the outbox is polled whether or not a write is unfinished).
        if outbox.is_shut() {
            return Poll::Ready(Wake::Shutdown);
        }
        if !want_write {
            if outbox.poll_ready(cx).is_ready() {
                return Poll::Ready(Wake::Queued);
            }
        } else if let Poll::Ready(r) = self.transport.socket(outbox).poll_write_ready(cx) {
            return Poll::Ready(Wake::Writable(r));
        }
        if let Poll::Ready(r) = self.transport.poll_read_ready(outbox, cx) {
            return Poll::Ready(Wake::Readable(r));
        }
        // While the socket is full the outbox must still be watched: it may overflow, and a
        // client that never reads would otherwise never be dropped. Polled last so that it
        // cannot starve the socket.
        if want_write && outbox.poll_ready(cx).is_ready() {
            return Poll::Ready(Wake::Queued);
        }
        self.deadlines.poll(cx).map(Wake::Late)
    }

    /// Reads what the socket has, handling every complete frame; what each read publishes is
    /// gathered and reaches each subscriber as one frame, with one wake-up. Returns why to
    /// close, if so.
    fn read_ready(&mut self) -> io::Result<Option<Close>> {
        // A handle of its own, so that a read's gather can borrow the registry while the
        // session is borrowed to handle frames.
        let shared = Arc::clone(&self.session.shared);
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            for _ in 0..READS_PER_WAKE {
                let n = match self.transport.try_read(&self.session.outbox, &mut scratch) {
                    Ok(0) => return Ok(Some(Close::ClientClosed)),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                };
                stats::add(&shared.stats.bytes_in, n as u64);
                let session = &mut self.session;
                // Flushed when it goes out of scope, before the next read: no lock is held
                // across a system call.
                let mut read = shared.registry.gather(session.link.then_some(session.id));
                // A link's read is delivered only while it is its broker's newest link
                // (`crate::epochs`): one lookup per read of a link; plain clients skip it.
                if let Some((slot, mine)) = session
                    .link
                    .then(|| shared.link_epochs.slot(session.id))
                    .flatten()
                {
                    read.guard(slot, mine);
                }
                let (held, mut spoke) = (self.lines.held(), false);
                let fed = self.lines.feed(&scratch[..n], |line| {
                    spoke = true;
                    session.handle(line, &mut read)
                });
                read.flush();
                let superseded = read.superseded();
                drop(read);
                if superseded {
                    let why = crate::protocol::ProtocolError::LinkSuperseded;
                    tracing::info!(conn = session.id, "{why}");
                    let _ = session.outbox.push(encode::error(&why.to_string()));
                    return Ok(Some(Close::BadFrame));
                }
                let budget = &shared.pending.budget;
                let grew = budget.change(held, self.lines.held());
                let refusal = match fed {
                    Err(e) => Some(e.to_string()),
                    // Only a frame that grew past a granule is refused: commands of the usual
                    // few hundred bytes go on, and a PUBLISH among them gets its own ERROR.
                    Ok(()) if grew && budget.spent() => {
                        stats::add(&shared.stats.budget_refusals, 1);
                        Some(format!(
                            "frame refused: the broker's memory budget of {} bytes is spent; \
                             closing",
                            budget.limit()
                        ))
                    }
                    Ok(()) => None,
                };
                if let Some(why) = refusal {
                    stats::add(&shared.stats.protocol_errors, 1);
                    debug!(conn = session.id, "{why}");
                    let _ = session.outbox.push(encode::error(&why));
                    return Ok(Some(Close::BadFrame));
                }
                let unfinished = self.lines.buffered() > 0;
                let frame_deadline = shared.config.frame_deadline;
                self.deadlines.after_read(spoke, unfinished, frame_deadline);
                if n < scratch.len() {
                    return Ok(None);
                }
            }
            Ok(None)
        })
    }

    /// Writes as much of `writing` (and, for TLS, of what is encrypted) as the socket takes
    /// now, many frames per `writev`.
    fn flush(&mut self) -> io::Result<()> {
        let outbox = &self.session.outbox;
        let written = self.transport.write_frames(outbox, &mut self.writing)?;
        // Nothing written leaves the outbox as `take` left it (busy exactly when frames are
        // held): no lock to take.
        if written > 0 {
            outbox.written(written, !self.writing.is_empty());
        }
        if self.writing.is_empty() {
            // Give the buffer back, however small: an idle connection otherwise keeps the one
            // its last burst (often just the SUBSCRIBE acknowledgement) left behind.
            self.writing = VecDeque::new();
        }
        Ok(())
    }

    /// Closes after a fatal ERROR so that the client actually reads it: finish writing, send
    /// FIN, then discard what the client is still sending for a moment. Closing a socket with
    /// unread input makes the kernel send RST, which can destroy the ERROR in flight.
    async fn linger_close(&mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            if !self.write_out().await {
                return;
            }
            // TLS ends its session after the last frame.
            self.transport.close_notify();
            if !self.write_out().await {
                return;
            }
            let socket = self.transport.socket(&self.session.outbox);
            // shutdown(2) through a borrowed handle: the socket is shared with the outbox, and
            // tokio's `shutdown` wants it owned and mutable. It does not block.
            let _ = socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Write);
            loop {
                let socket = self.transport.socket(&self.session.outbox);
                if socket.readable().await.is_err() {
                    return;
                }
                // Into the per-thread scratch buffer, not a local array: a buffer held across
                // the `await` above would live in this future and so in every connection's
                // task, closing or not (4 KiB here was most of an idle connection's memory).
                let read = SCRATCH_BUF.with(|scratch| socket.try_read(&mut scratch.borrow_mut()));
                match read {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }

    /// Writes everything still to be written, waiting on the socket; `false` if it failed.
    async fn write_out(&mut self) -> bool {
        while self.has_output() {
            let socket = self.transport.socket(&self.session.outbox);
            if socket.writable().await.is_err() || self.flush().is_err() {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::registry::Registry;
    use crate::stats::Stats;

    /// Every idle client is one task holding this future, and tokio allocates a task in
    /// 128-byte steps (its task cell is 128-aligned): with tokio 1.54 a future of up to 144
    /// bytes takes a 256-byte cell, one byte more takes 384. Crossing that costs every
    /// connection 128 bytes, about 15% of its memory (measured: 896 → 826 B per idle
    /// connection when the future went from 224 bytes to 136), so it should be a decision,
    /// not an accident: box what a new field needs only now and then, or raise this bound
    /// knowingly.
    #[tokio::test]
    async fn the_connection_task_fits_a_small_tokio_cell() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            pending: Arc::new(Config::default().pending_limits()),
            config: Config::default(),
            registry: Arc::new(Registry::new(stats.clone())),
            reaper: Default::default(),
            stats,
            name: String::new(),
            upstream: None,
            live: Default::default(),
            id: crate::shared::random_id(),
            links: Default::default(),
            link_epochs: Default::default(),
            loop_logged: Default::default(),
            auth: None,
        });
        let future = serve(stream, 1, shared);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 144, "the connection future grew to {size} bytes");
    }
}
