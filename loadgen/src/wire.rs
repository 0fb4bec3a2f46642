//! Lean protocol I/O for simulated clients.
//!
//! The burst measurements (`fanout`, `memory`) read millions of messages a second and do not
//! time them, so their subscribers only count frames by their newlines (hubbub writes exactly
//! one per frame). Subscribing and encoding go through [`crate::proto`], like every other
//! command.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::proto::Proto;

/// Connects with TCP_NODELAY.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Counts the frames (newlines) in a chunk the broker sent.
pub fn count_frames(chunk: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', chunk).count() as u64
}

/// A hubbub PUBLISH frame whose message is a JSON string of `size` bytes (quotes included,
/// at least 2).
pub fn publish_of_size(channel: &str, size: usize) -> Vec<u8> {
    let mut frame = Vec::new();
    Proto::Hubbub.encode_publish(&mut frame, channel, &vec![b'x'; size.saturating_sub(2)]);
    frame
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
