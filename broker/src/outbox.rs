//! A connection's pending output: a queue bounded in bytes.
//!
//! Publishers on any task push shared frames in; the connection's own task takes everything
//! queued at once and writes it in one `writev`. Memory per connection is bounded by the
//! slow-consumer limit, and an idle outbox holds no buffer.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::pending::{OverSince, PendingLimits};
use crate::write::write_frames;

/// Frames an outbox may hold for [`Wakes::finish`] to write them itself. More than this
/// is a burst, which the connection's own task writes, so that bursts to many subscribers
/// spread over every worker thread.
const WRITE_THROUGH_FRAMES: usize = 4;
/// And at most this many bytes: a pipelining publisher's read is gathered into one frame of
/// up to 64 KiB per channel (`registry::Gather`), and writing that to a hundred subscribers
/// from the publisher's thread would leave the other cores idle.
const WRITE_THROUGH_BYTES: usize = 4096;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// This push took the connection past its limit: it is now a slow consumer.
    Overflowed,
    /// The connection had already overflowed or closed; the frame was dropped.
    Closed,
}

/// The bounded output queue of one connection.
///
/// Overflow policy: when a push would take the bytes pending (queued plus taken but not yet
/// written) past the hard limit, or past the soft limit once they have stayed past it for its
/// time ([`PendingLimits`]), the outbox drops everything queued, refuses all further frames,
/// and wakes its connection, which then tells the client why where its socket allows and
/// disconnects it as a slow consumer. The publisher and the other subscribers are never held
/// up by it.
///
/// The wake-up is a flag and the one connection task's [`Waker`], kept under the same lock as
/// the queue, rather than a `tokio::sync::Notify`: waiting on a `Notify` needs a `Notified`
/// future inside the connection's task, which every idle connection would carry (see
/// [`Outbox::poll_ready`]).
#[derive(Debug)]
pub struct Outbox {
    /// Shared by every outbox of a broker: a pointer here, not three fields.
    limits: Arc<PendingLimits>,
    state: Mutex<State>,
    /// The broker is shutting down: the connection is to end. Outside the lock so that the
    /// connection can look at it first on every wake-up for next to nothing.
    shut: AtomicBool,
    /// The client's socket, for [`Wakes`] to write small deliveries through (`None` for the
    /// upstream link, which always writes from its own task).
    socket: Option<TcpStream>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    pending: usize,
    closed: bool,
    overflowed: bool,
    /// Something was pushed (or the outbox overflowed) since the connection last looked.
    signalled: bool,
    /// The connection task, while it waits for `signalled`.
    waker: Option<Waker>,
    /// The connection task holds taken frames not yet fully written: until it has, nothing
    /// else may write to the socket, or frames would go out of order.
    busy: bool,
    /// When `pending` went past the soft limit (0: it is under it).
    over_since: OverSince,
}

impl State {
    /// Sets `signalled` and hands back the waker to wake once the lock is released.
    fn signal(&mut self) -> Option<Waker> {
        self.signalled = true;
        self.waker.take()
    }
}

/// Connections to write to, or to wake, once the caller holds no lock: the wake-ups one read
/// calls for, gathered and passed down explicitly (a read's `registry::Gather` holds one, and
/// the upstream link's forwarding pushes into it). [`Wakes::finish`] (or drop) sees to them:
/// each connection either gets its few frames written right there, or is woken once to write
/// its burst itself.
///
/// Why deferred: woken at once, a subscriber's task is picked up by the other worker thread,
/// drains what little is there, writes it and sleeps, and the next push wakes it again: a
/// wake-up and a `writev` per push. Woken after the whole read, it drains the read in one
/// `writev` (NATS flushes the clients a read touched in the same way).
///
/// Why written through: at a moderate rate a read holds one publish, and waking a hundred
/// subscriber tasks to write one small frame each costs more than the writes, most of all
/// when the wake-ups cross to another core that is busy (measured: p99 0.60 ms with two
/// worker threads against 0.38 with one, at 2,000 msg/s to 100 subscribers). Writing up to
/// [`WRITE_THROUGH_FRAMES`] frames from the publisher's thread, as Redis writes every reply
/// from its one loop, saves the wake-ups; bursts still go to the subscribers' own tasks.
#[derive(Debug, Default)]
pub struct Wakes {
    due: Vec<(Arc<Outbox>, Waker)>,
}

