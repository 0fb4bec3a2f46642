//! Broker → client frames, encoded to bytes ready for the socket.
//!
//! A MESSAGE is built from a per-channel prefix (encoded once when the channel is created)
//! plus the publisher's raw `message` bytes, so a publish costs one allocation and one copy of
//! the payload however many subscribers receive it: every subscriber's queue holds a cheap
//! clone of the same [`Bytes`].

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// The two acknowledgement types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    Subscribe,
    Unsubscribe,
}

fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    serde_json::to_writer(&mut *buf, s).expect("string encodes");
}

/// `{"type":"MESSAGE","channel":"<channel>","message":` — everything before the payload.
pub fn message_prefix(channel: &str) -> Bytes {
    let mut buf = Vec::with_capacity(40 + channel.len());
    buf.extend_from_slice(br#"{"type":"MESSAGE","channel":"#);
    push_json_str(&mut buf, channel);
    buf.extend_from_slice(br#","message":"#);
    Bytes::from(buf)
}

/// One complete MESSAGE frame: `prefix` from [`message_prefix`], the raw message, `}\n`.
pub fn message(prefix: &[u8], raw_message: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(prefix.len() + raw_message.len() + 2);
    buf.put_slice(prefix);
    buf.put_slice(raw_message.as_bytes());
    buf.put_slice(b"}\n");
    buf.freeze()
}

/// `{"type":"SUBSCRIBE","channel":"foo","count":1}` and its UNSUBSCRIBE twin.
pub fn ack(kind: Ack, channel: &str, count: usize) -> Bytes {
    let mut buf = Vec::with_capacity(48 + channel.len());
    buf.extend_from_slice(match kind {
        Ack::Subscribe => br#"{"type":"SUBSCRIBE","channel":"#.as_slice(),
        Ack::Unsubscribe => br#"{"type":"UNSUBSCRIBE","channel":"#.as_slice(),
    });
    push_json_str(&mut buf, channel);
    buf.extend_from_slice(format!(",\"count\":{count}}}\n").as_bytes());
    Bytes::from(buf)
}

/// `{"type":"ERROR","message":"<what was wrong>"}`.
pub fn error(what: &str) -> Bytes {
    let mut buf = Vec::with_capacity(32 + what.len());
    buf.extend_from_slice(br#"{"type":"ERROR","message":"#);
    push_json_str(&mut buf, what);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// Extension: the reply to PING.
pub fn pong() -> Bytes {
    Bytes::from_static(b"{\"type\":\"PONG\"}\n")
}

/// Extension: `{"type":"STATS", ...fields of `stats`}`.
pub fn stats<T: Serialize>(stats: &T) -> Bytes {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        stats: &'a T,
    }
    let mut buf = serde_json::to_vec(&Tagged {
        kind: "STATS",
        stats,
    })
    .expect("stats encode");
    buf.push(b'\n');
    Bytes::from(buf)
}

/// Client side: `{"command":"SUBSCRIBE","args":{"channel":"foo"}}` and its UNSUBSCRIBE twin.
pub fn subscribe_command(kind: Ack, channel: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(48 + channel.len());
    buf.extend_from_slice(match kind {
        Ack::Subscribe => br#"{"command":"SUBSCRIBE","args":{"channel":"#.as_slice(),
        Ack::Unsubscribe => br#"{"command":"UNSUBSCRIBE","args":{"channel":"#.as_slice(),
    });
    push_json_str(&mut buf, channel);
    buf.extend_from_slice(b"}}\n");
    buf
}

/// Client side: a PUBLISH of `raw_message`, which must already be one JSON value.
pub fn publish_command(channel: &str, raw_message: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(48 + channel.len() + raw_message.len());
    buf.extend_from_slice(br#"{"command":"PUBLISH","args":{"channel":"#);
    push_json_str(&mut buf, channel);
    buf.extend_from_slice(br#","message":"#);
    buf.extend_from_slice(raw_message.as_bytes());
    buf.extend_from_slice(b"}}\n");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_compact_and_relays_the_payload_verbatim() {
        let prefix = message_prefix("a\"b");
        let frame = message(&prefix, r#"{"x": 1}"#);
        assert_eq!(
            &frame[..],
            b"{\"type\":\"MESSAGE\",\"channel\":\"a\\\"b\",\"message\":{\"x\": 1}}\n"
        );
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(v["message"]["x"], 1);
    }

    #[test]
    fn client_commands_parse_back() {
        use crate::protocol::{parse_command, Command};
        let sub = subscribe_command(Ack::Subscribe, "a\"b");
        assert_eq!(
            parse_command(sub.trim_ascii_end()).unwrap(),
            Command::Subscribe {
                channel: "a\"b".into()
            }
        );
        let unsub = subscribe_command(Ack::Unsubscribe, "x");
        assert_eq!(
            parse_command(unsub.trim_ascii_end()).unwrap(),
            Command::Unsubscribe {
                channel: "x".into()
            }
        );
        let publish = publish_command("x", r#"{"k": [1]}"#);
        match parse_command(publish.trim_ascii_end()).unwrap() {
            Command::Publish { channel, message } => {
                assert_eq!(channel, "x");
                assert_eq!(message.get(), r#"{"k": [1]}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acks_errors_and_extensions() {
        assert_eq!(
            &ack(Ack::Subscribe, "foo", 1)[..],
            b"{\"type\":\"SUBSCRIBE\",\"channel\":\"foo\",\"count\":1}\n"
        );
        assert_eq!(
            &ack(Ack::Unsubscribe, "foo", 0)[..],
            b"{\"type\":\"UNSUBSCRIBE\",\"channel\":\"foo\",\"count\":0}\n"
        );
        assert_eq!(
            &error("bad\n")[..],
            b"{\"type\":\"ERROR\",\"message\":\"bad\\n\"}\n"
        );
        assert_eq!(&pong()[..], b"{\"type\":\"PONG\"}\n");
        #[derive(Serialize)]
        struct S {
            n: u32,
        }
        assert_eq!(&stats(&S { n: 3 })[..], b"{\"type\":\"STATS\",\"n\":3}\n");
    }
}
