//! How a connection's bytes reach its peer: plain, through the socket its outbox holds, or
//! inside a TLS session over a socket of its own.
//!
//! A plain client's socket lives in its [`Outbox`], so that a publisher's read can write small
//! deliveries straight to it (`outbox::Wakes`). A TLS session is state that every write
//! changes (sequence numbers, the cipher's), so only its own task may touch it: a TLS client's
//! outbox has no socket, nothing is written through, and its task encrypts what the outbox
//! holds and writes it, as the upstream link's task does for the link. The connection's code
//! is the same for both, generic over [`Transport`]; the plain one ([`Plain`]) is a type of
//! no size whose methods are the calls the connection made before TLS existed, so a plain
//! connection costs what it did, byte for byte and call for call.
//!
//! TLS is driven here with rustls directly, through the socket's readiness like a plain read
//! (`try_read`, `writev`), once tokio-rustls has run the handshake: the same loop and the same
//! per-thread scratch buffer, with no buffer of ours beside rustls's own. Why not tokio-rustls's
//! stream after the handshake: its `AsyncRead`/`AsyncWrite` want the connection's loop to
//! `await` reads and writes, where it polls readiness and reads and writes without waiting.

use std::collections::VecDeque;
use std::future::{poll_fn, Future as _};
use std::io::{self, Read as _, Write as _};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::deadline::{Deadlines, Missed};
use crate::outbox::Outbox;
use crate::write::{write_frames, write_with};

/// The socket readiness a connection waits on, and how it reads and writes its client.
pub(crate) trait Transport: Send + Sync {
    /// The socket whose readiness the connection waits on.
    fn socket<'a>(&'a self, outbox: &'a Outbox) -> &'a TcpStream;

    /// Ready once there may be something to read.
    fn poll_read_ready(&mut self, outbox: &Outbox, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket(outbox).poll_read_ready(cx)
    }

    /// Reads what has arrived, without waiting: 0 once the peer has closed, `WouldBlock` when
    /// nothing is there.
    fn try_read(&mut self, outbox: &Outbox, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes as much of `frames` as goes now, without waiting; returns the bytes of `frames`
    /// taken (for TLS: encrypted, and written or held in the session's bounded buffer).
    fn write_frames(&mut self, outbox: &Outbox, frames: &mut VecDeque<Bytes>) -> io::Result<usize>;

    /// Bytes of its own are still to be written (TLS records already encrypted).
    fn unsent(&self) -> bool {
        false
    }

    /// Before a graceful close: ends the session (TLS's close_notify), after what is written.
    fn close_notify(&mut self) {}
}

/// A plain client: the socket is in its outbox.
pub(crate) struct Plain;

impl Transport for Plain {
    #[inline]
    fn socket<'a>(&'a self, outbox: &'a Outbox) -> &'a TcpStream {
        outbox.socket()
    }

    #[inline]
    fn try_read(&mut self, outbox: &Outbox, buf: &mut [u8]) -> io::Result<usize> {
        outbox.socket().try_read(buf)
    }

    #[inline]
    fn write_frames(&mut self, outbox: &Outbox, frames: &mut VecDeque<Bytes>) -> io::Result<usize> {
        write_frames(outbox.socket(), frames)
    }
}

/// A TLS session over a non-blocking socket, after its handshake.
///
/// Bounded: rustls holds at most 64 KiB of encrypted records not yet written (its default
/// buffer limit); frames past that wait in the connection's `writing` queue and its outbox,
/// held to the slow-consumer limits like a plain client's.
pub struct TlsSocket {
    stream: TcpStream,
    /// Boxed: a session's state is large, and this is moved into the connection's task.
    tls: Box<rustls::Connection>,
    /// The handshake may have read past its end (a client's first command in the same packet
    /// as its last handshake message): the first wait for input does not wait.
    primed: bool,
}

impl TlsSocket {
    /// The session `tls`, its handshake done, over `stream`.
    pub fn new(stream: TcpStream, tls: impl Into<rustls::Connection>) -> Self {
        Self {
            stream,
            tls: Box::new(tls.into()),
            primed: true,
        }
    }

    /// The socket under the session, for its readiness.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads plaintext, without waiting: 0 once the peer has closed, `WouldBlock` when no
    /// whole record is there.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Plaintext, or 0 after the peer's close_notify.
                done => return done,
            }
            if self.tls.read_tls(&mut Io(&self.stream))? == 0 {
                // Closed without a close_notify: for this protocol, a close all the same.
                return Ok(0);
            }
            if let Err(e) = self.tls.process_new_packets() {
                // rustls has queued an alert saying why: sent if the socket takes it now.
                let _ = self.tls.write_tls(&mut Io(&self.stream));
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Encrypts and writes as much of `queue` as goes now, without waiting, many frames per
    /// record and many records per `writev`; `done` sees each frame once it is encrypted
    /// whole. Returns the bytes of `queue` taken.
    pub fn write_frames_seeing(
        &mut self,
        queue: &mut VecDeque<Bytes>,
        done: impl FnMut(&Bytes),
    ) -> io::Result<usize> {
        let (stream, tls) = (&self.stream, &mut *self.tls);
        // What is already encrypted goes first, so that the session's buffer stays small:
        // each round encrypts only once the last round's records are out.
        let taken = write_with(
            |slices| {
                send(stream, tls)?;
                tls.writer().write_vectored(slices)
            },
            queue,
            done,
        )?;
        match send(stream, tls) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(taken),
            sent => sent.map(|()| taken),
        }
    }

