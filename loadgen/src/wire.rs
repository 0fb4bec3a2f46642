//! Lean protocol I/O for simulated clients.
//!
//! loadgen holds tens of thousands of connections and reads millions of messages a second, so
//! its subscribers do not parse each MESSAGE: they count frames by their newlines (the broker
//! writes exactly one per frame) and decode only what a measurement needs. Encoding reuses
//! the broker's own functions so the bytes on the wire are the protocol's.

use std::io;
use std::net::SocketAddr;

use hubbub::protocol::encode::{self, Ack};
use hubbub::protocol::{parse_event, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects with TCP_NODELAY.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Subscribes and waits for the acknowledgement. Returns bytes that followed the ack in the
/// same read (they belong to the first messages).
pub async fn subscribe(stream: &mut TcpStream, channel: &str) -> io::Result<Vec<u8>> {
    stream
        .write_all(&encode::subscribe_command(Ack::Subscribe, channel))
        .await?;
    let mut buf = Vec::with_capacity(256);
    loop {
        if let Some(i) = memchr::memchr(b'\n', &buf) {
            return match parse_event(&buf[..i]) {
                Ok(Event::Subscribed { .. }) => Ok(buf.split_off(i + 1)),
                Ok(other) => Err(io::Error::other(format!("expected an ack, got {other:?}"))),
                Err(e) => Err(io::Error::other(e)),
            };
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Counts the frames (newlines) in a chunk the broker sent.
pub fn count_frames(chunk: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', chunk).count() as u64
}

/// A PUBLISH frame whose message is a JSON string of `size` bytes (quotes included, at
/// least 2).
pub fn publish_of_size(channel: &str, size: usize) -> Vec<u8> {
    let body = "x".repeat(size.saturating_sub(2));
    encode::publish_command(channel, &format!("\"{body}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size() {
        let frame = publish_of_size("c", 64);
        match hubbub::protocol::parse_command(frame.trim_ascii_end()).unwrap() {
            hubbub::protocol::Command::Publish { message, .. } => {
                assert_eq!(message.get().len(), 64)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(count_frames(b"a\nb\nc"), 2);
    }
}