impl Wakes {
    /// Queues `frame` on `outbox`, keeping the wake-up it calls for until [`Wakes::finish`].
    pub fn push(&mut self, outbox: &Arc<Outbox>, frame: Bytes) -> Push {
        let (push, waker) = outbox.push_quiet(frame);
        if let Some(waker) = waker {
            self.due.push((Arc::clone(outbox), waker));
        }
        push
    }

    /// Writes through, or wakes, every connection a push left due. It writes to sockets: call
    /// it with no lock held.
    pub fn finish(&mut self) {
        for (outbox, waker) in self.due.drain(..) {
            if let Some(waker) = outbox.write_through(waker) {
                waker.wake();
            }
        }
    }
}

impl Drop for Wakes {
    /// A wake-up is never lost. While unwinding (a task's panic does not end its worker
    /// thread) only wake: writing through takes an outbox lock the panic may have poisoned,
    /// and a second panic would abort the process.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (_, waker) in self.due.drain(..) {
                waker.wake();
            }
        } else {
            self.finish();
        }
    }
}

/// The frames [`Outbox::take`] moved out, or why there are none.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Frames,
    /// The limit was passed; the connection must be dropped as a slow consumer.
    Overflowed,
}

impl Outbox {
    /// An empty outbox that lets at most `limit` bytes wait, written only by its owner.
    pub fn new(limit: usize) -> Self {
        Self::with_limits(Arc::new(PendingLimits::hard_only(limit)))
    }

