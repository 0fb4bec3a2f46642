//! A connection on OS threads with blocking sockets, for the rig's open-loop publishers (see
//! `rig::publish`: tokio's millisecond timer would make them late): one thread writes the
//! messages, another reads what the server sends and writes the replies it owes.
//!
//! Plain TCP is the socket itself, cloned per thread. TLS is one session for both directions,
//! so it is shared behind a lock that is never held across a system call: a writer encrypts
//! under the lock and writes the records after letting go, and the reader reads the socket
//! first and decrypts under the lock. A reader blocked on a writer blocked on a full socket
//! could otherwise stop reading the replies that would let the server drain it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use rustls::ClientConnection;

use super::stream::Stream;

/// Bytes read from the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// One handle on a connection; [`try_clone`](Blocking::try_clone) makes one per thread.
/// Writers from several threads must take turns (a lock of the caller's): each write is whole
/// records, but two writes at once would interleave them.
#[derive(Debug)]
pub enum Blocking {
    Plain(TcpStream),
    Tls {
        tcp: TcpStream,
        session: Arc<Mutex<ClientConnection>>,
        /// What this handle read from the socket and has not yet fed to the session.
        raw: Vec<u8>,
    },
}

impl Blocking {
    /// Takes `stream` off the runtime into blocking mode. Anything the TLS session had already
    /// decrypted stays in it and is read first.
    pub fn from_stream(stream: Stream) -> io::Result<Self> {
        let blocking = |tcp: tokio::net::TcpStream| -> io::Result<TcpStream> {
            let tcp = tcp.into_std()?;
            tcp.set_nonblocking(false)?;
            Ok(tcp)
        };
        Ok(match stream {
            Stream::Plain(tcp) => Blocking::Plain(blocking(tcp)?),
            Stream::Tls(tls) => {
                let (tcp, mut session) = (*tls).into_inner();
                // Drained after every write (below), so what it holds is one write's worth.
                session.set_buffer_limit(None);
                Blocking::Tls {
                    tcp: blocking(tcp)?,
                    session: Arc::new(Mutex::new(session)),
                    raw: Vec::new(),
                }
            }
        })
    }

    /// Another handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Blocking::Plain(tcp) => Blocking::Plain(tcp.try_clone()?),
            Blocking::Tls { tcp, session, .. } => Blocking::Tls {
                tcp: tcp.try_clone()?,
                session: session.clone(),
                raw: Vec::new(),
            },
        })
    }

    /// Writes all of `bytes` (encrypted, with TLS).
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Blocking::Plain(tcp) => tcp.write_all(bytes),
            Blocking::Tls { tcp, session, .. } => {
                let mut records = Vec::with_capacity(bytes.len() + 64);
                {
                    let mut session = lock(session)?;
                    session.writer().write_all(bytes)?;
                    while session.wants_write() {
                        session.write_tls(&mut records)?;
                    }
                }
                tcp.write_all(&records)
            }
        }
    }
}

fn lock(
    session: &Mutex<ClientConnection>,
) -> io::Result<std::sync::MutexGuard<'_, ClientConnection>> {
    session
        .lock()
        .map_err(|_| io::Error::other("a thread panicked holding the TLS session"))
}

impl Read for Blocking {
    /// Reads what the server sent (decrypted, with TLS); 0 at its end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (tcp, session, raw) = match self {
            Blocking::Plain(tcp) => return tcp.read(buf),
            Blocking::Tls { tcp, session, raw } => (tcp, session, raw),
        };
        loop {
            let mut session = lock(session)?;
            match session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // A record at a time: the session holds only so much decrypted text, and what it
            // holds is handed out above before more is fed.
            if !raw.is_empty() {
                let mut unfed = &raw[..];
                let fed = session.read_tls(&mut unfed)?;
                raw.drain(..fed);
                session
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if fed == 0 {
                    return Ok(0); // after the server's close_notify
                }
                continue;
            }
            drop(session);
            let mut chunk = [0u8; READ_CHUNK];
            let n = tcp.read(&mut chunk)?;
            if n == 0 {
                return Ok(0);
            }
            raw.extend_from_slice(&chunk[..n]);
        }
    }
}
