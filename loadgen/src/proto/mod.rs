//! The wire protocols loadgen speaks: hubbub's own, Redis pub/sub (RESP2), NATS core and
//! MQTT 3.1.1 at QoS 0, so one measurement can be run against each broker.
//!
//! # Why hand-written codecs
//! loadgen holds tens of thousands of connections per process and parses millions of
//! messages a second. A well-kept client crate per protocol would add its own tasks, buffers
//! and reconnect logic to every connection, which at 20k connections per process distorts
//! both loadgen's memory and its CPU — and so the measurement. Each driver here is instead a
//! small codec over a plain socket: the caller owns the socket and its one read buffer, and
//! the codec only says what the bytes mean.
//!
//! # Layout
//! - this file: [`Proto`] (parse a frame, encode a publish), [`Reader`] (what a server sends,
//!   frame by frame) and [`ProtoError`] (what a server did wrong).
//! - [`session`]: opening a session and subscribing, the steps that wait on a server's reply,
//!   each within a bound; [`inbound`]: a connection's read loop once it is set up.
//! - [`hubbub`], [`resp`], [`nats`], [`mqtt`]: one pure codec each — `parse` of one frame
//!   from the start of a buffer, and the encoders. No I/O, no allocation when parsing a
//!   delivered message.
//! - [`socket`]: socket options and connecting; [`version`]: asking a broker its version.
//! - [`credentials`]: the user and password, or token, each protocol's handshake presents.
//! - TLS: [`tls`] (the options, the client configuration, why a handshake failed),
//!   [`stream`] (a connection, plain or TLS, at no cost to the plain one), [`dial`] (where in
//!   each protocol the handshake goes), [`blocking`] (the same on OS threads).

pub mod blocking;
pub mod credentials;
pub mod dial;
pub mod hubbub;
pub mod inbound;
pub mod mqtt;
pub mod nats;
pub mod resp;
pub mod session;
pub mod socket;
pub mod stream;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;
pub mod version;

use std::fmt;
use std::io;
use std::time::Duration;

use thiserror::Error;

/// The longest frame loadgen accepts from a server: an unterminated line, or a declared
/// length, beyond this is an error instead of a buffer that grows without bound.
pub const MAX_FRAME: usize = 8 << 20;

/// The wire protocols loadgen speaks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// hubbub's newline-delimited JSON.
    Hubbub,
    /// Redis pub/sub, RESP2 (`SUBSCRIBE` / `PUBLISH`).
    Redis,
    /// NATS core (`SUB` / `PUB`), no JetStream.
    Nats,
    /// MQTT 3.1.1, QoS 0 (Mosquitto and others).
    Mqtt,
}

/// What a server did wrong: said no, sent bytes that are not its protocol, hung up or went
/// quiet. Each reads as a sentence about the server ("nats server sent a malformed frame: ..."),
/// and [`session::SessionError`] adds which server and what loadgen was waiting for.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The server replied with an error (Redis `-ERR`, NATS `-ERR`, hubbub ERROR, a refused
    /// MQTT CONNECT or SUBSCRIBE).
    Server { proto: Proto, message: String },
    /// Bytes that do not parse as the protocol's frames.
    Malformed { proto: Proto, what: &'static str },
    /// A frame longer than [`MAX_FRAME`]: an endless line, or a huge declared length.
    TooLong { proto: Proto, len: usize },
    /// The connection ended with `unfinished` bytes of a frame read: 0 is a hang-up between
    /// frames, more is a frame cut off (a crash, a cut connection), which is worth telling
    /// apart when finding out which.
    Closed { proto: Proto, unfinished: usize },
    /// Nothing that answered arrived within `limit`: a server that accepts connections and
    /// then says nothing would otherwise hold loadgen forever.
    NoReply { proto: Proto, limit: Duration },
    /// Reading or writing failed (a reset, a broken pipe).
    Io { proto: Proto, error: io::Error },
    /// The TLS handshake failed: a certificate loadgen does not trust, a server that does
    /// not speak TLS there ([`tls::explain`] says which).
    Tls { proto: Proto, error: io::Error },
}

