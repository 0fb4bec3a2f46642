//! Broker → client frames, parsed on the client side (the client library, loadgen, tests).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use thiserror::Error;

/// Something the broker sent.
#[derive(Debug, Clone)]
pub enum Event {
    /// Reply to SUBSCRIBE: the connection is now on `count` channels.
    Subscribed { channel: String, count: u64 },
    /// Reply to UNSUBSCRIBE.
    Unsubscribed { channel: String, count: u64 },
    /// A published message, exactly as its publisher encoded it.
    Message {
        channel: String,
        message: Box<RawValue>,
    },
    /// The broker refused a frame.
    Error { message: String },
    /// Extension: reply to PING.
    Pong,
    /// Extension: the broker's counters, as sent.
    Stats(Map<String, Value>),
    /// A message type this client does not know: the protocol says to skip it.
    Other { kind: String },
}

/// A frame from the broker that is not a protocol message.
#[derive(Debug, Error)]
pub enum EventError {
    #[error("broker sent invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("broker sent a {kind} without {field:?}")]
    MissingField { kind: String, field: &'static str },
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: String,
    channel: Option<String>,
    count: Option<u64>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

/// Parses one line the broker sent (without its line ending).
pub fn parse_event(line: &[u8]) -> Result<Event, EventError> {
    let text = std::str::from_utf8(line).map_err(|_| {
        serde_json::from_slice::<Value>(line).expect_err("non-UTF-8 JSON must fail")
    })?;
    let frame: Incoming = serde_json::from_str(text)?;
    let missing = |field| EventError::MissingField {
        kind: frame.kind.clone(),
        field,
    };
    let channel = || frame.channel.clone().ok_or_else(|| missing("channel"));
    let count = || frame.count.ok_or_else(|| missing("count"));
    Ok(match frame.kind.as_str() {
        "SUBSCRIBE" => Event::Subscribed {
            channel: channel()?,
            count: count()?,
        },
        "UNSUBSCRIBE" => Event::Unsubscribed {
            channel: channel()?,
            count: count()?,
        },
        "MESSAGE" => Event::Message {
            channel: channel()?,
            message: frame.message.ok_or_else(|| missing("message"))?.to_owned(),
        },
        "ERROR" => Event::Error {
            message: match frame.message {
                Some(m) => {
                    serde_json::from_str::<String>(m.get()).unwrap_or_else(|_| m.to_string())
                }
                None => String::new(),
            },
        },
        "PONG" => Event::Pong,
        "STATS" => {
            let mut map: Map<String, Value> = serde_json::from_str(text)?;
            map.remove("type");
            Event::Stats(map)
        }
        _ => Event::Other { kind: frame.kind },
    })
}

/// The channel and raw message of a MESSAGE frame, borrowed from the line; `None` for any
/// other frame. What a broker's upstream link reads for every message it relays, so it
/// allocates nothing.
pub fn parse_message(line: &[u8]) -> Option<(std::borrow::Cow<'_, str>, &RawValue)> {
    /// A string, borrowed unless it has escapes (serde borrows a `Cow` only when it is not
    /// inside an `Option`).
    #[derive(Deserialize)]
    struct Str<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);
    #[derive(Deserialize)]
    struct Borrowed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Str<'a>,
        #[serde(borrow)]
        channel: Option<Str<'a>>,
        #[serde(borrow)]
        message: Option<&'a RawValue>,
    }
    let text = std::str::from_utf8(line).ok()?;
    let frame: Borrowed = serde_json::from_str(text).ok()?;
    if frame.kind.0 != "MESSAGE" {
        return None;
    }
    Some((frame.channel?.0, frame.message?))
}

/// The `path` of a LINK frame (the upstream's id, then those of the brokers above it), for a
/// broker's upstream link; `None` for any other frame, or a LINK from a broker that sends no
/// path.
pub fn parse_link_path(line: &[u8]) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Link {
        #[serde(rename = "type")]
        kind: String,
        path: Option<Vec<String>>,
    }
    let frame: Link = serde_json::from_slice(line).ok()?;
    if frame.kind != "LINK" {
        return None;
    }
    frame.path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    #[test]
    fn round_trips_every_broker_frame() {
        let line = encode::ack(encode::Ack::Subscribe, "ch", 2);
        assert!(matches!(
            parse_event(line.trim_ascii_end()).unwrap(),
            Event::Subscribed { channel, count: 2 } if channel == "ch"
        ));
        let line = encode::message(&encode::message_prefix("ch"), r#"[1, "two"]"#);
        match parse_event(line.trim_ascii_end()).unwrap() {
            Event::Message { channel, message } => {
                assert_eq!(channel, "ch");
                assert_eq!(message.get(), r#"[1, "two"]"#);
            }
            other => panic!("{other:?}"),
        }
        let line = encode::error("nope");
        assert!(
            matches!(parse_event(&line).unwrap(), Event::Error { message } if message == "nope")
        );
        assert!(matches!(parse_event(&encode::pong()).unwrap(), Event::Pong));
    }

    #[test]
    fn messages_parse_without_copies() {
        let line = encode::message(&encode::message_prefix("c"), r#"{"a": 1}"#);
        let (channel, message) = parse_message(line.trim_ascii_end()).unwrap();
        assert!(matches!(channel, std::borrow::Cow::Borrowed("c")));
        assert_eq!(message.get(), r#"{"a": 1}"#);
        assert!(parse_message(&encode::pong()).is_none());
    }

    #[test]
    fn unknown_types_are_skippable_and_junk_is_an_error() {
        assert!(matches!(
            parse_event(br#"{"type":"FUTURE","x":1}"#).unwrap(),
            Event::Other { kind } if kind == "FUTURE"
        ));
        assert!(parse_event(b"not json").is_err());
        assert!(parse_event(br#"{"type":"MESSAGE","channel":"c"}"#).is_err());
    }

    #[test]
    fn a_link_frame_gives_its_path_and_nothing_else_does() {
        let path = vec!["b1".to_string(), "a0".to_string()];
        assert_eq!(
            parse_link_path(&encode::link_reply("hub", &path)),
            Some(path)
        );
        assert_eq!(parse_link_path(br#"{"type":"LINK","name":"old"}"#), None);
        assert_eq!(
            parse_link_path(br#"{"type":"MESSAGE","channel":"c","message":1}"#),
            None
        );
    }
}
