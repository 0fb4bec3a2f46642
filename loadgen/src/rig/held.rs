//! Held subscribers on plain TCP, served from one edge-triggered epoll set in the worker's
//! thread: no task, no registration with tokio's reactor and no read buffer of their own.
//!
//! Written by hand, not as a tokio task per socket, because at 100,000 subscribers and more
//! what a held subscriber costs loadgen decides how many one machine can hold and how fast
//! they can be read. A task each held a task cell, the reactor's readiness slot and a read
//! buffer that stayed reserved at 64 KiB once used, its first pages resident; here a
//! subscriber is its socket and two empty `Vec`s ([`Conn`]), and one 64 KiB buffer serves
//! them all, since a worker reads one socket at a time (measured: 19,000 subscribers, 214 MB
//! of worker before, 22-25 MB after).
//!
//! A read that returns less than it asked for ends the turn for its socket: a TCP read takes
//! everything queued up to its length, so a short read leaves the socket empty, and data that
//! comes later raises a new edge (an end of stream that came with the data raises none of its
//! own, so an event that says the peer hung up is read to the end). So a delivery costs one
//! read, none spent learning that a socket is empty (edge-triggered's usual price), and no
//! second look at each ready socket on the next wait (level-triggered's: `sock_poll`,
//! `tcp_poll` and `ep_item_poll` were a tenth of a level-triggered worker's profile, though
//! its CPU measured the same as this one's). The epoll set is itself registered with the
//! worker's runtime through [`AsyncFd`], so the control loop and the connecting tasks share
//! the one thread. TLS subscribers keep a task each (their session state is rustls's).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest as Wake;

use crate::proto::inbound::{Deliveries, READ_CHUNK};
use crate::proto::{Proto, ProtoError, Reader};

/// Ready sockets taken from the set per `epoll_wait`.
const EVENTS: usize = 1024;
/// A frame's unread start is kept in the shared buffer's front up to this; a longer one reads
/// into its connection's own buffer until the frame is whole.
const CARRY_IN_PLACE: usize = READ_CHUNK / 2;
/// A connection's own buffer larger than this is given back once its frame is whole.
const KEEP_CARRY: usize = 4096;

/// The held subscribers of one worker.
pub struct Held {
    epoll: AsyncFd<EpollSet>,
    state: RefCell<State>,
}

/// The epoll set, as tokio's reactor needs it named.
struct EpollSet(Epoll);

impl AsRawFd for EpollSet {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

struct State {
    reader: Reader,
    /// Slot `i` is the connection whose epoll data is `i`; `None` slots are in `free`.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// The one read buffer, `READ_CHUNK` bytes.
    buf: Box<[u8]>,
    events: Vec<EpollEvent>,
}

/// One held subscriber.
struct Conn {
    socket: TcpStream,
    /// The start of a frame whose end has not arrived yet (usually empty: no allocation).
    carry: Vec<u8>,
    /// What the protocol owes the server (a NATS PONG) that the socket has not taken yet.
    owed: Vec<u8>,
}

impl Held {
    /// An empty set; must be called within the worker's runtime.
    pub fn new(proto: Proto) -> io::Result<Self> {
        let epoll = EpollSet(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
        // SAFETY: the descriptor is the `OwnedFd` inside `EpollSet`, which nothing replaces
        // or closes while the `AsyncFd` owns it.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, Wake::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Held {
            epoll,
            state: RefCell::new(State {
                reader: Reader::new(proto),
                conns: Vec::new(),
                free: Vec::new(),
                buf: vec![0; READ_CHUNK].into_boxed_slice(),
                events: vec![EpollEvent::empty(); EVENTS],
            }),
        })
    }

    /// Subscribers held now.
    pub fn len(&self) -> usize {
        let state = self.state.borrow();
        state.conns.len() - state.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes over a connected, subscribed, non-blocking socket. `early`, the bytes read past
    /// its confirmation, is parsed at once. An error means the connection already ended (the
    /// early bytes did not parse, or its PONG could not be sent): it is not held.
    pub fn add(
        &self,
        socket: TcpStream,
        early: &[u8],
        deliveries: &mut impl Deliveries,
    ) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        let state = &mut *self.state.borrow_mut();
        let mut conn = Conn {
            socket,
            carry: Vec::new(),
            owed: Vec::new(),
        };
        let used = state
            .reader
            .feed(early, |p| deliveries.payload(p), &mut conn.owed)?;
        conn.carry.extend_from_slice(&early[used..]);
        let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if !conn.owed.is_empty() && !conn.flush()? {
            flags |= EpollFlags::EPOLLOUT;
        }
        // Taken only once nothing before the registration can fail, so a slot is either
        // held or free.
        let slot = state.free.pop().unwrap_or_else(|| {
            state.conns.push(None);
            state.conns.len() - 1
        });
        if let Err(e) = self
            .epoll
            .get_ref()
            .0
            .add(&conn.socket, EpollEvent::new(flags, slot as u64))
        {
            state.free.push(slot);
            return Err(e.into());
        }
        state.conns[slot] = Some(conn);
        Ok(())
    }

