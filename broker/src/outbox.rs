//! A connection's pending output: a queue bounded in bytes.
//!
//! Publishers on any task push shared frames in; the connection's own task takes everything
//! queued at once and writes it in one `writev`. Memory per connection is bounded by the
//! slow-consumer limit, and an idle outbox holds no buffer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::write::write_frames;

/// Frames an outbox may hold for [`batch`] to write them itself at its end. More than this
/// is a burst, which the connection's own task writes, so that bursts to many subscribers
/// spread over every worker thread.
const WRITE_THROUGH_FRAMES: usize = 4;

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
/// written) past `limit`, the outbox drops everything queued, refuses all further frames, and
/// wakes its connection, which then disconnects the client as a slow consumer. The publisher
/// and the other subscribers are never held up by it.
///
/// The wake-up is a flag and the one connection task's [`Waker`], kept under the same lock as
/// the queue, rather than a `tokio::sync::Notify`: waiting on a `Notify` needs a `Notified`
/// future inside the connection's task, which every idle connection would carry (see
/// [`Outbox::poll_ready`]).
#[derive(Debug)]
pub struct Outbox {
    limit: usize,
    state: Mutex<State>,
    /// The client's socket, for [`batch`] to write small deliveries through (`None` for the
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
}

impl State {
    /// Sets `signalled` and hands back the waker to wake once the lock is released.
    fn signal(&mut self) -> Option<Waker> {
        self.signalled = true;
        self.waker.take()
    }
}

thread_local! {
    /// Open [`batch`]es on this thread.
    static BATCHING: Cell<u32> = const { Cell::new(0) };
    /// Connections to write to, or wake, when the outermost batch on this thread ends.
    static DEFERRED: RefCell<Vec<(Arc<Outbox>, Waker)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with wake-ups deferred: a push inside it that would wake an idle connection
/// queues it instead, and when `f` returns each queued connection either gets its few frames
/// written right here, or is woken once to write its burst itself.
///
/// Why deferred: a publisher's read often holds many publishes. Woken at the first one, a
/// subscriber's task is picked up at once by the other worker thread, drains that one
/// message, writes it and sleeps, and the next publish wakes it again: a wake-up and a
/// `writev` per delivery. Woken after the whole read, it drains the burst in one `writev`
/// (NATS flushes the clients a read touched in the same way).
///
/// Why written through: at a moderate rate a read holds one publish, and waking a hundred
/// subscriber tasks to write one small frame each costs more than the writes, most of all
/// when the wake-ups cross to another core that is busy (measured: p99 0.60 ms with two
/// worker threads against 0.38 with one, at 2,000 msg/s to 100 subscribers). Writing up to
/// [`WRITE_THROUGH_FRAMES`] frames from the publisher's thread, as Redis writes every reply
/// from its one loop, saves the wake-ups; bursts still go to the subscribers' own tasks.
///
/// `f` must not await; batches nest.
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    BATCHING.with(|b| b.set(b.get() + 1));
    let result = f();
    if BATCHING.with(|b| {
        b.set(b.get() - 1);
        b.get() == 0
    }) {
        let mut deferred = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        for (outbox, waker) in deferred.drain(..) {
            if let Some(waker) = outbox.write_through(waker) {
                waker.wake();
            }
        }
        // Keep the vector's capacity for the next batch on this thread.
        DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_empty() {
                *d = deferred;
            }
        });
    }
    result
}

