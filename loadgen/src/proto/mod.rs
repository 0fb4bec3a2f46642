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
//! - this file: [`Proto`] (session setup, subscribe, encode a publish), [`Reader`] (what a
//!   server sends, frame by frame), [`ProtoError`], and the one async helper that reads until
//!   the server confirms something. It is the only code here that touches a socket.
//! - [`hubbub`], [`resp`], [`nats`], [`mqtt`]: one pure codec each — `parse` of one frame
//!   from the start of a buffer, and the encoders. No I/O, no allocation when parsing a
//!   delivered message.

pub mod hubbub;
pub mod inbound;
pub mod mqtt;
pub mod nats;
pub mod resp;
pub mod socket;
#[cfg(test)]
pub(crate) mod testing;
pub mod version;

use std::fmt;
use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// A server said no, or sent bytes that are not its protocol.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The server replied with an error (Redis `-ERR`, NATS `-ERR`, hubbub ERROR, a refused
    /// MQTT CONNECT or SUBSCRIBE).
    #[error("{proto} server replied with an error: {message}")]
    Server { proto: Proto, message: String },
    /// Bytes that do not parse as the protocol's frames.
    #[error("malformed {proto} frame: {what}")]
    Malformed { proto: Proto, what: &'static str },
    /// A frame longer than [`MAX_FRAME`].
    #[error("{proto} frame of {len} bytes or more exceeds loadgen's limit of {MAX_FRAME}")]
    TooLong { proto: Proto, len: usize },
}

impl From<ProtoError> for io::Error {
    fn from(e: ProtoError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
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

    /// Opens the session on a connected socket. hubbub and Redis need nothing. NATS: reads
    /// INFO, sends CONNECT (no echo, no +OK acks) and a PING, and waits for the PONG, so a
    /// refused CONNECT fails here rather than silently later. MQTT: CONNECT with `client_id`
    /// (which must be unique: a broker drops the older of two connections with one id),
    /// clean session, keep-alive 0 (no pings ever needed), and waits for the CONNACK.
    ///
    /// Returns the bytes read past the handshake.
    pub async fn handshake<S>(self, stream: &mut S, client_id: &str) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self {
            Proto::Hubbub | Proto::Redis => Ok(Vec::new()),
            Proto::Nats => {
                let rest = expect(self, stream, Vec::new(), Frame::Hello, "INFO").await?;
                stream.write_all(&nats::connect(client_id)).await?;
                expect(self, stream, rest, Frame::Pong, "the PONG after CONNECT").await
            }
            Proto::Mqtt => {
                stream.write_all(&mqtt::connect(client_id)).await?;
                expect(self, stream, Vec::new(), Frame::Hello, "CONNACK").await
            }
        }
    }

