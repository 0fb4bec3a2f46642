//! Writing queued frames to a socket, many per `writev`: shared by client connections and
//! the upstream link.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;

/// Frames per `writev` (well under IOV_MAX = 1024).
const IOVECS: usize = 64;

/// Writes as much of `queue` as the socket takes now, without waiting; returns the bytes
/// written. A frame written in part stays at the front, advanced past what went out.
pub fn write_frames(stream: &TcpStream, queue: &mut VecDeque<Bytes>) -> io::Result<usize> {
    write_frames_seeing(stream, queue, |_| {})
}

/// [`write_frames`], calling `done` with each frame once it is written whole: how the
/// upstream link counts the publishes that actually went up.
pub fn write_frames_seeing(
    stream: &TcpStream,
    queue: &mut VecDeque<Bytes>,
    done: impl FnMut(&Bytes),
) -> io::Result<usize> {
    write_with(|slices| stream.try_write_vectored(slices), queue, done)
}

/// The loop under both, and under a TLS session's writes (`transport`): hands `write` up to
/// [`IOVECS`] frames at a time until it has taken them all or says `WouldBlock`. Generic, so
/// that a plain socket's loop compiles to the direct `writev` it always was.
#[inline]
pub(crate) fn write_with(
    mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    queue: &mut VecDeque<Bytes>,
    mut done: impl FnMut(&Bytes),
) -> io::Result<usize> {
    let mut written = 0;
    while !queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); IOVECS];
        let mut count = 0;
        for (slot, frame) in slices.iter_mut().zip(queue.iter()) {
            *slot = IoSlice::new(frame);
            count += 1;
        }
        match write(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                written += n;
                while n > 0 {
                    let front = queue.front_mut().expect("wrote past the queue");
                    if n >= front.len() {
                        n -= front.len();
                        if let Some(frame) = queue.pop_front() {
                            done(&frame);
                        }
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
    Ok(written)
}
