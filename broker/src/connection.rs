//! One client connection: the only place the broker touches a client socket.
//!
//! A single task per connection both reads and writes. It waits on three things: the socket
//! becoming readable, its [`Outbox`] receiving frames, and (while a write is unfinished) the
//! socket becoming writable. Reads go into a per-thread scratch buffer, so an idle connection
//! owns no read buffer; writes drain everything queued and send it with one `writev`.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::frame::LineReader;
use crate::outbox::{Outbox, Taken};
use crate::protocol::encode::{self, Ack};
use crate::protocol::{parse_command, Command};
use crate::registry::ConnId;
use crate::server::Shared;
use crate::stats;

/// Bytes read per `read` call. Shared per thread, never per connection.
const SCRATCH: usize = 64 * 1024;
/// Reads per wake-up before giving other connections a turn.
const READS_PER_WAKE: usize = 8;
/// Frames per `writev` (well under IOV_MAX = 1024).
const IOVECS: usize = 64;
/// How long a connection being closed for a bad frame waits for its ERROR to be sent.
const LINGER: Duration = Duration::from_millis(500);

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    ClientClosed,
    FrameTooLong,
    SlowConsumer,
    Shutdown,
}

/// The connection's protocol state, apart from its socket.
struct Session {
    id: ConnId,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
    /// Channels this connection is on. Its length is the `count` in acknowledgements.
    subscriptions: HashSet<Box<str>>,
}

impl Session {
    fn reply(&self, frame: Bytes) {
        // Overflow is noticed by the connection's own loop, like any other slow consumer.
        let _ = self.outbox.push(frame);
    }

    fn handle(&mut self, line: &[u8]) {
        let shared = &self.shared;
        match parse_command(line) {
            Ok(Command::Publish { channel, message }) => {
                let p = shared.registry.publish(&channel, message.get());
                stats::add(&shared.stats.messages_in, 1);
                if p.deliveries > 0 {
                    stats::add(&shared.stats.messages_out, p.deliveries as u64);
                    stats::add(&shared.stats.bytes_out, (p.deliveries * p.frame_len) as u64);
                }
            }
            Ok(Command::Subscribe { channel }) => {
                if !self.subscriptions.contains(&*channel) {
                    self.subscriptions.insert(channel.as_ref().into());
                    // The ack is queued before the subscription takes effect, so it is written
                    // before any MESSAGE on the channel (protocol rule 2).
                    self.reply(encode::ack(
                        Ack::Subscribe,
                        &channel,
                        self.subscriptions.len(),
                    ));
                    shared.registry.subscribe(&channel, self.id, &self.outbox);
                } else {
                    self.reply(encode::ack(
                        Ack::Subscribe,
                        &channel,
                        self.subscriptions.len(),
                    ));
                }
            }
            Ok(Command::Unsubscribe { channel }) => {
                if self.subscriptions.remove(&*channel) {
                    shared.registry.unsubscribe(&channel, self.id);
                }
                self.reply(encode::ack(
                    Ack::Unsubscribe,
                    &channel,
                    self.subscriptions.len(),
                ));
            }
            Ok(Command::Ping) => self.reply(encode::pong()),
            Ok(Command::Stats) => self.reply(encode::stats(&shared.stats.snapshot())),
            Err(e) => {
                stats::add(&shared.stats.protocol_errors, 1);
                debug!(conn = self.id, error = %e, "protocol error");
                self.reply(encode::error(&e.to_string()));
            }
        }
    }
}

impl Drop for Session {
    /// Subscriptions belong to the connection (protocol rule 1): they go with it, however the
    /// task ends.
    fn drop(&mut self) {
        self.outbox.close();
        for channel in self.subscriptions.drain() {
            self.shared.registry.unsubscribe(&channel, self.id);
        }
        stats::sub(&self.shared.stats.connections_current, 1);
    }
}

/// A connection's socket and buffers.
struct Connection {
    stream: TcpStream,
    lines: LineReader,
    session: Session,
    /// Frames taken from the outbox and not yet fully written.
    writing: VecDeque<Bytes>,
}

enum Wake {
    Shutdown,
    Readable(io::Result<()>),
    Queued,
    Writable(io::Result<()>),
}