    /// Subscribes to `channel` and waits until the server confirms: the hubbub ack, Redis's
    /// `subscribe` reply, the PONG to a PING sent after NATS's `SUB` (NATS does not ack a
    /// SUB; the server handles a connection's commands in order, so the PONG means the SUB
    /// took effect), MQTT's SUBACK (at QoS 0).
    ///
    /// `pending` holds bytes already read from the stream. Returns every byte read but the
    /// confirmation itself: messages may arrive before it (MQTT allows that) as well as after,
    /// and all of them are left for the [`Reader`].
    pub async fn subscribe<S>(
        self,
        stream: &mut S,
        channel: &str,
        pending: Vec<u8>,
    ) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut command = Vec::with_capacity(64 + channel.len());
        let confirmation = match self {
            Proto::Hubbub => {
                hubbub::encode_subscribe(&mut command, channel);
                Frame::Subscribed
            }
            Proto::Redis => {
                resp::encode_subscribe(&mut command, channel);
                Frame::Subscribed
            }
            Proto::Nats => {
                nats::encode_subscribe(&mut command, channel);
                command.extend_from_slice(nats::PING);
                Frame::Pong
            }
            Proto::Mqtt => {
                mqtt::encode_subscribe(&mut command, channel);
                Frame::Subscribed
            }
        };
        stream.write_all(&command).await?;
        expect(
            self,
            stream,
            pending,
            confirmation,
            "the subscription's confirmation",
        )
        .await
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

/// Reads from `stream` until a frame equal to `want` arrives; returns `buf` without that
/// frame (everything before it and after it stays, in order, for the [`Reader`]).
async fn expect<S>(
    proto: Proto,
    stream: &mut S,
    mut buf: Vec<u8>,
    want: Frame<'static>,
    what: &str,
) -> io::Result<Vec<u8>>
where
    S: AsyncRead + Unpin,
{
    let mut at = 0;
    loop {
        while let Some((frame, len)) = proto.parse(&buf[at..])? {
            if frame == want {
                buf.drain(at..at + len);
                return Ok(buf);
            }
            at += len;
        }
        buf.reserve(4096);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{proto} server closed the connection before {what}"),
            ));
        }
    }
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

    /// A scripted server on the other end of an in-memory pipe: answers each expected request
    /// with canned bytes, then sends `after`.
    async fn scripted(
        proto: Proto,
        server_greeting: &[u8],
        server_reply: &[u8],
        after: &[u8],
    ) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        server.write_all(server_greeting).await.unwrap();
        let left = proto.handshake(&mut client, "id-1").await.unwrap();
        // The server answers the SUBSCRIBE (and, for NATS, the PING) in one write with
        // messages before and after the confirmation.
        server.write_all(server_reply).await.unwrap();
        server.write_all(after).await.unwrap();
        let rest = proto
            .subscribe(&mut client, "c", left.clone())
            .await
            .unwrap();
        drop(client);
        let mut sent = Vec::new();
        server.read_to_end(&mut sent).await.unwrap();
        (left, rest, sent)
    }

    #[tokio::test]
    async fn nats_handshake_waits_for_pong_and_keeps_early_messages() {
        let (left, rest, sent) = scripted(
            Proto::Nats,
            b"INFO {\"proto\":1}\r\nPONG\r\n",
            b"MSG c c 2\r\nm1\r\nPONG\r\n",
            b"MSG c c 2\r\nm2\r\n",
        )
        .await;
        assert!(left.is_empty());
        let (payloads, _, used) = testing::feed_whole(Proto::Nats, &rest);
        assert_eq!(used, rest.len());
        assert_eq!(payloads, [b"m1".to_vec(), b"m2".to_vec()]);
        let sent = String::from_utf8(sent).unwrap();
        assert!(sent.starts_with("CONNECT {"), "{sent}");
        assert!(sent.contains("\"echo\":false"), "{sent}");
        assert!(sent.ends_with("PING\r\nSUB c c\r\nPING\r\n"), "{sent}");
    }

    #[tokio::test]
    async fn mqtt_handshake_and_suback() {
        let mut publish = Vec::new();
        mqtt::encode_publish(&mut publish, "c", b"early");
        let suback = [0x90, 3, 0, 1, 0];
        let mut reply = publish.clone();
        reply.extend_from_slice(&suback);
        let (left, rest, sent) = scripted(Proto::Mqtt, &[0x20, 2, 0, 0], &reply, &publish).await;
        assert!(left.is_empty());
        let (payloads, _, _) = testing::feed_whole(Proto::Mqtt, &rest);
        assert_eq!(payloads, [b"early".to_vec(), b"early".to_vec()]);
        assert_eq!(sent[0], 0x10, "CONNECT first");
    }

    #[tokio::test]
    async fn refusals_are_errors() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        server.write_all(&[0x20, 2, 0, 5]).await.unwrap();
        let e = Proto::Mqtt.handshake(&mut client, "x").await.unwrap_err();
        assert!(e.to_string().contains("not authorized"), "{e}");

        let (mut client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"INFO {}\r\n-ERR 'Authorization Violation'\r\n")
            .await
            .unwrap();
        let e = Proto::Nats.handshake(&mut client, "x").await.unwrap_err();
        assert!(e.to_string().contains("Authorization Violation"), "{e}");

        let (mut client, server) = tokio::io::duplex(1024);
        drop(server);
        let e = Proto::Redis
            .subscribe(&mut client, "c", Vec::new())
            .await
            .unwrap_err();
        assert!(e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::UnexpectedEof);
    }

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
