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

/// `prefix`, then `text` as a JSON string, then `suffix`: the shape of most frames.
fn around(prefix: &[u8], text: &str, suffix: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(prefix.len() + text.len() + suffix.len() + 2);
    buf.extend_from_slice(prefix);
    // Writing a &str into a Vec cannot fail.
    serde_json::to_writer(&mut buf, text).expect("string encodes");
    buf.extend_from_slice(suffix);
    buf
}

/// `{"type":"MESSAGE","channel":"<channel>","message":` — everything before the payload.
pub fn message_prefix(channel: &str) -> Bytes {
    Bytes::from(around(
        br#"{"type":"MESSAGE","channel":"#,
        channel,
        br#","message":"#,
    ))
}

/// One complete MESSAGE frame: `prefix` from [`message_prefix`], the raw message, `}\n`.
pub fn message(prefix: &[u8], raw_message: &str) -> Bytes {
    let mut buf = BytesMut::new();
    message_into(&mut buf, prefix, raw_message);
    buf.freeze()
}

/// Appends one complete MESSAGE frame to `buf` (see [`message`]), growing it by exactly the
/// frame's size when it is empty.
pub fn message_into(buf: &mut BytesMut, prefix: &[u8], raw_message: &str) {
    buf.reserve(prefix.len() + raw_message.len() + 2);
    buf.put_slice(prefix);
    buf.put_slice(raw_message.as_bytes());
    buf.put_slice(b"}\n");
}

/// `{"type":"SUBSCRIBE","channel":"foo","count":1}` and its UNSUBSCRIBE twin.
pub fn ack(kind: Ack, channel: &str, count: usize) -> Bytes {
    let prefix = match kind {
        Ack::Subscribe => br#"{"type":"SUBSCRIBE","channel":"#.as_slice(),
        Ack::Unsubscribe => br#"{"type":"UNSUBSCRIBE","channel":"#.as_slice(),
    };
    Bytes::from(around(
        prefix,
        channel,
        format!(",\"count\":{count}}}\n").as_bytes(),
    ))
}

/// How every PUBLISH a broker sends up its link begins ([`publish_command`]): what the link
/// counts its forwarded publishes by.
pub const PUBLISH_PREFIX: &[u8] = br#"{"command":"PUBLISH","args":{"channel":"#;

/// `{"type":"ERROR","message":"<what was wrong>"}`.
pub fn error(what: &str) -> Bytes {
    Bytes::from(around(br#"{"type":"ERROR","message":"#, what, b"}\n"))
}

/// Extension: the reply to LINK, and what a broker sends down its links whenever the brokers
/// above it change: its name, and `path`, its own id followed by those of the brokers above
/// it, nearest first. A broker that finds its own id there is linked in a loop.
pub fn link_reply(name: &str, path: &[String]) -> Bytes {
    #[derive(Serialize)]
    struct Reply<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'a str,
        path: &'a [String],
    }
    line(&Reply {
        kind: "LINK",
        name,
        path,
    })
}

/// Client side (a downstream broker): announces a link, with this broker's id and which of
/// its connections this is.
pub fn link_command(name: &str, id: &str, epoch: u64) -> Bytes {
    #[derive(Serialize)]
    struct Args<'a> {
        name: &'a str,
        id: &'a str,
        epoch: u64,
    }
    command("LINK", Args { name, id, epoch })
}

/// Extension: the reply to an AUTH that succeeded, `{"type":"AUTH","user":"alice"}`.
pub fn auth_reply(user: &str) -> Bytes {
    Bytes::from(around(br#"{"type":"AUTH","user":"#, user, b"}\n"))
}

/// Client side (a downstream broker, loadgen): `{"command":"AUTH","args":{"user":...,
/// "password":...}}`.
pub fn auth_command(user: &str, password: &str) -> Bytes {
    #[derive(Serialize)]
    struct Args<'a> {
        user: &'a str,
        password: &'a str,
    }
    command("AUTH", Args { user, password })
}

/// `{"command":NAME,"args":ARGS}` as one line, for the commands whose arguments are a few
/// strings that need JSON's escaping (a name, a password).
fn command<A: Serialize>(command: &'static str, args: A) -> Bytes {
    #[derive(Serialize)]
    struct Command<A> {
        command: &'static str,
        args: A,
    }
    line(&Command { command, args })
}

/// `value` as one line of JSON.
fn line<T: Serialize>(value: &T) -> Bytes {
    let mut buf = serde_json::to_vec(value).expect("serialises");
    buf.push(b'\n');
    Bytes::from(buf)
}

/// Extension: PING, as a link sends it to hear from a quiet upstream.
pub fn ping_command() -> Bytes {
    Bytes::from_static(b"{\"command\":\"PING\"}\n")
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
    line(&Tagged {
        kind: "STATS",
        stats,
    })
}

/// Client side: `{"command":"SUBSCRIBE","args":{"channel":"foo"}}` and its UNSUBSCRIBE twin.
pub fn subscribe_command(kind: Ack, channel: &str) -> Vec<u8> {
    let prefix = match kind {
        Ack::Subscribe => br#"{"command":"SUBSCRIBE","args":{"channel":"#.as_slice(),
        Ack::Unsubscribe => br#"{"command":"UNSUBSCRIBE","args":{"channel":"#.as_slice(),
    };
    around(prefix, channel, b"}}\n")
}

/// Client side: a PUBLISH of `raw_message`, which must already be one JSON value.
pub fn publish_command(channel: &str, raw_message: &str) -> Vec<u8> {
    let mut buf = around(PUBLISH_PREFIX, channel, br#","message":"#);
    buf.reserve(raw_message.len() + 3);
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
        assert_eq!(
            &auth_reply("a\"b")[..],
            b"{\"type\":\"AUTH\",\"user\":\"a\\\"b\"}\n"
        );
        assert_eq!(
            crate::protocol::parse_command(auth_command("u", "p\"w").trim_ascii_end()).unwrap(),
            crate::protocol::Command::Auth {
                user: "u".into(),
                password: crate::protocol::Secret("p\"w".into()),
            }
        );
        #[derive(Serialize)]
        struct S {
            n: u32,
        }
        assert_eq!(&stats(&S { n: 3 })[..], b"{\"type\":\"STATS\",\"n\":3}\n");
    }
}
