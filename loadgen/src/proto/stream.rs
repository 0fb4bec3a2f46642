//! A connection to a broker: plain TCP, or TLS over it.
//!
//! An enum rather than a boxed trait object or a type parameter threaded through every
//! client: with TLS off each read and write is one branch away from the bare `TcpStream`'s,
//! with the same system calls, and the TLS state (some kilobytes of rustls buffers) sits
//! behind a box that a plain connection does not have.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::session::Peer;

/// One connection, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The reading side of a [`Stream`] split in two (see [`Stream::into_split`]).
#[derive(Debug)]
pub enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing side of a [`Stream`] split in two.
#[derive(Debug)]
pub enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl Stream {
    /// The socket under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// SO_LINGER 0: closing sends a reset and leaves no TIME_WAIT.
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.tcp().set_zero_linger()
    }

    /// Two halves that one task can read and write at once (in a `select!`). Plain TCP
    /// splits without a lock; a TLS session is one state for both directions, so its halves
    /// share it behind tokio's lock.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

impl WriteHalf {
    /// Whether bytes a write accepted may wait in a buffer until a flush: a TLS session's
    /// records do when the socket was full. Plain TCP hands them to the kernel, or refuses.
    pub fn buffers(&self) -> bool {
        matches!(self, WriteHalf::Tls(_))
    }
}

impl Peer for Stream {
    fn peer(&self) -> Option<SocketAddr> {
        self.tcp().peer_addr().ok()
    }
}

/// Calls `$method` on whichever variant `$this` (a `Pin<&mut Self>`) is. A boxed TLS stream
/// is itself a stream (tokio implements the traits for `Box`).
macro_rules! delegate {
    ($this:expr, $ty:ident, $method:ident($($arg:expr),*)) => {
        match $this.get_mut() {
            $ty::Plain(s) => Pin::new(s).$method($($arg),*),
            $ty::Tls(s) => Pin::new(s).$method($($arg),*),
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, Stream, poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, Stream, poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, Stream, poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, Stream, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, Stream, poll_shutdown(cx))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, ReadHalf, poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, WriteHalf, poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, WriteHalf, poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, WriteHalf, poll_shutdown(cx))
    }
}