    /// Serves the set for as long as the caller polls: each turn, every ready socket is read
    /// until a read comes back short (a few reads at most at the rates a broker writes to
    /// one subscriber, so no other socket waits long), each payload goes to `deliveries`, and
    /// each connection that ends goes to `lost` with why (end of stream is a
    /// [`ProtoError::Closed`]) and is dropped from the set.
    pub async fn serve(
        &self,
        deliveries: &mut impl Deliveries,
        lost: &mut impl FnMut(io::Error),
    ) -> io::Result<()> {
        loop {
            let mut ready = self.epoll.readable().await?;
            // `try_io` clears the set's readiness only when a wait finds nothing ready.
            let turn = ready.try_io(|epoll| {
                let state = &mut *self.state.borrow_mut();
                match state.turn(&epoll.get_ref().0, deliveries, lost)? {
                    0 => Err(io::ErrorKind::WouldBlock.into()),
                    n => Ok(n),
                }
            });
            if let Ok(result) = turn {
                result?;
            }
        }
    }
}

impl State {
    /// One `epoll_wait` without waiting, and each ready socket served once; returns how many
    /// were ready.
    fn turn(
        &mut self,
        epoll: &Epoll,
        deliveries: &mut impl Deliveries,
        lost: &mut impl FnMut(io::Error),
    ) -> io::Result<usize> {
        let ready = epoll.wait(&mut self.events, EpollTimeout::ZERO)?;
        for i in 0..ready {
            let (flags, slot) = (self.events[i].events(), self.events[i].data() as usize);
            let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            match conn.serve(flags, &mut self.reader, &mut self.buf, deliveries) {
                Ok(Interest::Same) => {}
                Ok(change) => {
                    let mut event = EpollEvent::new(change.flags(), slot as u64);
                    if let Err(e) = epoll.modify(&conn.socket, &mut event) {
                        self.drop_conn(epoll, slot);
                        lost(e.into());
                    }
                }
                Err(why) => {
                    self.drop_conn(epoll, slot);
                    lost(why);
                }
            }
        }
        Ok(ready)
    }

    fn drop_conn(&mut self, epoll: &Epoll, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            // Closing the socket would take it out of the set too; saying so is cheaper than
            // relying on no duplicate of the descriptor existing.
            let _ = epoll.delete(&conn.socket);
            self.free.push(slot);
        }
    }
}

/// What a connection wants to be woken for after it was served.
enum Interest {
    Same,
    /// Readable and writable: an owed reply did not fit in the socket.
    AlsoWritable,
    /// Readable only: the owed reply has been sent.
    ReadableOnly,
}

impl Interest {
    fn flags(&self) -> EpollFlags {
        let wake = match self {
            Interest::AlsoWritable => EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT,
            _ => EpollFlags::EPOLLIN,
        };
        wake | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET
    }
}

/// What one read did.
enum ReadDid {
    /// It filled what it was given: more may be queued.
    Full,
    /// It took less: the socket was emptied of data, though an end of stream that came with
    /// the data may still be waiting (the event says so: `EPOLLRDHUP`).
    Short,
    /// Nothing was there: the socket is empty until its next edge.
    Empty,
}

impl Conn {
    /// Reads once if readable, parses what is whole, and sends what is owed. An error is the
    /// connection's end.
    fn serve(
        &mut self,
        flags: EpollFlags,
        reader: &mut Reader,
        buf: &mut [u8],
        deliveries: &mut impl Deliveries,
    ) -> io::Result<Interest> {
        let was_owing = !self.owed.is_empty();
        let ending = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
        if flags.intersects(ending | EpollFlags::EPOLLIN) {
            // A short read ends the turn, unless the peer has also hung up: then read on to
            // the end of stream, which raises no edge of its own once the data is read.
            let ending = flags.intersects(ending);
            loop {
                match self.read_once(reader, buf, deliveries)? {
                    ReadDid::Full => {}
                    ReadDid::Short if ending => {}
                    ReadDid::Short | ReadDid::Empty => break,
                }
            }
        }
        let sent = self.owed.is_empty() || self.flush()?;
        // Registered for writable exactly while something is owed.
        Ok(match (was_owing, sent) {
            (false, false) => Interest::AlsoWritable,
            (true, true) => Interest::ReadableOnly,
            _ => Interest::Same,
        })
    }

