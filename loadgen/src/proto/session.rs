//! Opening a session with a server and subscribing: the steps where loadgen sends something
//! and then waits for the server's answer.
//!
//! A server under test may send garbage, hang up half-way through a frame, or accept the
//! connection and never answer. Every step here is therefore bounded, and every failure is a
//! [`SessionError`] that says which protocol, which server, what loadgen was waiting for and
//! what the server did instead ("nats server at 127.0.0.1:4222 sent no reply within 5s,
//! waiting for INFO"), so a user can tell a misbehaving broker from a slow one.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::credentials::Credentials;
use super::{hubbub, mqtt, nats, resp, Frame, Proto, ProtoError, MAX_FRAME};

/// How long each step of a session's setup may take when the caller sets no bound of its
/// own (the default of the rig's `--connect-timeout`): a server that never answers must not
/// hold loadgen forever. The rig passes `--connect-timeout` instead, through [`Proto::within`].
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The server at the other end of a stream, for errors to name.
pub trait Peer {
    /// Its address, if the stream has one.
    fn peer(&self) -> Option<SocketAddr>;
}

impl Peer for TcpStream {
    fn peer(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
}

/// A server failed a step of a session's setup: which server, what loadgen was waiting for,
/// and what the server did instead.
#[derive(Debug, Error)]
#[error("{} server at {} {}, waiting for {awaited}", .error.proto(), at(.peer), .error.deed())]
pub struct SessionError {
    /// The server's address, read before the step (a reset socket no longer has one).
    pub peer: Option<SocketAddr>,
    /// The frame loadgen was waiting for ("INFO", "SUBACK").
    pub awaited: &'static str,
    pub error: ProtoError,
}

impl From<SessionError> for io::Error {
    fn from(e: SessionError) -> Self {
        io::Error::new(e.error.kind(), e)
    }
}

fn at(peer: &Option<SocketAddr>) -> String {
    peer.map_or_else(|| "an unknown address".into(), |a| a.to_string())
}

/// Session setup that allows each step `limit`: [`Proto::within`].
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    proto: Proto,
    limit: Duration,
    /// NATS's INFO was read before the TLS handshake ([`super::dial`]).
    info_read: bool,
}

impl Proto {
    /// Session setup that waits at most `limit` for each of the server's answers.
    pub fn within(self, limit: Duration) -> Setup {
        Setup {
            proto: self,
            limit,
            info_read: false,
        }
    }

    /// [`Setup::handshake`], each answer within [`REPLY_TIMEOUT`].
    pub async fn handshake<S>(self, stream: &mut S, client_id: &str) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        self.within(REPLY_TIMEOUT)
            .handshake(stream, client_id)
            .await
    }

    /// [`Setup::subscribe`], its confirmation within [`REPLY_TIMEOUT`].
    pub async fn subscribe<S>(
        self,
        stream: &mut S,
        channel: &str,
        pending: Vec<u8>,
    ) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        self.within(REPLY_TIMEOUT)
            .subscribe(stream, channel, pending)
            .await
    }
}

