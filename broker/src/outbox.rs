//! A connection's pending output: a queue bounded in bytes.
//!
//! Publishers on any task push shared frames in; the connection's own task takes everything
//! queued at once and writes it in one `writev`. Memory per connection is bounded by the
//! slow-consumer limit, and an idle outbox holds no buffer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

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
    /// Connections to wake when the outermost batch on this thread ends.
    static DEFERRED: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with wake-ups deferred: a push inside it that would wake a connection queues the
/// waker instead, and every queued connection is woken once when `f` returns.
///
/// Why: a publisher's read often holds many publishes. Woken at the first one, a subscriber's
/// task is picked up at once by the other worker thread, drains that one message, writes it
/// and sleeps, and the next publish wakes it again: a wake-up and a `writev` per delivery.
/// Woken after the whole read, it drains the burst in one `writev` (NATS flushes the clients
/// a read touched in the same way). `f` must not await; batches nest.
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    BATCHING.with(|b| b.set(b.get() + 1));
    let result = f();
    if BATCHING.with(|b| {
        b.set(b.get() - 1);
        b.get() == 0
    }) {
        let wakers = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        for waker in &wakers {
            waker.wake_by_ref();
        }
        // Keep the vector's capacity for the next batch on this thread.
        DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_empty() {
                *d = wakers;
                d.clear();
            }
        });
    }
    result
}

/// Wakes `waker` now, or at the end of the current [`batch`].
fn wake(waker: Waker) {
    if BATCHING.with(|b| b.get()) > 0 {
        DEFERRED.with(|d| d.borrow_mut().push(waker));
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
    /// An empty outbox that lets at most `limit` bytes wait for the socket.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            state: Mutex::new(State::default()),
        }
    }

    /// Queues a frame and wakes the connection if it was idle.
    pub fn push(&self, frame: Bytes) -> Push {
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
                wake(waker);
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
            wake(waker);
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
        Taken::Frames
    }

    /// Records that `n` taken bytes reached the socket.
    pub fn written(&self, n: usize) {
        let mut state = self.state.lock().expect("outbox lock");
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
        let outbox = Outbox::new(10);
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
        let outbox = Outbox::new(100);
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
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(Bytes::from_static(b"12345678")), Push::Queued);
        let mut got = VecDeque::new();
        outbox.take(&mut got);
        outbox.written(8);
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
        let outbox = Outbox::new(10);
        outbox.close();
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Push::Closed);
    }
}