/// Serves one accepted client until it leaves, misbehaves or the broker shuts down.
/// The caller has already counted it in `connections_current`.
pub(crate) async fn serve(
    stream: TcpStream,
    id: ConnId,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let max_frame = shared.config.max_frame;
    let outbox = Arc::new(Outbox::new(shared.config.max_pending));
    let mut conn = Connection {
        stream,
        lines: LineReader::new(max_frame),
        session: Session {
            id,
            outbox,
            shared,
            subscriptions: HashSet::new(),
        },
        writing: VecDeque::new(),
    };
    let close = conn.run(&shutdown).await;
    match close {
        Ok(Close::SlowConsumer) => {
            stats::add(&conn.session.shared.stats.slow_consumers, 1);
            warn!(
                conn = id,
                limit = conn.session.shared.config.max_pending,
                "slow consumer disconnected: pending output passed the limit"
            );
        }
        Ok(Close::FrameTooLong) => conn.linger_close().await,
        Ok(reason) => debug!(conn = id, ?reason, "connection closed"),
        Err(e) => debug!(conn = id, error = %e, "connection failed"),
    }
}

impl Connection {
    async fn run(&mut self, shutdown: &CancellationToken) -> io::Result<Close> {
        loop {
            let want_write = !self.writing.is_empty();
            let wake = {
                let (stream, outbox) = (&self.stream, &self.session.outbox);
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Wake::Shutdown,
                    _ = outbox.ready(), if !want_write => Wake::Queued,
                    r = stream.writable(), if want_write => Wake::Writable(r),
                    r = stream.readable() => Wake::Readable(r),
                    // While the socket is full the outbox must still be watched: it may
                    // overflow, and a client that never reads would otherwise never be
                    // dropped. Polled last so that it cannot starve the socket.
                    _ = outbox.ready(), if want_write => Wake::Queued,
                }
            };
            match wake {
                Wake::Shutdown => return Ok(Close::Shutdown),
                Wake::Readable(r) => {
                    r?;
                    if let Some(close) = self.read_ready()? {
                        // Send what is already queued (the ERROR for a long frame, say).
                        if self.session.outbox.take(&mut self.writing) == Taken::Overflowed {
                            return Ok(Close::SlowConsumer);
                        }
                        self.flush()?;
                        return Ok(close);
                    }
                }
                Wake::Queued => {
                    if self.session.outbox.take(&mut self.writing) == Taken::Overflowed {
                        return Ok(Close::SlowConsumer);
                    }
                    if !want_write {
                        // Otherwise the socket is full: `writable` will say when to go on.
                        self.flush()?;
                    }
                }
                Wake::Writable(r) => {
                    r?;
                    self.flush()?;
                }
            }
        }
    }

    /// Reads what the socket has, handling every complete frame. Returns why to close, if so.
    fn read_ready(&mut self) -> io::Result<Option<Close>> {
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            for _ in 0..READS_PER_WAKE {
                let n = match self.stream.try_read(&mut scratch) {
                    Ok(0) => return Ok(Some(Close::ClientClosed)),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                };
                stats::add(&self.session.shared.stats.bytes_in, n as u64);
                let session = &mut self.session;
                if let Err(e) = self.lines.feed(&scratch[..n], |line| session.handle(line)) {
                    stats::add(&session.shared.stats.protocol_errors, 1);
                    debug!(conn = session.id, "{e}; closing");
                    session.reply(encode::error(&e.to_string()));
                    return Ok(Some(Close::FrameTooLong));
                }
                if n < scratch.len() {
                    return Ok(None);
                }
            }
            Ok(None)
        })
    }

    /// Writes as much of `writing` as the socket takes now, many frames per `writev`.
    fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while !self.writing.is_empty() {
            let mut slices = [IoSlice::new(&[]); IOVECS];
            let mut count = 0;
            for (slot, frame) in slices.iter_mut().zip(self.writing.iter()) {
                *slot = IoSlice::new(frame);
                count += 1;
            }
            match self.stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    written += n;
                    while n > 0 {
                        let front = self.writing.front_mut().expect("wrote past the queue");
                        if n >= front.len() {
                            n -= front.len();
                            self.writing.pop_front();
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if written > 0 {
            self.session.outbox.written(written);
        }
        if self.writing.is_empty() && self.writing.capacity() > 64 {
            self.writing = VecDeque::new();
        }
        Ok(())
    }

    /// Closes after a fatal ERROR so that the client actually reads it: finish writing, send
    /// FIN, then discard what the client is still sending for a moment. Closing a socket with
    /// unread input makes the kernel send RST, which can destroy the ERROR in flight.
    async fn linger_close(&mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            while !self.writing.is_empty() {
                if self.stream.writable().await.is_err() || self.flush().is_err() {
                    return;
                }
            }
            let _ = self.stream.shutdown().await;
            let mut sink = [0u8; 4096];
            loop {
                if self.stream.readable().await.is_err() {
                    return;
                }
                match self.stream.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }
}
