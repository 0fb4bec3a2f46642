//! An async client for the protocol: what the tools, the tests and loadgen build on.
//!
//! [`Client`] sends commands and yields [`Event`]s (acks, messages, errors). It splits into a
//! [`Sender`] and a [`Receiver`] so that one task can publish while another listens.

use std::collections::VecDeque;
use std::io;

use serde::Serialize;
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::protocol::encode::{self, Ack};
use crate::protocol::event::{parse_event, EventError};
use crate::protocol::Event;

/// Longest line the client accepts from a broker (the broker's own frame limit is 1 MiB by
/// default, and a MESSAGE adds its envelope).
pub const MAX_LINE: usize = 16 << 20;
/// Bytes reserved per read.
const READ_CHUNK: usize = 4096;

/// What can go wrong talking to a broker.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The cause (refused, unreachable, …) is the error's source, shown once by whoever
    /// prints the chain (anyhow's "Caused by").
    #[error("could not connect to the broker at {addr} (is `broker` running there?)")]
    Connect { addr: String, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("the broker sent a line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("the broker closed the connection")]
    Closed,
    #[error("the broker answered {0:?} while an acknowledgement was awaited")]
    Unexpected(Box<Event>),
    /// The broker's ERROR, in reply to an AUTH.
    #[error("the broker refused: {0}")]
    Refused(String),
}

/// A connection to a broker.
pub struct Client {
    sender: Sender,
    receiver: Receiver,
    /// Events that arrived while [`Client::subscribe_and_wait`] waited for its ack.
    backlog: VecDeque<Event>,
}

impl Client {
    /// Connects (with TCP_NODELAY, as latency matters more than packet count here).
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Self, ClientError> {
        let shown = addr.to_string();
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: shown,
                source,
            })?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps a connected socket.
    pub fn from_stream(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Self {
            sender: Sender { stream: write },
            receiver: Receiver {
                stream: read,
                buf: Vec::new(),
                start: 0,
            },
            backlog: VecDeque::new(),
        }
    }

    /// Splits into halves that can be used from different tasks.
    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }

    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    pub async fn subscribe(&mut self, channel: &str) -> io::Result<()> {
        self.sender.subscribe(channel).await
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> io::Result<()> {
        self.sender.unsubscribe(channel).await
    }

    pub async fn publish<T: Serialize + ?Sized>(
        &mut self,
        channel: &str,
        message: &T,
    ) -> io::Result<()> {
        self.sender.publish(channel, message).await
    }

    /// Subscribes and waits for the acknowledgement; returns its `count`. Messages on other
    /// channels that arrive meanwhile are kept for [`Client::next_event`].
    pub async fn subscribe_and_wait(&mut self, channel: &str) -> Result<u64, ClientError> {
        self.sender.subscribe(channel).await?;
        loop {
            match self.receiver.next_event().await? {
                Event::Subscribed { channel: c, count } if c == channel => return Ok(count),
                Event::Error { message } => {
                    return Err(ClientError::Unexpected(Box::new(Event::Error { message })))
                }
                other => self.backlog.push_back(other),
            }
        }
    }

    /// Extension: authenticates as `user` (a broker with `--users`) and waits for the reply;
    /// the broker's ERROR is [`ClientError::Refused`]. Other events that arrive meanwhile are
    /// kept for [`Client::next_event`].
    pub async fn auth(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        self.sender
            .send_raw(&encode::auth_command(user, password))
            .await?;
        loop {
            match self.receiver.next_event().await? {
                Event::Other { kind } if kind == "AUTH" => return Ok(()),
                Event::Error { message } => return Err(ClientError::Refused(message)),
                other => self.backlog.push_back(other),
            }
        }
    }

    /// The next event from the broker; [`ClientError::Closed`] when it hangs up.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        match self.backlog.pop_front() {
            Some(event) => Ok(event),
            None => self.receiver.next_event().await,
        }
    }
}

/// The sending half: every method writes one frame.
pub struct Sender {
    stream: OwnedWriteHalf,
}

impl Sender {
    pub async fn subscribe(&mut self, channel: &str) -> io::Result<()> {
        self.send_raw(&encode::subscribe_command(Ack::Subscribe, channel))
            .await
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> io::Result<()> {
        self.send_raw(&encode::subscribe_command(Ack::Unsubscribe, channel))
            .await
    }

    /// Publishes any serialisable value as the message.
    pub async fn publish<T: Serialize + ?Sized>(
        &mut self,
        channel: &str,
        message: &T,
    ) -> io::Result<()> {
        let raw = serde_json::to_string(message).map_err(io::Error::other)?;
        self.send_raw(&encode::publish_command(channel, &raw)).await
    }

    /// Publishes a message that is already JSON, byte for byte.
    pub async fn publish_raw(&mut self, channel: &str, message: &RawValue) -> io::Result<()> {
        self.send_raw(&encode::publish_command(channel, message.get()))
            .await
    }

    /// Writes bytes as they are (for tests of malformed input, and for extensions).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Closes the sending direction.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}

/// The receiving half.
pub struct Receiver {
    stream: OwnedReadHalf,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    start: usize,
}

impl Receiver {
    /// The next non-empty line from the broker, without its line ending.
    pub async fn next_line(&mut self) -> Result<&[u8], ClientError> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let (from, to) = (self.start, self.start + i);
                self.start = to + 1;
                let end = if to > from && self.buf[to - 1] == b'\r' {
                    to - 1
                } else {
                    to
                };
                if end > from {
                    return Ok(&self.buf[from..end]);
                }
                continue;
            }
            if self.buf.len() - self.start > MAX_LINE {
                return Err(ClientError::LineTooLong);
            }
            self.buf.drain(..self.start);
            self.start = 0;
            // Small to start with: loadgen holds tens of thousands of receivers.
            self.buf.reserve(READ_CHUNK.max(self.buf.len()));
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// The next event from the broker.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        let line = self.next_line().await?;
        Ok(parse_event(line)?)
    }
}