impl Setup {
    /// Opens the session on a connected socket. hubbub and Redis need nothing. NATS: reads
    /// INFO, sends CONNECT (no echo, no +OK acks) and a PING, and waits for the PONG, so a
    /// refused CONNECT fails here rather than silently later. MQTT: CONNECT with `client_id`
    /// (which must be unique: a broker drops the older of two connections with one id),
    /// clean session, keep-alive 0 (no pings ever needed), and waits for the CONNACK.
    ///
    /// Returns the bytes read past the handshake. A failure is a [`SessionError`] inside the
    /// [`io::Error`], of the kind [`ProtoError::kind`] says.
    pub async fn handshake<S>(self, stream: &mut S, client_id: &str) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        self.handshake_as(stream, client_id, &Credentials::NONE)
            .await
    }

    /// [`Setup::handshake`] presenting `auth`: hubbub sends AUTH and waits for its
    /// confirmation, Redis sends AUTH and waits for `+OK`, NATS and MQTT put them in their
    /// CONNECT. A refusal is the server's error ("hubbub server at … replied with an error:
    /// AUTH: wrong user or password, waiting for the reply to AUTH").
    pub async fn handshake_as<S>(
        self,
        stream: &mut S,
        client_id: &str,
        auth: &Credentials,
    ) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        match self.proto {
            Proto::Hubbub | Proto::Redis => match auth.auth_command(self.proto) {
                None => Ok(Vec::new()),
                Some(command) => {
                    self.step(
                        stream,
                        &command,
                        Vec::new(),
                        Frame::Hello,
                        "the reply to AUTH",
                    )
                    .await
                }
            },
            Proto::Nats => {
                let rest = match self.info_read {
                    true => Vec::new(),
                    false => self.read_info(stream).await?,
                };
                let connect = nats::connect_as(client_id, auth);
                self.step(
                    stream,
                    &connect,
                    rest,
                    Frame::Pong,
                    "the PONG after CONNECT",
                )
                .await
            }
            Proto::Mqtt => {
                let connect = mqtt::connect_as(client_id, auth);
                self.step(stream, &connect, Vec::new(), Frame::Hello, "CONNACK")
                    .await
            }
        }
    }

    /// Says something a hubbub broker answers, and waits for the answer: a PING, for a
    /// connection that may stay silent for a while before it speaks (a publisher waiting for
    /// the subscribers to connect), since hubbub closes a connection that sends no command
    /// within its `--first-command-deadline`. The other protocols need nothing.
    pub async fn greet<S>(self, stream: &mut S, pending: Vec<u8>) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        match self.proto {
            Proto::Hubbub => {
                let ping = b"{\"command\":\"PING\"}\n";
                self.step(stream, ping, pending, Frame::Pong, "the PONG to PING")
                    .await
            }
            Proto::Redis | Proto::Nats | Proto::Mqtt => Ok(pending),
        }
    }

    /// Subscribes to `channel` and waits until the server confirms: the hubbub ack, Redis's
    /// `subscribe` reply, the PONG to a PING sent after NATS's `SUB` (NATS does not ack a
    /// SUB; the server handles a connection's commands in order, so the PONG means the SUB
    /// took effect), MQTT's SUBACK (at QoS 0).
    ///
    /// `pending` holds bytes already read from the stream. Returns every byte read but the
    /// confirmation itself: messages may arrive before it (MQTT allows that) as well as after,
    /// and all of them are left for the [`Reader`](super::Reader).
    pub async fn subscribe<S>(
        self,
        stream: &mut S,
        channel: &str,
        pending: Vec<u8>,
    ) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        let mut command = Vec::with_capacity(64 + channel.len());
        let (confirmation, awaited) = match self.proto {
            Proto::Hubbub => {
                hubbub::encode_subscribe(&mut command, channel);
                (Frame::Subscribed, "the SUBSCRIBE ack")
            }
            Proto::Redis => {
                resp::encode_subscribe(&mut command, channel);
                (Frame::Subscribed, "the subscribe reply")
            }
            Proto::Nats => {
                nats::encode_subscribe(&mut command, channel);
                command.extend_from_slice(nats::PING);
                (Frame::Pong, "the PONG after SUB")
            }
            Proto::Mqtt => {
                mqtt::encode_subscribe(&mut command, channel);
                (Frame::Subscribed, "SUBACK")
            }
        };
        self.step(stream, &command, pending, confirmation, awaited)
            .await
    }

    /// Reads NATS's greeting, INFO; returns what was read past it.
    pub(super) async fn read_info<S>(self, stream: &mut S) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        self.step(stream, &[], Vec::new(), Frame::Hello, "INFO")
            .await
    }

    /// This setup, for a NATS session whose INFO was read before the TLS handshake.
    pub(super) fn after_info(self) -> Self {
        Setup {
            info_read: true,
            ..self
        }
    }

    pub(super) fn proto(self) -> Proto {
        self.proto
    }

    pub(super) fn limit(self) -> Duration {
        self.limit
    }

    /// Writes `request` and reads until the server sends `want`, all within the limit.
    async fn step<S>(
        self,
        stream: &mut S,
        request: &[u8],
        pending: Vec<u8>,
        want: Frame<'static>,
        awaited: &'static str,
    ) -> io::Result<Vec<u8>>
    where
        S: AsyncRead + AsyncWrite + Peer + Unpin,
    {
        let (proto, peer) = (self.proto, stream.peer());
        let exchange = async {
            // The flush sends what a TLS session buffered; on plain TCP it does nothing.
            stream
                .write_all(request)
                .await
                .map_err(|error| ProtoError::Io { proto, error })?;
            stream
                .flush()
                .await
                .map_err(|error| ProtoError::Io { proto, error })?;
            expect(proto, stream, pending, want).await
        };
        let error = match tokio::time::timeout(self.limit, exchange).await {
            Ok(Ok(rest)) => return Ok(rest),
            Ok(Err(error)) => error,
            Err(_) => ProtoError::NoReply {
                proto,
                limit: self.limit,
            },
        };
        Err(SessionError {
            peer,
            awaited,
            error,
        }
        .into())
    }
}