impl ProtoError {
    pub fn proto(&self) -> Proto {
        match self {
            ProtoError::Server { proto, .. }
            | ProtoError::Malformed { proto, .. }
            | ProtoError::TooLong { proto, .. }
            | ProtoError::Closed { proto, .. }
            | ProtoError::NoReply { proto, .. }
            | ProtoError::Io { proto, .. }
            | ProtoError::Tls { proto, .. } => *proto,
        }
    }

    /// What the server did, as the rest of a sentence whose subject is the server: written
    /// once, for the error alone and for [`session::SessionError`], which names the server.
    pub fn deed(&self) -> String {
        match self {
            ProtoError::Server { message, .. } => format!("replied with an error: {message}"),
            ProtoError::Malformed { what, .. } => format!("sent a malformed frame: {what}"),
            ProtoError::TooLong { len, .. } => {
                format!("sent a frame of {len} bytes or more, over loadgen's limit of {MAX_FRAME}")
            }
            ProtoError::Closed { unfinished: 0, .. } => "closed the connection".into(),
            ProtoError::Closed { unfinished, .. } => format!(
                "closed the connection in the middle of a frame ({unfinished} bytes of an \
                 unfinished frame)"
            ),
            ProtoError::NoReply { limit, .. } => format!(
                "sent no reply within {}",
                humantime::format_duration(*limit)
            ),
            ProtoError::Io { error, .. } => format!("broke the connection ({error})"),
            ProtoError::Tls { error, .. } => {
                format!("failed the TLS handshake: {}", tls::explain(error))
            }
        }
    }

    /// The [`io::ErrorKind`] a caller that counts I/O errors by kind sees: a hang-up is
    /// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof), silence
    /// [`TimedOut`](io::ErrorKind::TimedOut), a reset what it was, the rest
    /// [`InvalidData`](io::ErrorKind::InvalidData).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ProtoError::Closed { .. } => io::ErrorKind::UnexpectedEof,
            ProtoError::NoReply { .. } => io::ErrorKind::TimedOut,
            ProtoError::Io { error, .. } | ProtoError::Tls { error, .. } => error.kind(),
            _ => io::ErrorKind::InvalidData,
        }
    }

    /// The protocol error inside `e`, bare or in a [`session::SessionError`].
    pub fn found_in(e: &io::Error) -> Option<&ProtoError> {
        let inner = e.get_ref()?;
        inner
            .downcast_ref::<session::SessionError>()
            .map(|s| &s.error)
            .or_else(|| inner.downcast_ref::<ProtoError>())
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} server {}", self.proto(), self.deed())
    }
}

