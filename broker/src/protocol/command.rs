//! Client → broker commands.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use thiserror::Error;

use super::quote::Quoted;

/// One parsed command. Borrows from the frame, so parsing a PUBLISH copies nothing: the
/// `message` is relayed byte for byte as the publisher encoded it (protocol rule 6).
#[derive(Debug)]
pub enum Command<'a> {
    Subscribe {
        channel: Cow<'a, str>,
    },
    Unsubscribe {
        channel: Cow<'a, str>,
    },
    Publish {
        channel: Cow<'a, str>,
        message: &'a RawValue,
    },
    /// Extension: replies `{"type":"PONG"}`; lets a client measure round trips.
    Ping,
    /// Extension: replies with the broker's counters (`{"type":"STATS",...}`).
    Stats,
    /// Extension: the connection is a link from a downstream broker (hub topology). Its
    /// publishes are never echoed back to it.
    Link {
        name: Cow<'a, str>,
        /// The linking broker's id (`args.id`), for the upstream to refuse a loop; optional.
        id: Option<Cow<'a, str>>,
        /// Which of that broker's connections this is (`args.epoch`, growing with each it
        /// makes): a newer link supersedes an older one still open; optional.
        epoch: Option<u64>,
    },
    /// Extension: authenticates the connection as `user` (with `--users`); replies
    /// `{"type":"AUTH","user":...}` or an ERROR.
    Auth {
        user: Cow<'a, str>,
        password: Secret<'a>,
    },
}

/// A password as sent: shown as `"…"` by `Debug`, so that no log of a command carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<'a>(pub Cow<'a, str>);

impl std::fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"…\"")
    }
}

impl PartialEq for Command<'_> {
    fn eq(&self, other: &Self) -> bool {
        use Command::*;
        match (self, other) {
            (Subscribe { channel: a }, Subscribe { channel: b }) => a == b,
            (Unsubscribe { channel: a }, Unsubscribe { channel: b }) => a == b,
            (
                Publish {
                    channel: a,
                    message: m,
                },
                Publish {
                    channel: b,
                    message: n,
                },
            ) => a == b && m.get() == n.get(),
            (Ping, Ping) | (Stats, Stats) => true,
            (
                Link {
                    name: a,
                    id: i,
                    epoch: e,
                },
                Link {
                    name: b,
                    id: j,
                    epoch: f,
                },
            ) => a == b && i == j && e == f,
            (
                Auth {
                    user: a,
                    password: p,
                },
                Auth {
                    user: b,
                    password: q,
                },
            ) => a == b && p == q,
            _ => false,
        }
    }
}