    fn read_once(
        &mut self,
        reader: &mut Reader,
        buf: &mut [u8],
        deliveries: &mut impl Deliveries,
    ) -> io::Result<ReadDid> {
        let carried = self.carry.len();
        if carried > CARRY_IN_PLACE {
            return self.read_into_carry(reader, deliveries);
        }
        buf[..carried].copy_from_slice(&self.carry);
        let room = buf.len() - carried;
        let n = match self.socket.read(&mut buf[carried..]) {
            Ok(0) => return Err(self.ended(reader.proto())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(ReadDid::Full),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadDid::Empty),
            Err(e) => return Err(e),
        };
        let whole = &buf[..carried + n];
        let used = reader.feed(whole, |p| deliveries.payload(p), &mut self.owed)?;
        deliveries.read_done();
        self.carry.clear();
        self.carry.extend_from_slice(&whole[used..]);
        Ok(if n == room {
            ReadDid::Full
        } else {
            ReadDid::Short
        })
    }

    /// A frame longer than the shared buffer's share for it grows in the connection's own.
    fn read_into_carry(
        &mut self,
        reader: &mut Reader,
        deliveries: &mut impl Deliveries,
    ) -> io::Result<ReadDid> {
        let carried = self.carry.len();
        self.carry.resize(carried + READ_CHUNK, 0);
        let read = self.socket.read(&mut self.carry[carried..]);
        self.carry.truncate(carried + *read.as_ref().unwrap_or(&0));
        let n = match read {
            Ok(0) => return Err(self.ended(reader.proto())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(ReadDid::Full),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadDid::Empty),
            Err(e) => return Err(e),
        };
        let used = reader.feed(&self.carry, |p| deliveries.payload(p), &mut self.owed)?;
        deliveries.read_done();
        self.carry.drain(..used);
        if self.carry.capacity() > KEEP_CARRY && self.carry.len() <= KEEP_CARRY {
            self.carry.shrink_to(KEEP_CARRY);
        }
        Ok(if n == READ_CHUNK {
            ReadDid::Full
        } else {
            ReadDid::Short
        })
    }

