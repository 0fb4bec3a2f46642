//! Shared by the codecs' tests: feeds a wire to a [`Reader`] the way a socket delivers it, in
//! every possible split into two reads, and checks each split yields exactly the payloads and
//! replies of feeding it whole.

use super::session::Peer;
use super::{Proto, ProtoError, Reader};

/// An in-memory pipe has no address: errors on one name "an unknown address".
impl Peer for tokio::io::DuplexStream {
    fn peer(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

/// Feeds all of `wire`, growing the buffer one byte at a time; returns the payloads and
/// replies. Every prefix must be consumed only up to a frame boundary.
pub fn feed_bytewise(proto: Proto, wire: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut reader = Reader::new(proto);
    let (mut payloads, mut reply) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    for &b in wire {
        buf.push(b);
        let used = reader
            .feed(&buf, |p| payloads.push(p.to_vec()), &mut reply)
            .unwrap_or_else(|e| panic!("{proto}: {e} at byte {}", buf.len()));
        buf.drain(..used);
    }
    assert!(buf.is_empty(), "{proto}: {} bytes left over", buf.len());
    (payloads, reply)
}

/// Feeds all of `wire` at once.
pub fn feed_whole(proto: Proto, wire: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>, usize) {
    let mut reader = Reader::new(proto);
    let (mut payloads, mut reply) = (Vec::new(), Vec::new());
    let used = reader
        .feed(wire, |p| payloads.push(p.to_vec()), &mut reply)
        .unwrap_or_else(|e| panic!("{proto}: {e}"));
    (payloads, reply, used)
}

/// Whole, byte by byte, and split at every boundary into two reads: all agree.
pub fn check_every_split(proto: Proto, wire: &[u8], payloads: &[&[u8]], reply: &[u8]) {
    let want: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
    let (got, got_reply, used) = feed_whole(proto, wire);
    assert_eq!(used, wire.len(), "{proto}: whole buffer consumed");
    assert_eq!(got, want, "{proto}: fed whole");
    assert_eq!(got_reply, reply, "{proto}: replies fed whole");
    let (got, got_reply) = feed_bytewise(proto, wire);
    assert_eq!(got, want, "{proto}: fed byte by byte");
    assert_eq!(got_reply, reply, "{proto}: replies fed byte by byte");
    for split in 0..=wire.len() {
        let mut reader = Reader::new(proto);
        let (mut got, mut got_reply) = (Vec::new(), Vec::new());
        let mut buf = wire[..split].to_vec();
        let used = reader
            .feed(&buf, |p| got.push(p.to_vec()), &mut got_reply)
            .unwrap();
        buf.drain(..used);
        buf.extend_from_slice(&wire[split..]);
        let used = reader
            .feed(&buf, |p| got.push(p.to_vec()), &mut got_reply)
            .unwrap();
        assert_eq!(used, buf.len(), "{proto}: split at {split}");
        assert_eq!(got, want, "{proto}: split at {split}");
        assert_eq!(got_reply, reply, "{proto}: split at {split}");
    }
}

/// The error `wire` produces when fed whole.
pub fn feed_error(proto: Proto, wire: &[u8]) -> ProtoError {
    Reader::new(proto)
        .feed(wire, |_| {}, &mut Vec::new())
        .expect_err("an error")
}
