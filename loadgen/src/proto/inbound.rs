//! The inbound side of a simulated client: one read buffer, the protocol's [`Reader`], and
//! the replies the protocol owes the server (NATS PING → PONG). Every kind of client loadgen
//! runs (held subscribers, burst subscribers and publishers, rate publishers) reads through
//! this, so the read → parse → reply loop is written once.

use std::io::{self, Read};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Proto, ProtoError, Reader};

/// Bytes reserved per read.
pub const READ_CHUNK: usize = 64 * 1024;

/// What a connection's delivered messages go to.
pub trait Deliveries {
    /// One delivered message's payload.
    fn payload(&mut self, payload: &[u8]);
    /// Every payload of one read has been passed on (to publish a count once per read
    /// rather than once per message).
    fn read_done(&mut self) {}
}

/// Payloads are ignored (a publisher's connection, which gets replies but no messages).
impl Deliveries for () {
    fn payload(&mut self, _: &[u8]) {}
}

/// A connection's read buffer and parser.
#[derive(Debug)]
pub struct Inbound {
    reader: Reader,
    /// Read but not yet parsed: the start of an incomplete frame, or a whole read.
    buf: Vec<u8>,
    /// Bytes the protocol requires the client to send back.
    reply: Vec<u8>,
}

impl Inbound {
    /// Starts with `early`: bytes read past the session's setup (see
    /// [`Proto::subscribe`](super::Proto::subscribe)).
    pub fn new(proto: Proto, early: Vec<u8>) -> Self {
        Self {
            reader: Reader::new(proto),
            buf: early,
            reply: Vec::new(),
        }
    }

    /// Parses every complete frame read so far, passing each message's payload to
    /// `deliveries`; returns the reply the protocol requires (empty if none), which the
    /// caller writes and then [`clear_reply`](Inbound::clear_reply)s.
    pub fn parse(&mut self, deliveries: &mut impl Deliveries) -> Result<&[u8], ProtoError> {
        let used = self
            .reader
            .feed(&self.buf, |p| deliveries.payload(p), &mut self.reply)?;
        self.buf.drain(..used);
        deliveries.read_done();
        Ok(&self.reply)
    }

    /// Moves the owed reply out (for a caller that queues it behind its own writes).
    pub fn take_reply(&mut self, into: &mut Vec<u8>) {
        into.append(&mut self.reply);
    }

    pub fn clear_reply(&mut self) {
        self.reply.clear();
    }

    /// Reads once from `stream` into the buffer; `false` at end of stream. Cancel-safe.
    pub async fn read_from<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> io::Result<bool> {
        self.buf.reserve(READ_CHUNK);
        Ok(stream.read_buf(&mut self.buf).await? > 0)
    }

    /// [`read_from`](Inbound::read_from) for a blocking socket.
    pub fn read_blocking(&mut self, stream: &mut impl Read) -> io::Result<bool> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let n = stream.read(&mut self.buf[start..]);
        self.buf.truncate(start + *n.as_ref().unwrap_or(&0));
        Ok(n? > 0)
    }

    /// Serves the connection until it ends: parses what arrives, passes every payload to
    /// `deliveries` and writes what the protocol requires. Returns why it ended: end of
    /// stream is a [`ProtoError::Closed`] (of kind [`io::ErrorKind::UnexpectedEof`]) that
    /// counts the bytes of a frame it cut off; a frame that does not parse is of kind
    /// [`io::ErrorKind::InvalidData`].
    pub async fn serve<S>(&mut self, stream: &mut S, deliveries: &mut impl Deliveries) -> io::Error
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            match self.parse(deliveries) {
                Ok(reply) if !reply.is_empty() => {
                    // The flush sends what a TLS session buffered; plain TCP has nothing to.
                    if let Err(e) = stream.write_all(reply).await {
                        return e;
                    }
                    if let Err(e) = stream.flush().await {
                        return e;
                    }
                    self.clear_reply();
                }
                Ok(_) => {}
                Err(e) => return e.into(),
            }
            match self.read_from(stream).await {
                Ok(true) => {}
                Ok(false) => {
                    return ProtoError::Closed {
                        proto: self.reader.proto(),
                        unfinished: self.buf.len(),
                    }
                    .into()
                }
                Err(e) => return e,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<Vec<u8>>, usize);

    impl Deliveries for Collect {
        fn payload(&mut self, p: &[u8]) {
            self.0.push(p.to_vec());
        }
        fn read_done(&mut self) {
            self.1 += 1;
        }
    }

    #[tokio::test]
    async fn serves_payloads_and_answers_pings_until_the_end() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        server
            .write_all(b"MSG c 1 2\r\nhi\r\nPING\r\nMSG c 1 3\r\nyou\r\n")
            .await
            .unwrap();
        drop(server.shutdown().await);
        let mut inbound = Inbound::new(Proto::Nats, b"MSG c 1 5\r\nearly\r\n".to_vec());
        let mut got = Collect(Vec::new(), 0);
        let why = inbound.serve(&mut client, &mut got).await;
        assert_eq!(why.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            matches!(
                ProtoError::found_in(&why),
                Some(ProtoError::Closed { unfinished: 0, .. })
            ),
            "{why}"
        );
        assert_eq!(got.0, [&b"early"[..], b"hi", b"you"]);
        assert!(got.1 >= 2);
        drop(client);
        let mut answered = Vec::new();
        server.read_to_end(&mut answered).await.unwrap();
        assert_eq!(answered, b"PONG\r\n");
    }

    /// A connection cut off in the middle of a delivery says how much of it had arrived.
    #[tokio::test]
    async fn an_end_in_the_middle_of_a_frame_counts_its_bytes() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        server.write_all(b"MSG c 1 5\r\nea").await.unwrap();
        drop(server);
        let why = Inbound::new(Proto::Nats, Vec::new())
            .serve(&mut client, &mut Collect(Vec::new(), 0))
            .await;
        assert_eq!(why.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            why.to_string(),
            "nats server closed the connection in the middle of a frame (13 bytes of an \
             unfinished frame)"
        );
    }
}
