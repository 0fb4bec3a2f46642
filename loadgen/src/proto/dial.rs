//! Opening a session on a connected socket, over TLS when asked for: where in each protocol
//! the handshake goes. hubbub, Redis (its `tls-port`) and MQTT speak TLS from the first byte.
//! NATS greets every client in plain text (INFO, saying `tls_required`), and the client starts
//! TLS after reading it and before its CONNECT (nats-server 2.9 has no TLS-first option).
//!
//! The handshake is a step of the session's setup like the others: bounded by the same limit,
//! and a failure is a [`SessionError`] that names the server and says why ("redis server at
//! 127.0.0.1:6391 failed the TLS handshake: its certificate is not signed by a CA loadgen
//! trusts …, waiting for the TLS handshake"). Whoever times the connect times it too.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::credentials::Credentials;
use super::session::{SessionError, Setup, REPLY_TIMEOUT};
use super::stream::Stream;
use super::tls::Tls;
use super::{Proto, ProtoError};

/// How a client reaches its broker: the protocol, and TLS when asked for. A bare [`Proto`]
/// converts into one without TLS, so a caller that never uses TLS passes the protocol alone.
#[derive(Debug, Clone)]
pub struct Dial {
    pub proto: Proto,
    pub tls: Option<Tls>,
    /// What the handshake presents (`--user`, `--password-file`, `--token-file`).
    pub auth: Credentials,
}

impl From<Proto> for Dial {
    fn from(proto: Proto) -> Self {
        Dial {
            proto,
            tls: None,
            auth: Credentials::NONE,
        }
    }
}

impl Dial {
    pub fn new(proto: Proto, tls: Option<Tls>) -> Self {
        Dial {
            proto,
            tls,
            auth: Credentials::NONE,
        }
    }

    /// This dial, presenting `auth` in each handshake.
    pub fn with_auth(self, auth: Credentials) -> Self {
        Dial { auth, ..self }
    }

    /// [`Setup::open`] with this protocol and TLS, each step within `limit`.
    pub async fn open(
        &self,
        tcp: TcpStream,
        limit: Duration,
        client_id: &str,
    ) -> io::Result<(Stream, Vec<u8>)> {
        self.proto
            .within(limit)
            .open(tcp, self.tls.as_ref(), client_id, &self.auth)
            .await
    }

    /// [`Dial::open`] within [`REPLY_TIMEOUT`] a step.
    pub async fn open_default(
        &self,
        tcp: TcpStream,
        client_id: &str,
    ) -> io::Result<(Stream, Vec<u8>)> {
        self.open(tcp, REPLY_TIMEOUT, client_id).await
    }
}

impl Setup {
    /// Opens the session ([`Setup::handshake`]) on `tcp`, first making it TLS when `tls` is
    /// given, at the point the protocol says (see the module's comment). Returns the stream and
    /// the bytes read past the handshake.
    pub async fn open(
        self,
        mut tcp: TcpStream,
        tls: Option<&Tls>,
        client_id: &str,
        auth: &Credentials,
    ) -> io::Result<(Stream, Vec<u8>)> {
        let Some(tls) = tls else {
            let mut stream = Stream::Plain(tcp);
            let rest = self.handshake_as(&mut stream, client_id, auth).await?;
            return Ok((stream, rest));
        };
        let proto = self.proto();
        let peer = tcp.peer_addr()?;
        let setup = match proto {
            Proto::Nats => {
                let rest = self.read_info(&mut tcp).await?;
                if !rest.is_empty() {
                    // The server must wait for the client's handshake; bytes it sent after INFO
                    // would be read as TLS records.
                    return Err(failed(
                        peer,
                        "the TLS handshake",
                        ProtoError::Malformed {
                            proto,
                            what: "bytes after INFO, where the client's TLS handshake goes",
                        },
                    ));
                }
                self.after_info()
            }
            Proto::Hubbub | Proto::Redis | Proto::Mqtt => self,
        };
        let handshake = tls.handshake(proto, peer, tcp);
        let tls_stream = match tokio::time::timeout(self.limit(), handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(error)) => return Err(failed(peer, "the TLS handshake", error)),
            Err(_) => {
                let limit = self.limit();
                let error = ProtoError::NoReply { proto, limit };
                return Err(failed(peer, "the TLS handshake", error));
            }
        };
        let mut stream = Stream::Tls(Box::new(tls_stream));
        let rest = setup.handshake_as(&mut stream, client_id, auth).await?;
        Ok((stream, rest))
    }
}

fn failed(peer: SocketAddr, awaited: &'static str, error: ProtoError) -> io::Error {
    SessionError {
        peer: Some(peer),
        awaited,
        error,
    }
    .into()
}