impl From<ProtoError> for io::Error {
    fn from(e: ProtoError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// One frame a server sent, as far as loadgen cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A delivered message's payload (hubbub: the JSON string's contents, unquoted and still
    /// escaped; everyone else: the raw bytes).
    Message(&'a [u8]),
    /// A subscription took effect (hubbub SUBSCRIBE ack, Redis `subscribe` reply, MQTT
    /// SUBACK). NATS has no such frame: it confirms with the PONG to a PING sent after SUB.
    Subscribed,
    /// The server greeted the connection (NATS INFO, accepted MQTT CONNACK).
    Hello,
    /// The answer to a ping the client sent (NATS PONG, hubbub PONG, MQTT PINGRESP).
    Pong,
    /// The protocol requires the client to answer with these bytes (NATS PING → PONG).
    Reply(&'static [u8]),
    /// Anything else: publish replies, +OK, unknown frame types. Skipped.
    Other,
}

/// What a codec's `parse` returns: the first frame in the buffer and its length in bytes,
/// or `None` when the buffer holds only part of one.
pub type Parsed<'a> = Result<Option<(Frame<'a>, usize)>, ProtoError>;

impl Proto {
    /// Every protocol, for tests and help texts.
    pub const ALL: [Proto; 4] = [Proto::Hubbub, Proto::Redis, Proto::Nats, Proto::Mqtt];

    /// Parses the first frame in `buf`.
    pub fn parse(self, buf: &[u8]) -> Parsed<'_> {
        match self {
            Proto::Hubbub => hubbub::parse(buf),
            Proto::Redis => resp::parse(buf),
            Proto::Nats => nats::parse(buf),
            Proto::Mqtt => mqtt::parse(buf),
        }
    }

    /// Appends one publish of `payload` on `channel` to `out`.
    ///
    /// hubbub: a PUBLISH whose message is `payload` as a JSON string (loadgen's payloads,
    /// digits, `:` and `x`, go in verbatim; anything else is escaped). Redis: `PUBLISH` as a
    /// RESP array. NATS: `PUB channel len`. MQTT: PUBLISH at QoS 0.
    ///
    /// Only Redis answers a publish (`:N`, the number of receivers); a publisher must still
    /// read and [`Reader::feed`] what its connection receives, or the replies back up.
    pub fn encode_publish(self, out: &mut Vec<u8>, channel: &str, payload: &[u8]) {
        match self {
            Proto::Hubbub => hubbub::encode_publish(out, channel, payload),
            Proto::Redis => resp::encode_publish(out, channel, payload),
            Proto::Nats => nats::encode_publish(out, channel, payload),
            Proto::Mqtt => mqtt::encode_publish(out, channel, payload),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Hubbub => "hubbub",
            Proto::Redis => "redis",
            Proto::Nats => "nats",
            Proto::Mqtt => "mqtt",
        })
    }
}

/// Appends `n` in decimal, without going through `fmt`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Parses an unsigned decimal of at most 19 digits (so it cannot overflow).
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + usize::from(d - b'0'))
    })
}

/// Incremental reader of what a server sends to a connection: delivered message payloads,
/// and the replies the protocol requires (NATS PING → PONG).
///
/// It keeps no buffer of its own: the caller reads into one buffer, feeds it, and drops the
/// consumed prefix, so a connection costs its socket and that one buffer.
#[derive(Debug, Clone)]
pub struct Reader {
    proto: Proto,
}

impl Reader {
    pub fn new(proto: Proto) -> Self {
        Self { proto }
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Consumes every complete frame at the start of `buf`, calling `on_payload` with each
    /// delivered message's payload (for hubbub the message's JSON string contents without the
    /// quotes, for the others the raw payload) and appending any reply the protocol requires
    /// to `reply`. Other frames (Redis `:N` publish replies, NATS +OK and INFO, hubbub acks
    /// and PONG...) are skipped. Returns how many bytes were consumed: the rest is the start
    /// of an incomplete frame.
    pub fn feed(
        &mut self,
        buf: &[u8],
        on_payload: impl FnMut(&[u8]),
        reply: &mut Vec<u8>,
    ) -> Result<usize, ProtoError> {
        // One match per call, so each loop below is specialised to its codec.
        match self.proto {
            Proto::Hubbub => drive(buf, hubbub::parse, on_payload, reply),
            Proto::Redis => drive(buf, resp::parse, on_payload, reply),
            Proto::Nats => drive(buf, nats::parse, on_payload, reply),
            Proto::Mqtt => drive(buf, mqtt::parse, on_payload, reply),
        }
    }
}

fn drive<P>(
    buf: &[u8],
    parse: P,
    mut on_payload: impl FnMut(&[u8]),
    reply: &mut Vec<u8>,
) -> Result<usize, ProtoError>
where
    P: for<'a> Fn(&'a [u8]) -> Parsed<'a>,
{
    let mut at = 0;
    while let Some((frame, len)) = parse(&buf[at..])? {
        match frame {
            Frame::Message(payload) => on_payload(payload),
            Frame::Reply(bytes) => reply.extend_from_slice(bytes),
            Frame::Subscribed | Frame::Hello | Frame::Pong | Frame::Other => {}
        }
        at += len;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_everywhere() {
        for p in Proto::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
            let value = clap::ValueEnum::to_possible_value(&p).unwrap();
            assert_eq!(value.get_name(), p.to_string());
        }
    }
}
