//! hubbub's protocol: one JSON object per line (see `PROTOCOL.md`).
//!
//! A MESSAGE frame from hubbub always has the same shape,
//! `{"type":"MESSAGE","channel":"<channel>","message":<raw>}`, so the hot path matches that
//! shape byte for byte and never runs a JSON parser. Any other line — acks, PONG, ERROR, or a
//! MESSAGE from some other server of the protocol that orders or spaces its keys differently —
//! goes through the broker's own (borrowing) parser.

use ::hubbub::protocol::event::{parse_event, parse_message, Event};

use super::{Frame, Parsed, Proto, ProtoError, MAX_FRAME};

const MESSAGE_HEAD: &[u8] = br#"{"type":"MESSAGE","channel":""#;
const MESSAGE_FIELD: &[u8] = br#","message":"#;

/// Parses the first line of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_FRAME {
            return Err(ProtoError::TooLong {
                proto: Proto::Hubbub,
                len: buf.len(),
            });
        }
        return Ok(None);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    Ok(Some((frame(line)?, end + 1)))
}

fn frame(line: &[u8]) -> Result<Frame<'_>, ProtoError> {
    if let Some(payload) = hubbub_message(line) {
        return Ok(Frame::Message(payload));
    }
    if line.trim_ascii().is_empty() {
        // The protocol lets either side send empty lines.
        return Ok(Frame::Other);
    }
    if let Some((_, raw)) = parse_message(line) {
        return Ok(Frame::Message(unquote(raw.get().as_bytes())));
    }
    match parse_event(line) {
        Ok(Event::Subscribed { .. }) => Ok(Frame::Subscribed),
        Ok(Event::Pong) => Ok(Frame::Pong),
        // The confirmation of an AUTH (`{"type":"AUTH","user":...}`).
        Ok(Event::Other { kind }) if kind == "AUTH" => Ok(Frame::Hello),
        Ok(Event::Error { message }) => Err(ProtoError::Server {
            proto: Proto::Hubbub,
            message,
        }),
        Ok(_) => Ok(Frame::Other),
        Err(_) => Err(ProtoError::Malformed {
            proto: Proto::Hubbub,
            what: "a line that is not a JSON object with a type",
        }),
    }
}

/// The payload of a MESSAGE exactly as hubbub writes it, when its message is a string.
fn hubbub_message(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(MESSAGE_HEAD)?;
    let channel_end = string_end(rest)?;
    let value = rest[channel_end + 1..]
        .strip_prefix(MESSAGE_FIELD)?
        .strip_suffix(b"}")?;
    let inner = value.strip_prefix(b"\"")?;
    (string_end(inner)? + 1 == inner.len()).then(|| &inner[..inner.len() - 1])
}

/// Where the JSON string that `s` starts inside (just past its opening quote) ends: the index
/// of its closing quote.
fn string_end(s: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        at += memchr::memchr2(b'"', b'\\', &s[at..])?;
        if s[at] == b'"' {
            return Some(at);
        }
        at += 2; // a backslash and the character it escapes
        if at > s.len() {
            return None;
        }
    }
}

/// A JSON string's contents without its quotes (escapes left as they are); any other JSON
/// value as it is.
fn unquote(raw: &[u8]) -> &[u8] {
    match raw {
        [b'"', inner @ .., b'"'] => inner,
        _ => raw,
    }
}

/// Appends `s` as a JSON string. loadgen's channels and payloads need no escaping and are
/// copied as they are; anything else is escaped by serde_json (lossily, if not UTF-8).
fn push_json_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        serde_json::to_writer(out, &String::from_utf8_lossy(s)).expect("a string encodes");
    }
}