    /// Encrypted records are still to be written.
    pub fn unsent(&self) -> bool {
        self.tls.wants_write()
    }

    /// Queues the close_notify that ends the session.
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
    }
}

/// Writes every encrypted record the session holds; `WouldBlock` once the socket is full.
fn send(stream: &TcpStream, tls: &mut rustls::Connection) -> io::Result<()> {
    while tls.wants_write() {
        if tls.write_tls(&mut Io(stream))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

impl Transport for TlsSocket {
    fn socket<'a>(&'a self, _: &'a Outbox) -> &'a TcpStream {
        &self.stream
    }

    fn poll_read_ready(&mut self, _: &Outbox, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if std::mem::take(&mut self.primed) {
            return Poll::Ready(Ok(()));
        }
        self.stream.poll_read_ready(cx)
    }

    fn try_read(&mut self, _: &Outbox, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn write_frames(&mut self, _: &Outbox, frames: &mut VecDeque<Bytes>) -> io::Result<usize> {
        self.write_frames_seeing(frames, |_| {})
    }

    fn unsent(&self) -> bool {
        TlsSocket::unsent(self)
    }

    fn close_notify(&mut self) {
        TlsSocket::close_notify(self)
    }
}

/// Why a client's TLS handshake gave no session.
pub(crate) enum Unfinished {
    /// The broker is shutting down.
    Shutdown,
    /// It failed, or did not finish in time: why, for the log.
    Failed(String),
}

/// Runs a client's TLS handshake in its connection's own task (never in the accept loop)
/// until it ends, the connection's first-command deadline passes (a client that opens TCP and
/// never finishes a handshake costs a bounded time), or the broker shuts down (its outbox is
/// shut: the connection is in `crate::live` from its accept).
pub(crate) async fn handshake(
    accept: tokio_rustls::Accept<TcpStream>,
    outbox: &Outbox,
    deadlines: &mut Deadlines,
) -> Result<TlsSocket, Unfinished> {
    let mut accept = std::pin::pin!(accept);
    poll_fn(|cx| {
        // The outbox's waker is left first, so that a shutdown after the look is not missed
        // (nothing else reaches an outbox that is on no channel yet).
        let _ = outbox.poll_ready(cx);
        if outbox.is_shut() {
            return Poll::Ready(Err(Unfinished::Shutdown));
        }
        if let Poll::Ready(done) = accept.as_mut().poll(cx) {
            return Poll::Ready(match done {
                Ok(tls) => {
                    let (stream, tls) = tls.into_inner();
                    Ok(TlsSocket::new(stream, tls))
                }
                Err(e) => Err(Unfinished::Failed(e.to_string())),
            });
        }
        deadlines.poll(cx).map(|missed| {
            let (Missed::FirstCommand(within) | Missed::Frame(within)) = missed;
            Err(Unfinished::Failed(format!(
                "not finished within {within:?} of connecting"
            )))
        })
    })
    .await
}

/// A socket of its own, plain or TLS: the upstream link's.
pub(crate) enum Socket {
    Plain(TcpStream),
    Tls(TlsSocket),
}

impl Socket {
    /// The socket, for its readiness.
    pub(crate) fn stream(&self) -> &TcpStream {
        match self {
            Socket::Plain(s) => s,
            Socket::Tls(t) => t.stream(),
        }
    }

    /// Reads what has arrived, without waiting (plaintext, for TLS).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.try_read(buf),
            Socket::Tls(t) => t.read(buf),
        }
    }

    /// Writes as much of `queue` as goes now; `done` sees each frame once it is out whole.
    pub(crate) fn write_frames_seeing(
        &mut self,
        queue: &mut VecDeque<Bytes>,
        done: impl FnMut(&Bytes),
    ) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => crate::write::write_frames_seeing(s, queue, done),
            Socket::Tls(t) => t.write_frames_seeing(queue, done),
        }
    }

    /// Bytes of its own are still to be written.
    pub(crate) fn unsent(&self) -> bool {
        matches!(self, Socket::Tls(t) if t.unsent())
    }
}

/// A non-blocking socket as `io::Read` and `io::Write` for rustls: `WouldBlock` when it has
/// nothing or is full, which also tells tokio's reactor to wait for the next edge.
struct Io<'a>(&'a TcpStream);

impl io::Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl io::Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
