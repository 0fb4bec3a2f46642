//! Malformed clients: each sends, one after another, a line that is not JSON, an unknown
//! command, a SUBSCRIBE to a channel name longer than the broker allows, and a JSON value that
//! is not an object, waiting each time for the broker's ERROR (the connection stays open);
//! then half a frame and silence, which the broker closes at its frame deadline (with an
//! ERROR) or, without one, holds until the client gives up. Then it starts again on a new
//! connection.

use std::sync::Arc;
use std::time::Duration;

use hubbub::protocol::event::{parse_event, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::shared::Shared;

/// How long the broker may take to answer a malformed line with its ERROR.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// The longest line a malformed client reads from the broker (its ERRORs are short); a longer
/// one ends the connection, so the read buffer is bounded.
const MAX_LINE: usize = 64 << 10;
/// Bytes of the over-long channel name: past the broker's default `--max-channel` of 1K.
const LONG_CHANNEL: usize = 1100;
/// The start of a frame, without its end.
const HALF_FRAME: &[u8] = b"{\"command\":\"SUBSCRIBE\",\"args\":{\"chan";

/// The malformed lines, each answered with an ERROR on a connection that stays open.
fn bad_lines() -> [Vec<u8>; 4] {
    let long = "x".repeat(LONG_CHANNEL);
    [
        b"{\"command\":\"SUBSCRIBE\",\"args\":{\"channel\":\n".to_vec(),
        b"{\"command\":\"FROBNICATE\",\"args\":{\"channel\":\"ch-0\"}}\n".to_vec(),
        format!("{{\"command\":\"SUBSCRIBE\",\"args\":{{\"channel\":\"{long}\"}}}}\n").into_bytes(),
        b"[1,2,3]\n".to_vec(),
    ]
}

/// What came back from the broker.
enum Heard {
    Error,
    /// A line that is not an ERROR.
    Other,
    /// The connection ended (or failed, or sent a line past [`MAX_LINE`]).
    Closed,
    /// Nothing in time.
    Nothing,
}

/// One malformed client, cycling until the soak stops.
pub async fn run(shared: Arc<Shared>, half_frame_wait: Duration) {
    let lines = bad_lines();
    loop {
        let connect = shared.within_timeout(TcpStream::connect(shared.target));
        let Some(mut stream) = connect.await else {
            continue;
        };
        let mut buf = Vec::new();
        let mut open = true;
        for line in &lines {
            if stream.write_all(line).await.is_err() {
                open = false;
                break;
            }
            shared.count(|c| c.malformed_sent += 1);
            let heard = hear(&mut stream, &mut buf, ANSWER_WITHIN).await;
            shared.count(|c| match heard {
                Heard::Error => c.malformed_errors += 1,
                _ => c.malformed_unanswered += 1,
            });
            if matches!(heard, Heard::Closed) {
                open = false;
                break;
            }
        }
        if open && stream.write_all(HALF_FRAME).await.is_ok() {
            half_frame(&shared, &mut stream, &mut buf, half_frame_wait).await;
        }
    }
}

/// Waits up to `wait` after a half frame for the broker to close the connection.
async fn half_frame(shared: &Shared, stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut told = false;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match hear(stream, buf, left).await {
            Heard::Error => told = true,
            Heard::Other => {}
            Heard::Closed => {
                shared.count(|c| {
                    c.half_frames_closed += 1;
                    c.half_frames_told += u64::from(told);
                });
                return;
            }
            Heard::Nothing => {
                shared.count(|c| c.half_frames_held += 1);
                return;
            }
        }
    }
}

/// The next line from the broker within `wait`, as far as a malformed client cares.
async fn hear(stream: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> Heard {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(end) = memchr::memchr(b'\n', buf) {
            let line: Vec<u8> = buf.drain(..=end).collect();
            return match parse_event(&line[..end]) {
                Ok(Event::Error { .. }) => Heard::Error,
                _ => Heard::Other,
            };
        }
        if buf.len() > MAX_LINE {
            return Heard::Closed;
        }
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(0) | Err(_)) => return Heard::Closed,
            Ok(Ok(_)) => {}
            Err(_) => return Heard::Nothing,
        }
    }
}
