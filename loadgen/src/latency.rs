//! Timestamps in payloads, and the clock they are read from.
//!
//! Publishers put the message's *intended* send time in its payload; subscribers, possibly in
//! another process, subtract it from the time of arrival. Both read CLOCK_MONOTONIC, which on
//! Linux is one clock for every process on the machine. Measuring from the intended time
//! rather than the actual write means a stalled broker (or a publisher that fell behind its
//! schedule) shows up as latency instead of hiding as fewer samples: no coordinated omission.

/// Nanoseconds on the machine-wide monotonic clock.
pub fn now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// A JSON string message of exactly `size` bytes (at least the timestamp's width):
/// `"<intended_ns>:<seq>:xxxx…"`.
pub fn payload(intended_ns: u64, seq: u64, size: usize) -> String {
    let mut s = format!("\"{intended_ns}:{seq}:");
    let pad = size.saturating_sub(s.len() + 1);
    s.extend(std::iter::repeat("x").take(pad));
    s.push('"');
    s
}

const MARK: &[u8] = b"\"message\":\"";

/// The intended send time in one MESSAGE frame written by hubbub (or any broker whose frames
/// carry `"message":"<ns>:…`), if it has one.
pub fn sent_ns(frame: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(frame, MARK)? + MARK.len();
    let digits = &frame[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub::protocol::encode;

    #[test]
    fn the_timestamp_survives_the_broker_frame() {
        let p = payload(123_456_789, 7, 64);
        assert_eq!(p.len(), 64);
        let frame = encode::message(&encode::message_prefix("ch-1"), &p);
        assert_eq!(sent_ns(&frame), Some(123_456_789));
        assert_eq!(sent_ns(b"{\"type\":\"SUBSCRIBE\"}"), None);
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a && a > 0);
    }
}