/// Wakes `outbox`'s connection (`waker`) now, or hands both to the end of the current
/// [`batch`].
fn wake(outbox: &Arc<Outbox>, waker: Waker) {
    if BATCHING.with(|b| b.get()) > 0 {
        DEFERRED.with(|d| d.borrow_mut().push((Arc::clone(outbox), waker)));
    } else {
        waker.wake();
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
        Self {
            limit,
            state: Mutex::new(State::default()),
            socket: None,
        }
    }

    /// An empty outbox for a client on `socket`, which it owns: the connection reads and
    /// writes through [`socket`](Outbox::socket), and a [`batch`] may write through it too.
    pub fn with_socket(limit: usize, socket: TcpStream) -> Self {
        Self {
            socket: Some(socket),
            ..Self::new(limit)
        }
    }

    /// The client's socket.
    ///
    /// # Panics
    /// For an outbox made without one ([`Outbox::new`]).
    pub fn socket(&self) -> &TcpStream {
        self.socket.as_ref().expect("an outbox made with_socket")
    }

    /// At the end of a [`batch`]: writes what is queued straight to the socket when it is
    /// a few frames, the connection's task holds none unwritten, and the socket takes them
    /// all; the task then sleeps on. Otherwise returns `waker`, to be woken to do it.
    fn write_through(&self, waker: Waker) -> Option<Waker> {
        let Some(socket) = &self.socket else {
            return Some(waker);
        };
        let mut state = self.state.lock().expect("outbox lock");
        if state.closed || state.busy || state.queue.len() > WRITE_THROUGH_FRAMES {
            return Some(waker);
        }
        // Under the lock, so that neither the task nor another batch can take frames
        // between these and the socket. An error is left for the task to meet.
        let Ok(written) = write_frames(socket, &mut state.queue) else {
            return Some(waker);
        };
        state.pending -= written;
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

    /// Queues a frame and wakes the connection if it was idle.
    pub fn push(self: &Arc<Self>, frame: Bytes) -> Push {
        let mut state = self.state.lock().expect("outbox lock");
        if state.closed {
            return Push::Closed;
        }
        if state.pending + frame.len() > self.limit {
            state.closed = true;
            state.overflowed = true;
            state.queue = VecDeque::new();
            let waker = state.signal();
            drop(state);
            if let Some(waker) = waker {
                wake(self, waker);
            }
            return Push::Overflowed;
        }
        state.pending += frame.len();
        let was_empty = state.queue.is_empty();
        state.queue.push_back(frame);
        // The connection drains the whole queue when it wakes, so one wake-up per burst is enough.
        let waker = if was_empty { state.signal() } else { None };
        drop(state);
        if let Some(waker) = waker {
            wake(self, waker);
        }
        Push::Queued
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
        state.pending = state.pending.saturating_sub(n);
        if state.pending == 0 && state.queue.capacity() > 64 {
            // A burst is over: give the memory back rather than hold it while idle.
            state.queue = VecDeque::new();
        }
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
    fn a_batch_wakes_each_connection_once_when_it_ends() {
        let counter = std::sync::Arc::new(Counter(0.into()));
        let waker = Waker::from(counter.clone());
        let outbox = Arc::new(Outbox::new(100));
        let woken = || counter.0.load(std::sync::atomic::Ordering::SeqCst);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        batch(|| {
            assert_eq!(outbox.push(Bytes::from_static(b"1")), Push::Queued);
            assert_eq!(outbox.push(Bytes::from_static(b"2")), Push::Queued);
            batch(|| assert_eq!(outbox.push(Bytes::from_static(b"3")), Push::Queued));
            assert_eq!(woken(), 0, "woken inside the batch");
        });
        assert_eq!(woken(), 1);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_ready());
        // Outside a batch a push wakes at once.
        let mut got = VecDeque::new();
        outbox.take(&mut got);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(outbox.push(Bytes::from_static(b"4")), Push::Queued);
        assert_eq!(woken(), 2);
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
        (Arc::new(Outbox::with_socket(1 << 20, server)), client)
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

    #[tokio::test]
    async fn a_batch_writes_a_few_frames_through_without_waking_the_connection() {
        let (outbox, mut client) = socket_pair().await;
        let (waker, woken) = parked(&outbox);
        batch(|| {
            assert_eq!(outbox.push(Bytes::from_static(b"one\n")), Push::Queued);
            assert_eq!(outbox.push(Bytes::from_static(b"two\n")), Push::Queued);
        });
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
    async fn a_burst_or_a_busy_connection_is_woken_instead() {
        let (outbox, mut client) = socket_pair().await;
        let counter = Arc::new(Counter(0.into()));
        let waker = Waker::from(counter.clone());
        let woken = || counter.0.load(std::sync::atomic::Ordering::SeqCst);
        // A burst: more frames than are written through.
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        batch(|| {
            for _ in 0..=WRITE_THROUGH_FRAMES {
                assert_eq!(outbox.push(Bytes::from_static(b"x")), Push::Queued);
            }
        });
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
        batch(|| assert_eq!(outbox.push(Bytes::from_static(b"y")), Push::Queued));
        assert_eq!(woken(), 2);
        assert!(outbox
            .poll_ready(&mut Context::from_waker(&waker))
            .is_ready());
        // Once the task has written its frames, the next batch may write through again.
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
        batch(|| assert_eq!(outbox.push(Bytes::from_static(b"z")), Push::Queued));
        assert_eq!(read_exactly(&mut client, 1), b"z");
        assert_eq!(woken(), 2);
    }
}