/// Why a frame was refused. The `Display` text is what the broker sends back in
/// `{"type":"ERROR","message":...}`, so it says what was wrong in words a client author can act on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("frame is not valid UTF-8")]
    NotUtf8,
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(JsonFault),
    #[error("frame must be a JSON object")]
    NotObject,
    #[error("missing \"command\"")]
    MissingCommand,
    #[error("\"command\" must be a string")]
    CommandNotString,
    /// The command as sent, quoted and cut ([`Quoted`]): the ERROR echoes it.
    #[error("unknown command {0}")]
    UnknownCommand(String),
    #[error("{0}: missing \"args\"")]
    MissingArgs(&'static str),
    #[error("{0}: \"args\" must be an object")]
    ArgsNotObject(&'static str),
    #[error("{0}: missing \"args.channel\"")]
    MissingChannel(&'static str),
    #[error("{0}: \"args.channel\" must be a string")]
    ChannelNotString(&'static str),
    #[error("PUBLISH: missing \"args.message\"")]
    MissingMessage,
    #[error("LINK: \"args.name\" must be a string")]
    LinkNameNotString,
    #[error("LINK: \"args.id\" must be a string")]
    LinkIdNotString,
    #[error("LINK: \"args.epoch\" must be a whole number")]
    LinkEpochNotNumber,
    #[error("LINK: superseded, the broker of this link has linked again since; closing this one")]
    LinkSuperseded,
    /// The id, quoted ([`Quoted`]).
    #[error(
        "LINK: refused, broker {0} is this broker or above it, so the link would close a loop"
    )]
    LinkLoop(String),
    #[error("{0}: \"args.channel\" holds an escape that is no character (a lone surrogate)")]
    ChannelNotText(&'static str),
    #[error("{0}: \"args.channel\" is longer than the maximum of {1} bytes")]
    ChannelTooLong(&'static str, usize),
    #[error("PUBLISH: \"args.message\" is nested deeper than the maximum of {0} levels")]
    TooDeep(usize),
    #[error("SUBSCRIBE: already subscribed to the maximum of {0} channels")]
    TooManySubscriptions(usize),
    #[error("PUBLISH: refused, the broker's memory budget of {0} bytes is spent; try again later")]
    BudgetSpent(usize),
    /// An AUTH field missing (`user`, `password`).
    #[error("AUTH: missing \"args.{0}\"")]
    AuthFieldMissing(&'static str),
    #[error("AUTH: \"args.{0}\" must be a string")]
    AuthFieldNotString(&'static str),
    #[error("AUTH: authentication is not configured on this broker")]
    AuthNotConfigured,
    #[error("AUTH: wrong user or password")]
    AuthFailed,
    #[error("AUTH: too many authentications in progress; try again later")]
    AuthBusy,
    #[error("AUTH: the previous AUTH is still being checked; wait for its reply")]
    AuthChecking,
    /// The user, quoted ([`Quoted`]).
    #[error("AUTH: already authenticated as {0}")]
    AuthAgain(String),
    #[error("{0}: authenticate first (send AUTH and wait for its reply)")]
    NotAuthenticated(&'static str),
    /// The user and the channel, quoted ([`Quoted`]).
    #[error("SUBSCRIBE: user {0} may not subscribe to {1}")]
    MayNotSubscribe(String, String),
    #[error("PUBLISH: user {0} may not publish to {1}")]
    MayNotPublish(String, String),
    #[error("LINK: user {0} may not link")]
    MayNotLink(String),
    #[error("STATS: user {0} may not ask for STATS")]
    MayNotStats(String),
}

/// What is wrong with a frame that is not JSON, in the broker's own words: the parser's wording
/// changes with its version, and the protocol's error texts should not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum JsonFault {
    #[error("unexpected character at column {0}")]
    Unexpected(usize),
    #[error("the frame ends inside a value")]
    EndsEarly,
    #[error("unexpected characters after the object, at column {0}")]
    Trailing(usize),
    #[error("duplicate key at column {0}")]
    Duplicate(usize),
}

impl JsonFault {
    fn of(e: &serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Eof => JsonFault::EndsEarly,
            // Only a duplicate key gets this far: every field is taken raw, whatever its type.
            serde_json::error::Category::Data => JsonFault::Duplicate(e.column()),
            _ => JsonFault::Unexpected(e.column()),
        }
    }
}

fn invalid(e: serde_json::Error) -> ProtocolError {
    ProtocolError::InvalidJson(JsonFault::of(&e))
}

/// The outer object. Fields are kept raw so that a wrong type gets its own error message
/// instead of serde's generic one. Unknown keys are ignored (room for extensions).
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    command: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    args: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawArgs<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    message: Option<&'a RawValue>,
}

/// A JSON string, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// Marks a key as present even when its value is `null` (`"message": null` is a valid message;
/// a missing `message` is not).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn is_object(raw: &str) -> bool {
    raw.trim_start().starts_with('{')
}

fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Str>(raw.get()).ok().map(|s| s.0)
}

/// Parses one frame (a line without its line ending).
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ProtocolError> {
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8)?;
    if !is_object(text) {
        // Rare, so it may cost a second look: JSON of another kind, or not JSON at all.
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => ProtocolError::NotObject,
            Err(e) => invalid(e),
        });
    }
    let mut json = serde_json::Deserializer::from_str(text);
    let frame = RawFrame::deserialize(&mut json).map_err(invalid)?;
    json.end()
        .map_err(|e| ProtocolError::InvalidJson(JsonFault::Trailing(e.column())))?;
    let name = frame.command.ok_or(ProtocolError::MissingCommand)?;
    let name = as_str(name).ok_or(ProtocolError::CommandNotString)?;
    let verb: &'static str = [
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PUBLISH",
        "PING",
        "STATS",
        "LINK",
        "AUTH",
    ]
    .into_iter()
    .find(|v| v.eq_ignore_ascii_case(&name))
    .ok_or_else(|| ProtocolError::UnknownCommand(Quoted(&name).to_string()))?;
    match verb {
        "PING" => return Ok(Command::Ping),
        "STATS" => return Ok(Command::Stats),
        "LINK" => return parse_link(frame.args),
        "AUTH" => return parse_auth(frame.args),
        _ => {}
    }
    let args = frame.args.ok_or(ProtocolError::MissingArgs(verb))?;
    if !is_object(args.get()) {
        return Err(ProtocolError::ArgsNotObject(verb));
    }
    let args: RawArgs = serde_json::from_str(args.get()).map_err(invalid)?;
    let channel = args.channel.ok_or(ProtocolError::MissingChannel(verb))?;
    let channel = as_str(channel).ok_or_else(|| {
        // A string that does not decode can only hold an escape of half a surrogate pair.
        if channel.get().starts_with('"') {
            ProtocolError::ChannelNotText(verb)
        } else {
            ProtocolError::ChannelNotString(verb)
        }
    })?;
    Ok(match verb {
        "SUBSCRIBE" => Command::Subscribe { channel },
        "UNSUBSCRIBE" => Command::Unsubscribe { channel },
        _ => Command::Publish {
            channel,
            message: args.message.ok_or(ProtocolError::MissingMessage)?,
        },
    })
}