/// `{"command":"SUBSCRIBE","args":{"channel":"<channel>"}}`.
pub fn encode_subscribe(out: &mut Vec<u8>, channel: &str) {
    out.extend_from_slice(br#"{"command":"SUBSCRIBE","args":{"channel":"#);
    push_json_string(out, channel.as_bytes());
    out.extend_from_slice(b"}}\n");
}

/// `{"command":"PUBLISH","args":{"channel":"<channel>","message":"<payload>"}}`.
pub fn encode_publish(out: &mut Vec<u8>, channel: &str, payload: &[u8]) {
    out.extend_from_slice(br#"{"command":"PUBLISH","args":{"channel":"#);
    push_json_string(out, channel.as_bytes());
    out.extend_from_slice(MESSAGE_FIELD);
    push_json_string(out, payload);
    out.extend_from_slice(b"}}\n");
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_every_split, feed_error};
    use super::*;
    use ::hubbub::protocol::encode::{self, Ack};
    use ::hubbub::protocol::{parse_command, Command};

    /// What the broker would deliver for a PUBLISH that loadgen encoded.
    fn relay(publish: &[u8]) -> Vec<u8> {
        match parse_command(publish.trim_ascii_end()).expect("the broker parses it") {
            Command::Publish { channel, message } => {
                encode::message(&encode::message_prefix(&channel), message.get()).to_vec()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn publish_round_trips_through_the_brokers_own_codec() {
        let mut out = Vec::new();
        encode_publish(&mut out, "c", b"123:7:xxxx");
        assert_eq!(
            out,
            b"{\"command\":\"PUBLISH\",\"args\":{\"channel\":\"c\",\"message\":\"123:7:xxxx\"}}\n"
        );
        check_every_split(Proto::Hubbub, &relay(&out), &[b"123:7:xxxx"], b"");

        // A channel and payload that need escaping still arrive (escaped, as documented).
        let mut out = Vec::new();
        encode_publish(&mut out, "a\"b", b"q\"\n");
        check_every_split(Proto::Hubbub, &relay(&out), &[br#"q\"\n"#], b"");
    }

    #[test]
    fn subscribe_is_what_the_broker_expects() {
        let mut out = Vec::new();
        encode_subscribe(&mut out, "ch-1");
        assert_eq!(
            parse_command(out.trim_ascii_end()).unwrap(),
            Command::Subscribe {
                channel: "ch-1".into()
            }
        );
        let ack = encode::ack(Ack::Subscribe, "ch-1", 1);
        assert_eq!(parse(&ack).unwrap(), Some((Frame::Subscribed, ack.len())));
    }

    #[test]
    fn several_frames_of_every_kind_in_one_buffer() {
        let prefix = encode::message_prefix("c");
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode::ack(Ack::Subscribe, "c", 1));
        wire.extend_from_slice(&encode::message(&prefix, "\"1:0:x\""));
        wire.extend_from_slice(b"\r\n\n");
        wire.extend_from_slice(&encode::pong());
        wire.extend_from_slice(&encode::message(&prefix, r#"{"not":"a string"}"#));
        // Another server of the protocol, with its own key order and spacing.
        wire.extend_from_slice(
            b"{ \"message\": \"2:1:x\", \"channel\": \"c\", \"type\": \"MESSAGE\" }\r\n",
        );
        wire.extend_from_slice(br#"{"type":"FUTURE"}"#);
        wire.push(b'\n');
        wire.extend_from_slice(&encode::message(&prefix, "\"3:2:\\\\\""));
        check_every_split(
            Proto::Hubbub,
            &wire,
            &[b"1:0:x", br#"{"not":"a string"}"#, b"2:1:x", br"3:2:\\"],
            b"",
        );
    }

    #[test]
    fn errors_junk_and_endless_lines() {
        match feed_error(Proto::Hubbub, &encode::error("unknown command")) {
            ProtoError::Server { message, .. } => assert_eq!(message, "unknown command"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            feed_error(Proto::Hubbub, b"not json\n"),
            ProtoError::Malformed { .. }
        ));
        assert_eq!(parse(&vec![b'x'; MAX_FRAME]).unwrap(), None);
        assert!(matches!(
            parse(&vec![b'x'; MAX_FRAME + 1]),
            Err(ProtoError::TooLong { .. })
        ));
    }

    #[test]
    fn the_fast_path_rejects_near_misses() {
        assert_eq!(
            hubbub_message(br#"{"type":"MESSAGE","channel":"c","message":"a"}"#),
            Some(&b"a"[..])
        );
        assert_eq!(
            hubbub_message(br#"{"type":"MESSAGE","channel":"c\"","message":"a\""}"#),
            Some(&br#"a\""#[..])
        );
        for near in [
            &br#"{"type":"MESSAGE","channel":"c","message":"a"b"}"#[..],
            br#"{"type":"MESSAGE","channel":"c","message":"a}"#,
            br#"{"type":"MESSAGE","channel":"c","message":"a\"}"#,
            br#"{"type":"MESSAGE","channel":"c\"}"#,
            br#"{"type":"MESSAGE","channel":"c","message":1}"#,
        ] {
            assert_eq!(
                hubbub_message(near),
                None,
                "{}",
                String::from_utf8_lossy(near)
            );
        }
    }
}