    /// Writes what is owed without waiting; `true` once all of it is sent.
    fn flush(&mut self) -> io::Result<bool> {
        while !self.owed.is_empty() {
            match self.socket.write(&self.owed) {
                Ok(n) => {
                    self.owed.drain(..n);
                }
                Err(e) if retry_later(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// End of stream: a [`ProtoError::Closed`] counting the bytes of the frame it cut off.
    fn ended(&self, proto: Proto) -> io::Error {
        ProtoError::Closed {
            proto,
            unfinished: self.carry.len(),
        }
        .into()
    }
}

fn retry_later(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    /// Every payload, in order, tagged with the read that brought it.
    #[derive(Default)]
    struct Got {
        payloads: Vec<Vec<u8>>,
        reads: usize,
    }

    impl Deliveries for Got {
        fn payload(&mut self, p: &[u8]) {
            self.payloads.push(p.to_vec());
        }
        fn read_done(&mut self) {
            self.reads += 1;
        }
    }

    fn message(text: &str) -> Vec<u8> {
        format!("{{\"type\":\"MESSAGE\",\"channel\":\"c\",\"message\":\"{text}\"}}\n").into_bytes()
    }

    /// A connected pair on 127.0.0.1: (loadgen's end, the server's end).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// Serves `held` for at least a few milliseconds, then until `done` says so (or 10 s
    /// pass, which fails the test).
    async fn serve_until(
        held: &Held,
        got: &mut Got,
        lost: &mut Vec<io::Error>,
        done: impl Fn(&Got, &[io::Error]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut on_lost = |e| lost.push(e);
            let turn =
                tokio::time::timeout(Duration::from_millis(5), held.serve(got, &mut on_lost));
            if let Ok(ended) = turn.await {
                panic!("the set's serving ended: {ended:?}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out with {} payloads, lost {lost:?}",
                got.payloads.len()
            );
            if done(got, lost) {
                return;
            }
        }
    }

    /// Frames cut anywhere, a frame longer than the shared buffer, early bytes, and an end in
    /// the middle of a frame that counts what had arrived of it.
    #[tokio::test]
    async fn frames_arrive_whole_however_the_bytes_are_cut() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (client, mut server) = pair(&listener);
        let held = Held::new(Proto::Hubbub).unwrap();
        let mut got = Got::default();
        let mut early = message("early");
        early.extend_from_slice(&message("half")[..10]);
        held.add(client, &early, &mut got).unwrap();
        assert_eq!(got.payloads, [b"early".to_vec()]);
        assert_eq!(held.len(), 1);

        let big = "x".repeat(3 * READ_CHUNK);
        let mut stream = message("half")[10..].to_vec();
        stream.extend(message("one"));
        stream.extend(message(&big));
        stream.extend(message("two"));
        let mut lost = Vec::new();
        for piece in stream.chunks(7_777) {
            server.write_all(piece).unwrap();
            serve_until(&held, &mut got, &mut lost, |_, _| true).await;
        }
        serve_until(&held, &mut got, &mut lost, |g, _| g.payloads.len() == 5).await;
        let want: Vec<Vec<u8>> = ["early", "half", "one", &big, "two"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(got.payloads, want);

        server.write_all(&message("cut off")[..12]).unwrap();
        drop(server);
        serve_until(&held, &mut got, &mut lost, |_, l| !l.is_empty()).await;
        assert!(
            matches!(
                ProtoError::found_in(&lost[0]),
                Some(ProtoError::Closed {
                    proto: Proto::Hubbub,
                    unfinished: 12
                })
            ),
            "{:?}",
            lost[0]
        );
        assert_eq!(lost.len(), 1);
        assert_eq!(held.len(), 0);
        assert_eq!(got.payloads.len(), 5);
    }

    /// A NATS server's PING is answered with PONG, from the early bytes and from a read.
    #[tokio::test]
    async fn what_the_protocol_owes_is_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (client, mut server) = pair(&listener);
        let held = Held::new(Proto::Nats).unwrap();
        let mut got = Got::default();
        held.add(client, b"PING\r\nMSG c 1 2\r\nhi\r\n", &mut got)
            .unwrap();
        server.write_all(b"MSG c 1 3\r\nyou\r\nPING\r\n").unwrap();
        let mut lost = Vec::new();
        serve_until(&held, &mut got, &mut lost, |g, _| g.payloads.len() == 2).await;
        serve_until(&held, &mut got, &mut lost, |_, _| true).await;
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answered = [0; 12];
        server.read_exact(&mut answered).unwrap();
        assert_eq!(&answered, b"PONG\r\nPONG\r\n");
        assert_eq!(got.payloads, [b"hi".to_vec(), b"you".to_vec()]);
        assert!(lost.is_empty());
    }

    /// Many sockets, each with its own messages; one that ends leaves the rest served, and
    /// its slot is used again.
    #[tokio::test]
    async fn each_socket_gets_exactly_its_own() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let held = Held::new(Proto::Hubbub).unwrap();
        let mut got = Got::default();
        let mut servers = Vec::new();
        for _ in 0..200 {
            let (client, server) = pair(&listener);
            held.add(client, b"", &mut got).unwrap();
            servers.push(server);
        }
        for (i, server) in servers.iter_mut().enumerate() {
            server.write_all(&message(&format!("m{i}"))).unwrap();
        }
        let mut lost = Vec::new();
        serve_until(&held, &mut got, &mut lost, |g, _| g.payloads.len() == 200).await;
        let mut texts: Vec<String> = got
            .payloads
            .iter()
            .map(|p| String::from_utf8(p.clone()).unwrap())
            .collect();
        texts.sort_unstable();
        let mut want: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        want.sort_unstable();
        assert_eq!(texts, want);

        drop(servers.remove(17));
        serve_until(&held, &mut got, &mut lost, |_, l| l.len() == 1).await;
        assert_eq!(held.len(), 199);
        let (client, mut server) = pair(&listener);
        held.add(client, b"", &mut got).unwrap();
        assert_eq!(
            held.state.borrow().conns.len(),
            200,
            "the freed slot is used again"
        );
        server.write_all(&message("again")).unwrap();
        serve_until(&held, &mut got, &mut lost, |g, _| g.payloads.len() == 201).await;
        assert_eq!(got.payloads[200], b"again");
        assert_eq!(lost.len(), 1);
    }
}