    /// An empty outbox held to `limits`, written only by its owner.
    pub fn with_limits(limits: Arc<PendingLimits>) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
            shut: AtomicBool::new(false),
            socket: None,
        }
    }

    /// An empty outbox for a client on `socket`, which it owns: the connection reads and
    /// writes through [`socket`](Outbox::socket), and [`Wakes`] may write through it too.
    pub fn with_socket(limits: Arc<PendingLimits>, socket: TcpStream) -> Self {
        let mut outbox = Self::with_limits(limits);
        outbox.socket = Some(socket);
        outbox
    }

    /// The client's socket.
    ///
    /// # Panics
    /// For an outbox made without one ([`Outbox::new`]).
    pub fn socket(&self) -> &TcpStream {
        self.socket.as_ref().expect("an outbox made with_socket")
    }

    /// The client's address, where the outbox holds its socket (a plain client); `None` for
    /// a TLS client or the upstream link, whose sockets their tasks hold.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        let socket = self.socket.as_ref()?;
        socket.peer_addr().ok().map(|a| a.ip())
    }

    /// For [`Wakes::finish`]: writes what is queued straight to the socket when it is
    /// a few frames, the connection's task holds none unwritten, and the socket takes them
    /// all; the task then sleeps on. Otherwise returns `waker`, to be woken to do it.
    fn write_through(&self, waker: Waker) -> Option<Waker> {
        let Some(socket) = &self.socket else {
            return Some(waker);
        };
        let mut state = self.state.lock().expect("outbox lock");
        if state.closed
            || state.busy
            || state.queue.len() > WRITE_THROUGH_FRAMES
            || state.pending > WRITE_THROUGH_BYTES
        {
            return Some(waker);
        }
        // Under the lock, so that neither the task nor another read's wake-ups can take frames
        // between these and the socket. An error is left for the task to meet.
        let Ok(written) = write_frames(socket, &mut state.queue) else {
            return Some(waker);
        };
        state.pending -= written;
        let pending = state.pending;
        self.limits.budget.change(pending + written, pending);
        self.limits.settle(pending, &mut state.over_since);
        if !state.queue.is_empty() {
            return Some(waker);
        }
        // All out: what woke nobody needs to wake anybody. Give the queue's memory back, as
        // an idle connection holds none.
        state.queue = VecDeque::new();
        state.signalled = false;
        if state.waker.is_none() {
            state.waker = Some(waker);
        }
        None
    }

    /// Queues a frame and wakes the connection at once if it was idle.
    pub fn push(&self, frame: Bytes) -> Push {
        let (push, waker) = self.push_quiet(frame);
        if let Some(waker) = waker {
            waker.wake();
        }
        push
    }

    /// Queues a frame; returns the connection's waker when it was idle and must be woken
    /// (once the caller holds no lock), as [`Wakes`] does.
    fn push_quiet(&self, frame: Bytes) -> (Push, Option<Waker>) {
        let mut state = self.state.lock().expect("outbox lock");
        if state.closed {
            return (Push::Closed, None);
        }
        let pending = state.pending + frame.len();
        if self.limits.exceeded(pending, &mut state.over_since) {
            state.closed = true;
            state.overflowed = true;
            state.queue = VecDeque::new();
            return (Push::Overflowed, state.signal());
        }
        self.limits.budget.change(state.pending, pending);
        state.pending = pending;
        let was_empty = state.queue.is_empty();
        state.queue.push_back(frame);
        // The connection drains the whole queue when it wakes, so one wake-up per burst is enough.
        let waker = if was_empty { state.signal() } else { None };
        (Push::Queued, waker)
    }

    /// Ready once something was pushed (or the outbox overflowed) since the last time this
    /// returned ready; otherwise keeps `cx`'s waker to wake when that happens. Only the last
    /// caller's waker is kept: an outbox has one connection task waiting on it.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock().expect("outbox lock");
        if std::mem::take(&mut state.signalled) {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits until [`poll_ready`](Outbox::poll_ready) is ready.
    pub async fn ready(&self) {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Moves every queued frame to the back of `into`.
    pub fn take(&self, into: &mut VecDeque<Bytes>) -> Taken {
        let mut state = self.state.lock().expect("outbox lock");
        if state.overflowed {
            return Taken::Overflowed;
        }
        if into.is_empty() {
            std::mem::swap(into, &mut state.queue);
        } else {
            into.append(&mut state.queue);
        }
        state.busy = !into.is_empty();
        Taken::Frames
    }

    /// Records that `n` taken bytes reached the socket, and whether the taker still holds
    /// frames not fully written (`unfinished`).
    pub fn written(&self, n: usize, unfinished: bool) {
        let mut state = self.state.lock().expect("outbox lock");
        state.busy = unfinished;
        let before = state.pending;
        state.pending = before.saturating_sub(n);
        let pending = state.pending;
        self.limits.budget.change(before, pending);
        self.limits.settle(pending, &mut state.over_since);
        if state.pending == 0 && state.queue.capacity() > 64 {
            // A burst is over: give the memory back rather than hold it while idle.
            state.queue = VecDeque::new();
        }
    }

    /// Tells the connection to end (the broker is shutting down), waking it if it waits.
    pub fn shut(&self) {
        self.shut.store(true, Ordering::Release);
        let waker = self.state.lock().expect("outbox lock").signal();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether [`shut`](Outbox::shut) was called.
    pub fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// Refuses further frames (the connection is going away).
    pub fn close(&self) {
        let mut state = self.state.lock().expect("outbox lock");
        state.closed = true;
        state.queue = VecDeque::new();
        // The waker holds the connection's task alive; the outbox may outlive it briefly.
        state.waker = None;
    }
}

impl Drop for Outbox {
    /// What it still held is no longer held: taken off the broker's memory budget.
    fn drop(&mut self) {
        let state = self.state.get_mut();
        let pending = state.map_or_else(|e| e.into_inner().pending, |s| s.pending);
        self.limits.budget.change(pending, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_in_order_until_the_limit_then_refuses_everything() {
        let outbox = Arc::new(Outbox::new(10));
        assert_eq!(outbox.push(Bytes::from_static(b"1234")), Push::Queued);
        assert_eq!(outbox.push(Bytes::from_static(b"5678")), Push::Queued);
        let mut got = VecDeque::new();
        assert_eq!(outbox.take(&mut got), Taken::Frames);
        assert_eq!(got, [&b"1234"[..], &b"5678"[..]]);
        // Taken but unwritten bytes still count against the limit.
        assert_eq!(outbox.push(Bytes::from_static(b"abc")), Push::Overflowed);
        assert_eq!(outbox.push(Bytes::from_static(b"a")), Push::Closed);
        assert_eq!(outbox.take(&mut got), Taken::Overflowed);
    }

    /// A waker that counts how often it was woken.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_wake_each_connection_once_when_finished() {
        let counter = std::sync::Arc::new(Counter(0.into()));
        let waker = Waker::from(counter.clone());
        let outbox = Arc::new(Outbox::new(100));
        let woken = || counter.0.load(std::sync::atomic::Ordering::SeqCst);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        let mut wakes = Wakes::default();
        for frame in [&b"1"[..], b"2", b"3"] {
            assert_eq!(wakes.push(&outbox, Bytes::from_static(frame)), Push::Queued);
        }
        assert_eq!(woken(), 0, "woken before the wake-ups are finished");
        wakes.finish();
        assert_eq!(woken(), 1);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_ready());
        // A push of its own wakes at once.
        let mut got = VecDeque::new();
        outbox.take(&mut got);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(outbox.push(Bytes::from_static(b"4")), Push::Queued);
        assert_eq!(woken(), 2);
    }

    #[test]
    fn wakes_dropped_by_a_panic_still_wake() {
        let counter = std::sync::Arc::new(Counter(0.into()));
        let waker = Waker::from(counter.clone());
        let woken = || counter.0.load(std::sync::atomic::Ordering::SeqCst);
        let outbox = Arc::new(Outbox::new(100));
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut wakes = Wakes::default();
            assert_eq!(wakes.push(&outbox, Bytes::from_static(b"1")), Push::Queued);
            panic!("a bug in a publish");
        }));
        assert!(panicked.is_err());
        assert_eq!(woken(), 1, "the deferred wake-up was made while unwinding");
    }

    #[test]
    fn written_bytes_free_room() {
        let outbox = Arc::new(Outbox::new(10));
        assert_eq!(outbox.push(Bytes::from_static(b"12345678")), Push::Queued);
        let mut got = VecDeque::new();
        outbox.take(&mut got);
        outbox.written(8, false);
        assert_eq!(outbox.push(Bytes::from_static(b"12345678")), Push::Queued);
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiter_once_per_burst() {
        let outbox = std::sync::Arc::new(Outbox::new(100));
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.ready().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(outbox.push(Bytes::from_static(b"1")), Push::Queued);
        waiter.await.unwrap();
        // Pushed before anyone waits: the next wait returns at once, and only once.
        let mut got = VecDeque::new();
        outbox.take(&mut got);
        assert_eq!(outbox.push(Bytes::from_static(b"2")), Push::Queued);
        outbox.ready().await;
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.poll_ready(&mut cx), Poll::Pending);
    }

    /// `Waker::noop` needs Rust 1.85; the crate supports 1.80.
    fn noop_waker() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        Waker::from(std::sync::Arc::new(Noop))
    }

    #[test]
    fn a_closed_outbox_drops_frames() {
        let outbox = Arc::new(Outbox::new(10));
        outbox.close();
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Push::Closed);
    }

    /// A connected pair on loopback: the broker's end in an outbox, and the client's end
    /// (with a read timeout, so that a frame that never comes fails the test).
    async fn socket_pair() -> (Arc<Outbox>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = TcpStream::from_std(server).unwrap();
        // tokio writes only to a socket its reactor has seen writable, as a connection's
        // socket has been long before anything is delivered to it.
        server.writable().await.unwrap();
        (
            Arc::new(Outbox::with_socket(
                Arc::new(PendingLimits::hard_only(1 << 20)),
                server,
            )),
            client,
        )
    }

    /// A waker that counts its wake-ups, left with `outbox` as its waiting connection's;
    /// and the count.
    fn parked(outbox: &Outbox) -> (Waker, impl Fn() -> usize) {
        let counter = Arc::new(Counter(0.into()));
        let waker = Waker::from(counter.clone());
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        (waker, move || {
            counter.0.load(std::sync::atomic::Ordering::SeqCst)
        })
    }

    fn read_exactly(client: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
        use std::io::Read;
        let mut buf = vec![0; n];
        client.read_exact(&mut buf).unwrap();
        buf
    }

    /// Pushes `frames` as one read does, then finishes its wake-ups.
    fn in_one_read(outbox: &Arc<Outbox>, frames: &[&'static [u8]]) {
        let mut wakes = Wakes::default();
        for frame in frames {
            assert_eq!(wakes.push(outbox, Bytes::from_static(frame)), Push::Queued);
        }
        wakes.finish();
    }

    #[tokio::test]
    async fn a_read_writes_a_few_frames_through_without_waking_the_connection() {
        let (outbox, mut client) = socket_pair().await;
        let (waker, woken) = parked(&outbox);
        in_one_read(&outbox, &[b"one\n", b"two\n"]);
        assert_eq!(read_exactly(&mut client, 8), b"one\ntwo\n");
        assert_eq!(woken(), 0, "nothing left for the connection to do");
        // Its waker is back in place: it still sleeps, and the next push wakes it.
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(outbox.push(Bytes::from_static(b"three\n")), Push::Queued);
        assert_eq!(woken(), 1);
    }

    #[tokio::test]
    async fn a_large_frame_is_left_to_the_connection() {
        let (outbox, _client) = socket_pair().await;
        let (_waker, woken) = parked(&outbox);
        static LARGE: [u8; WRITE_THROUGH_BYTES + 1] = [b'x'; WRITE_THROUGH_BYTES + 1];
        in_one_read(&outbox, &[&LARGE]);
        assert_eq!(woken(), 1);
        let mut taken = VecDeque::new();
        outbox.take(&mut taken);
        assert_eq!(taken.len(), 1, "left for the task");
    }

    #[tokio::test]
    async fn a_burst_or_a_busy_connection_is_woken_instead() {
        let (outbox, mut client) = socket_pair().await;
        let counter = Arc::new(Counter(0.into()));
        let waker = Waker::from(counter.clone());
        let woken = || counter.0.load(std::sync::atomic::Ordering::SeqCst);
        // A burst: more frames than are written through.
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        in_one_read(&outbox, &[&b"x"[..]; WRITE_THROUGH_FRAMES + 1]);
        assert_eq!(woken(), 1);
        // Woken, the task finds its outbox ready and takes the burst.
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_ready());
        let mut taken = VecDeque::new();
        outbox.take(&mut taken);
        assert_eq!(taken.len(), WRITE_THROUGH_FRAMES + 1, "left for the task");
        // The task holds unwritten frames: a later frame must wait behind them.
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        in_one_read(&outbox, &[b"y"]);
        assert_eq!(woken(), 2);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_ready());
        // Once the task has written its frames, the next read may write through again.
        let n = write_frames(outbox.socket(), &mut taken).unwrap();
        outbox.written(n, !taken.is_empty());
        outbox.take(&mut taken);
        let n = write_frames(outbox.socket(), &mut taken).unwrap();
        outbox.written(n, !taken.is_empty());
        assert_eq!(
            read_exactly(&mut client, WRITE_THROUGH_FRAMES + 2),
            b"xxxxxy"
        );
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        in_one_read(&outbox, &[b"z"]);
        assert_eq!(read_exactly(&mut client, 1), b"z");
        assert_eq!(woken(), 2);
    }
}
