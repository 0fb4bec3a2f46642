//! Bursts: a publisher that every `--burst-every` writes `--burst-messages` messages at once on
//! a channel of their own, and readers that read them as fast as they can. Each reader must
//! receive every message of every burst exactly once and never be cut: a burst that a reader
//! keeps up with passes the broker's soft limit only for the moment it takes to read.
//!
//! Message `seq` of burst `id` carries `<id>:<seq>:xxxx…` (the stamp format, with the burst's
//! number where a send time goes), so a reader counts each burst's messages apart; the
//! [`Ledger`] holds, per burst, what was sent and what each reader received.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::shared::{Opts, Shared, RETRY_AFTER};
use crate::model::soak::Burst;
use crate::proto::inbound::{Deliveries, Inbound};
use crate::proto::{Frame, Proto};
use crate::rig::stamp;

/// The channel of the bursts: the burst readers and the slow consumers are on it, and no
/// healthy subscriber.
pub const CHANNEL: &str = "soak.burst";
/// How long the broker may take to answer the PING written after a burst: the PONG comes
/// once it has read the whole burst.
const PONG_WITHIN: Duration = Duration::from_secs(30);
/// `{"command":"PING"}`: its PONG is queued behind everything the broker owes the publisher.
const PING: &[u8] = b"{\"command\":\"PING\"}\n";

/// Every burst sent, and what each reader received of it. It grows by one entry a burst
/// (`--duration` ÷ `--burst-every` in all), so it is bounded by the run.
pub struct Ledger {
    bursts: Mutex<Vec<Burst>>,
    readers: usize,
}

impl Ledger {
    pub fn new(readers: usize) -> Ledger {
        Ledger {
            bursts: Mutex::default(),
            readers,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Burst>> {
        self.bursts.lock().expect("burst ledger lock")
    }

    /// A burst of `messages` about to be written at `at_ms`: its number.
    fn open(&self, at_ms: u64, messages: u64) -> u64 {
        let mut bursts = self.lock();
        let id = bursts.len() as u64;
        bursts.push(Burst {
            id,
            at_ms,
            messages,
            sent_whole: false,
            received: vec![0; self.readers],
        });
        id
    }

    fn sent_whole(&self, id: u64) {
        if let Some(b) = self.lock().get_mut(id as usize) {
            b.sent_whole = true;
        }
    }

    /// Reader `reader` received `n` messages of each `(burst, n)`; a number no burst has is
    /// dropped (it cannot be: the ledger opens a burst before it is written).
    fn received(&self, reader: usize, counts: &[(u64, u64)]) {
        let mut bursts = self.lock();
        for &(id, n) in counts {
            if let Some(slot) = bursts
                .get_mut(id as usize)
                .and_then(|b| b.received.get_mut(reader))
            {
                *slot += n;
            }
        }
    }

    pub fn snapshot(&self) -> Vec<Burst> {
        self.lock().clone()
    }

    /// Every burst has been received whole (or none was sent).
    pub fn settled(&self) -> bool {
        self.lock().iter().all(Burst::complete)
    }
}

/// Writes a burst every `--burst-every` (the first one interval after the start) until `last`
/// is cancelled, reconnecting when its connection fails; a burst it could not write whole is
/// marked so. `last` is heeded between bursts only, so that the last burst is whole: one cut
/// off in the middle would read as lost.
pub async fn publish(
    shared: Arc<Shared>,
    ledger: Arc<Ledger>,
    opts: Opts,
    last: CancellationToken,
) {
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    let mut next = tokio::time::Instant::now() + opts.burst_every;
    let mut frames = Vec::new();
    loop {
        let Some((stream, buf)) = conn.as_mut() else {
            conn = connect(&shared).await;
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = last.cancelled() => return,
        }
        next = (next + opts.burst_every).max(tokio::time::Instant::now());
        let at_ms = shared.origin.elapsed().as_millis() as u64;
        let id = ledger.open(at_ms, opts.burst_messages);
        frames.clear();
        for seq in 0..opts.burst_messages {
            let payload = stamp::payload(id, seq, opts.burst_size as usize);
            Proto::Hubbub.encode_publish(&mut frames, CHANNEL, &payload);
        }
        frames.extend_from_slice(PING);
        let written = async {
            stream.write_all(&frames).await?;
            tokio::time::timeout(PONG_WITHIN, until_pong(stream, buf))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
        };
        match written.await {
            Ok(()) => ledger.sent_whole(id),
            Err(_) => conn = None,
        }
    }
}

/// A publisher's connection, which has spoken (a PING, answered) so that the broker does not
/// take it for a silent one while it waits for its first burst.
async fn connect(shared: &Shared) -> Option<(TcpStream, Vec<u8>)> {
    shared
        .within_timeout(async {
            let mut stream = TcpStream::connect(shared.target).await?;
            stream.set_nodelay(true)?;
            stream.write_all(PING).await?;
            let mut buf = Vec::new();
            until_pong(&mut stream, &mut buf).await?;
            Ok((stream, buf))
        })
        .await
}

/// Reads until a PONG; an ERROR or the end of the connection is an error.
async fn until_pong(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        while let Some((frame, len)) = Proto::Hubbub.parse(buf)? {
            let pong = frame == Frame::Pong;
            buf.drain(..len);
            if pong {
                return Ok(());
            }
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Reader `reader`: subscribed to the bursts, reading them as fast as it can; a connection
/// that ends is counted as cut, and replaced.
pub async fn read(shared: Arc<Shared>, ledger: Arc<Ledger>, reader: usize) {
    loop {
        let Some((mut stream, early)) = shared.subscribed(CHANNEL, None).await else {
            continue;
        };
        let mut tally = Tally {
            ledger: &ledger,
            shared: &shared,
            reader,
            counts: Vec::new(),
        };
        let why = Inbound::new(Proto::Hubbub, early)
            .serve(&mut stream, &mut tally)
            .await;
        tracing::debug!(reader, error = %why, "burst reader's connection ended");
        shared.count(|c| c.burst_reader_cuts += 1);
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// One reader's counts of the read in hand, by burst, passed to the ledger once per read.
struct Tally<'a> {
    ledger: &'a Ledger,
    shared: &'a Shared,
    reader: usize,
    counts: Vec<(u64, u64)>,
}

impl Deliveries for Tally<'_> {
    fn payload(&mut self, payload: &[u8]) {
        let Some(id) = stamp::sent_ns(payload) else {
            return;
        };
        match self.counts.iter_mut().find(|(b, _)| *b == id) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((id, 1)),
        }
    }

    fn read_done(&mut self) {
        if self.counts.is_empty() {
            return;
        }
        self.ledger.received(self.reader, &self.counts);
        let n: u64 = self.counts.iter().map(|(_, n)| n).sum();
        self.shared.count(|c| c.burst_messages_received += n);
        self.counts.clear();
    }
}
