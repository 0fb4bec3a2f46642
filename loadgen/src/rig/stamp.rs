//! Timestamps in payloads, and the clock they are read from.
//!
//! Publishers put the message's *intended* send time in its payload; subscribers, possibly in
//! another process, subtract it from the time of arrival. Both read CLOCK_MONOTONIC, which on
//! Linux is one clock for every process on the machine. A worker on another host (an agent's)
//! reads its own machine's clock corrected by the offset the coordinator measured, so that
//! its stamps and windows are on the coordinator's clock too (`crate::rig::agents::clock`). Measuring from the intended time
//! rather than the actual write means a stalled broker (or a publisher that fell behind its
//! schedule) shows up as latency instead of hiding as fewer samples: no coordinated omission.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// This host's monotonic clock less the coordinator's, in nanoseconds: 0 on the coordinator's
/// own machine; on an agent's worker, what the coordinator measured ([`set_offset`]).
/// Set once, before the worker's first subscriber connects, and read on every delivery: an
/// atomic, not a parameter, because every stamp in the process must be on the one clock.
static OFFSET_NS: AtomicI64 = AtomicI64::new(0);

/// Nanoseconds on the coordinator's monotonic clock: this machine's, corrected by the
/// offset an agent's worker was given. Every stamp and every window is on this clock.
pub fn now_ns() -> u64 {
    raw_ns().saturating_add_signed(-OFFSET_NS.load(Relaxed))
}

/// Nanoseconds on this machine's monotonic clock, uncorrected: what an agent answers when
/// the coordinator measures the offset.
pub fn raw_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// From now on [`now_ns`] reads this machine's clock less `offset_ns`.
pub fn set_offset(offset_ns: i64) {
    OFFSET_NS.store(offset_ns, Relaxed);
}

/// A message payload of exactly `size` bytes (or the timestamp's width, if larger):
/// `<intended_ns>:<seq>:xxxx…`. Digits, `:` and `x` need no escaping in any protocol; hubbub
/// carries it as a JSON string (two quotes more on the wire).
pub fn payload(intended_ns: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{intended_ns}:{seq}:").into_bytes();
    let pad = size.saturating_sub(p.len());
    p.resize(p.len() + pad, b'x');
    p
}

/// The intended send time at the start of a payload made by [`payload`].
pub fn sent_ns(payload: &[u8]) -> Option<u64> {
    let end = payload.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&payload[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Proto, Reader};
    use hubbub::protocol::encode;

    #[test]
    fn the_timestamp_survives_every_protocol() {
        let p = payload(123_456_789, 7, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(sent_ns(&p), Some(123_456_789));
        assert_eq!(sent_ns(b"x"), None);
        for proto in [Proto::Hubbub, Proto::Redis, Proto::Nats, Proto::Mqtt] {
            // What a subscriber would receive, read back through the protocol's reader.
            let mut wire = Vec::new();
            match proto {
                Proto::Hubbub => {
                    let json = format!("\"{}\"", std::str::from_utf8(&p).unwrap());
                    wire.extend_from_slice(&encode::message(&encode::message_prefix("c"), &json));
                }
                Proto::Redis => wire.extend_from_slice(
                    format!("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n${}\r\n", p.len()).as_bytes(),
                ),
                Proto::Nats => {
                    wire.extend_from_slice(format!("MSG c 1 {}\r\n", p.len()).as_bytes())
                }
                Proto::Mqtt => proto.encode_publish(&mut wire, "c", &p),
            }
            if matches!(proto, Proto::Redis | Proto::Nats) {
                wire.extend_from_slice(&p);
                wire.extend_from_slice(b"\r\n");
            }
            let mut got = Vec::new();
            Reader::new(proto)
                .feed(&wire, |m| got.push(sent_ns(m)), &mut Vec::new())
                .unwrap();
            assert_eq!(got, [Some(123_456_789)], "{proto}");
        }
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a && a > 0);
    }
}