/// `{"command":"AUTH","args":{"user":"alice","password":"…"}}`; both are required strings.
fn parse_auth(args: Option<&RawValue>) -> Result<Command<'_>, ProtocolError> {
    #[derive(Deserialize)]
    struct AuthArgs<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        user: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        password: Option<&'a RawValue>,
    }
    let args = args.ok_or(ProtocolError::MissingArgs("AUTH"))?;
    if !is_object(args.get()) {
        return Err(ProtocolError::ArgsNotObject("AUTH"));
    }
    let a: AuthArgs = serde_json::from_str(args.get()).map_err(invalid)?;
    fn field<'a>(
        raw: Option<&'a RawValue>,
        name: &'static str,
    ) -> Result<Cow<'a, str>, ProtocolError> {
        let raw = raw.ok_or(ProtocolError::AuthFieldMissing(name))?;
        as_str(raw).ok_or(ProtocolError::AuthFieldNotString(name))
    }
    Ok(Command::Auth {
        user: field(a.user, "user")?,
        password: Secret(field(a.password, "password")?),
    })
}

/// `{"command":"LINK","args":{"name":"leaf-1","id":"5f3a…"}}`; `args`, `name` and `id` are
/// optional.
fn parse_link(args: Option<&RawValue>) -> Result<Command<'_>, ProtocolError> {
    #[derive(Deserialize)]
    struct LinkArgs<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        name: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        id: Option<&'a RawValue>,
        #[serde(borrow, default, deserialize_with = "present")]
        epoch: Option<&'a RawValue>,
    }
    let a = match args {
        Some(args) if is_object(args.get()) => {
            serde_json::from_str::<LinkArgs>(args.get()).map_err(invalid)?
        }
        Some(_) => return Err(ProtocolError::ArgsNotObject("LINK")),
        None => LinkArgs {
            name: None,
            id: None,
            epoch: None,
        },
    };
    let name = match a.name {
        Some(raw) => as_str(raw).ok_or(ProtocolError::LinkNameNotString)?,
        None => Cow::Borrowed(""),
    };
    let id = match a.id {
        Some(raw) => Some(as_str(raw).ok_or(ProtocolError::LinkIdNotString)?),
        None => None,
    };
    let epoch = match a.epoch {
        Some(raw) => Some(
            raw.get()
                .parse::<u64>()
                .map_err(|_| ProtocolError::LinkEpochNotNumber)?,
        ),
        None => None,
    };
    Ok(Command::Link { name, id, epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command<'_> {
        parse_command(line.as_bytes()).unwrap()
    }

    fn err(line: &[u8]) -> String {
        parse_command(line).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_three_commands() {
        assert_eq!(
            ok(r#"{"command":"SUBSCRIBE","args":{"channel":"foo"}}"#),
            Command::Subscribe {
                channel: "foo".into()
            }
        );
        assert_eq!(
            ok(r#"{"args": {"channel": "foo"}, "command": "UNSUBSCRIBE"}"#),
            Command::Unsubscribe {
                channel: "foo".into()
            }
        );
        match ok(r#"{"command":"PUBLISH","args":{"channel":"foo","message":{"a": [1, 2]}}}"#) {
            Command::Publish { channel, message } => {
                assert_eq!(channel, "foo");
                assert_eq!(message.get(), r#"{"a": [1, 2]}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands_are_case_insensitive_and_extra_keys_ignored() {
        assert_eq!(
            ok(r#"{"command":"subScribe","args":{"channel":"x","extra":1},"id":7}"#),
            Command::Subscribe {
                channel: "x".into()
            }
        );
        assert_eq!(ok(r#"{"command":"ping"}"#), Command::Ping);
        assert_eq!(ok(r#"{"command":"STATS"}"#), Command::Stats);
        assert_eq!(
            ok(r#"{"command":"LINK","args":{"name":"leaf-1"}}"#),
            Command::Link {
                name: "leaf-1".into(),
                id: None,
                epoch: None
            }
        );
        assert_eq!(
            ok(r#"{"command":"LINK","args":{"name":"leaf-1","id":"a1"}}"#),
            Command::Link {
                name: "leaf-1".into(),
                id: Some("a1".into()),
                epoch: None
            }
        );
        assert_eq!(
            ok(r#"{"command":"link"}"#),
            Command::Link {
                name: "".into(),
                id: None,
                epoch: None
            }
        );
        assert_eq!(
            ok(r#"{"command":"LINK","args":{"name":"l","id":"a1","epoch":7}}"#),
            Command::Link {
                name: "l".into(),
                id: Some("a1".into()),
                epoch: Some(7)
            }
        );
        assert_eq!(
            err(br#"{"command":"LINK","args":{"epoch":"7"}}"#),
            "LINK: \"args.epoch\" must be a whole number"
        );
        assert_eq!(
            err(br#"{"command":"LINK","args":{"epoch":-1}}"#),
            "LINK: \"args.epoch\" must be a whole number"
        );
        assert_eq!(
            err(br#"{"command":"LINK","args":{"id":3}}"#),
            "LINK: \"args.id\" must be a string"
        );
        assert_eq!(
            err(br#"{"command":"LINK","args":{"name":3}}"#),
            "LINK: \"args.name\" must be a string"
        );
    }

    #[test]
    fn auth_takes_a_user_and_a_password() {
        assert_eq!(
            ok(r#"{"command":"auth","args":{"user":"alice","password":"s3\u0063ret"}}"#),
            Command::Auth {
                user: "alice".into(),
                password: Secret("s3cret".into()),
            }
        );
        let shown = format!(
            "{:?}",
            ok(r#"{"command":"AUTH","args":{"user":"a","password":"pw"}}"#)
        );
        assert!(!shown.contains("pw"), "{shown}");
        assert_eq!(err(br#"{"command":"AUTH"}"#), "AUTH: missing \"args\"");
        assert_eq!(
            err(br#"{"command":"AUTH","args":{"user":"a"}}"#),
            "AUTH: missing \"args.password\""
        );
        assert_eq!(
            err(br#"{"command":"AUTH","args":{"password":"a"}}"#),
            "AUTH: missing \"args.user\""
        );
        assert_eq!(
            err(br#"{"command":"AUTH","args":{"user":1,"password":"a"}}"#),
            "AUTH: \"args.user\" must be a string"
        );
    }

    #[test]
    fn escaped_channel_names_are_unescaped() {
        assert_eq!(
            ok(r#"{"command":"SUBSCRIBE","args":{"channel":"a\"b\u00e9"}}"#),
            Command::Subscribe {
                channel: "a\"bé".into()
            }
        );
    }

    #[test]
    fn null_and_scalar_messages_are_messages() {
        for m in ["null", "0", "\"s\"", "[]", "true"] {
            let line = format!(r#"{{"command":"PUBLISH","args":{{"channel":"c","message":{m}}}}}"#);
            match parse_command(line.as_bytes()).unwrap() {
                Command::Publish { message, .. } => assert_eq!(message.get(), m),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn every_bad_input_has_its_own_error() {
        assert_eq!(err(b"\xff\xfe"), "frame is not valid UTF-8");
        assert_eq!(
            err(b"{nope"),
            "frame is not valid JSON: unexpected character at column 2"
        );
        assert_eq!(
            err(b"hello"),
            "frame is not valid JSON: unexpected character at column 1"
        );
        assert_eq!(
            err(br#"{"command":"PING""#),
            "frame is not valid JSON: the frame ends inside a value"
        );
        assert_eq!(
            err(br#"{"command":"PING"} x"#),
            "frame is not valid JSON: unexpected characters after the object, at column 20"
        );
        assert_eq!(
            err(br#"{"command":"PING","command":"STATS"}"#),
            "frame is not valid JSON: duplicate key at column 27"
        );
        assert_eq!(err(b"[1,2,3]"), "frame must be a JSON object");
        assert_eq!(err(b"[1,2]"), "frame must be a JSON object");
        assert_eq!(err(b"\"str\""), "frame must be a JSON object");
        assert_eq!(err(b"{}"), "missing \"command\"");
        assert_eq!(err(br#"{"command":5}"#), "\"command\" must be a string");
        assert_eq!(err(br#"{"command":"FLY"}"#), "unknown command \"FLY\"");
        assert_eq!(
            err(br#"{"command":"SUBSCRIBE"}"#),
            "SUBSCRIBE: missing \"args\""
        );
        assert_eq!(
            err(br#"{"command":"SUBSCRIBE","args":"foo"}"#),
            "SUBSCRIBE: \"args\" must be an object"
        );
        assert_eq!(
            err(br#"{"command":"UNSUBSCRIBE","args":{}}"#),
            "UNSUBSCRIBE: missing \"args.channel\""
        );
        assert_eq!(
            err(br#"{"command":"PUBLISH","args":{"channel":["x"],"message":1}}"#),
            "PUBLISH: \"args.channel\" must be a string"
        );
        assert_eq!(
            err(br#"{"command":"PUBLISH","args":{"channel":"x"}}"#),
            "PUBLISH: missing \"args.message\""
        );
    }
}