/// Reads from `stream` until a frame equal to `want` arrives; returns `buf` without that
/// frame (everything before it and after it stays, in order, for the
/// [`Reader`](super::Reader)). An end of stream says how much of a frame it cut off.
async fn expect<S>(
    proto: Proto,
    stream: &mut S,
    mut buf: Vec<u8>,
    want: Frame<'static>,
) -> Result<Vec<u8>, ProtoError>
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
        // Frames before the awaited one are kept for the Reader; a server that sends them
        // without end would otherwise grow this buffer until the time limit.
        if at > MAX_FRAME {
            return Err(ProtoError::Malformed {
                proto,
                what: "more frames than loadgen's frame limit holds before the awaited one",
            });
        }
        buf.reserve(4096);
        match stream.read_buf(&mut buf).await {
            Ok(0) => {
                return Err(ProtoError::Closed {
                    proto,
                    unfinished: buf.len() - at,
                })
            }
            Ok(_) => {}
            Err(error) => return Err(ProtoError::Io { proto, error }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
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
        assert_eq!(
            e.to_string(),
            "nats server at an unknown address replied with an error: Authorization \
             Violation, waiting for the PONG after CONNECT"
        );

        let (mut client, server) = tokio::io::duplex(1024);
        drop(server);
        let e = Proto::Redis
            .subscribe(&mut client, "c", Vec::new())
            .await
            .unwrap_err();
        assert!(e.kind() == io::ErrorKind::BrokenPipe || e.kind() == io::ErrorKind::UnexpectedEof);
    }

    /// A flood of frames that are not the awaited one ends in an error at the frame limit
    /// rather than a buffer that grows until the time limit.
    #[tokio::test]
    async fn endless_other_frames_before_the_confirmation_are_cut_off() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let flood = tokio::spawn(async move {
            let ok = b"+OK\r\n".repeat(4096);
            while server.write_all(&ok).await.is_ok() {}
        });
        let setup = Proto::Redis.within(Duration::from_secs(60));
        let e = tokio::time::timeout(
            Duration::from_secs(30),
            setup.subscribe(&mut client, "c", Vec::new()),
        )
        .await
        .expect("no hang")
        .unwrap_err();
        assert!(
            matches!(ProtoError::found_in(&e), Some(ProtoError::Malformed { what, .. })
                if what.starts_with("more frames than")),
            "{e}"
        );
        drop(client);
        flood.await.unwrap();
    }
}
