//! Deadlines for a connection that is slow to speak: its first command, and each frame from
//! its first byte to its newline.
//!
//! Without them a client holds a descriptor by connecting and never speaking, and holds up to
//! `--max-frame` bytes by starting a frame and never ending it (a thousand such clients held a
//! gigabyte, indefinitely).
//!
//! Why a boxed timer made only when needed, rather than one in every connection's task: a
//! `Sleep` is about 100 bytes, and a connection's future is kept within tokio's 256-byte task
//! cell (see `connection.rs`); a pointer costs 8. A subscriber has a timer from its connect
//! to its first command and none after, so an idle connection holds none. A publisher whose
//! reads end in the middle of a frame keeps one and moves it forward, which is an atomic
//! update in tokio's timer, not a re-registration; the box goes when a read ends on a frame
//! boundary.
//!
//! Why not a sweep of every connection once a second: it would walk a million entries under
//! the table's lock to find the few that are late.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use thiserror::Error;
use tokio::time::{Instant, Sleep};

/// What a connection was late with, as its ERROR says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Missed {
    #[error("no command within {0:?} of connecting; closing")]
    FirstCommand(Duration),
    #[error("frame unfinished {0:?} after its first byte; closing")]
    Frame(Duration),
}

pin_project_lite::pin_project! {
    /// One armed deadline.
    struct Deadline {
        #[pin]
        sleep: Sleep,
        missed: Missed,
    }
}

/// A connection's deadline, if one is running: what it waits for and when it runs out.
#[derive(Default)]
pub struct Deadlines(Option<Pin<Box<Deadline>>>);

impl Deadlines {
    /// For a new connection: its first command is due within `within` (zero: no deadline).
    pub fn connected(within: Duration) -> Self {
        Self(arm(Missed::FirstCommand(within), within))
    }

    /// After a read. `spoke`: it completed at least one frame (the first, if none came
    /// before, and any frame left unfinished by an earlier read). `unfinished`: it ended in
    /// the middle of a frame, which is then due within `frame` (zero: no deadline).
    pub fn after_read(&mut self, spoke: bool, unfinished: bool, frame: Duration) {
        let slot = &mut self.0;
        match slot {
            // Still silent: the first command's deadline, set at connect, holds, whether or
            // not a frame has begun.
            Some(d) if !spoke && matches!(d.missed, Missed::FirstCommand(_)) => {}
            _ if !unfinished => *slot = None,
            // The same frame goes on: its deadline is from its first byte.
            Some(_) if !spoke => {}
            // A new frame began in this read.
            Some(d) if !frame.is_zero() => {
                let d = d.as_mut().project();
                *d.missed = Missed::Frame(frame);
                d.sleep.reset(Instant::now() + frame);
            }
            _ => *slot = arm(Missed::Frame(frame), frame),
        }
    }

    /// Ready with what was missed once the running deadline passes.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Missed> {
        match &mut self.0 {
            Some(d) => {
                let d = d.as_mut().project();
                d.sleep.poll(cx).map(|()| *d.missed)
            }
            None => Poll::Pending,
        }
    }

    /// Whether a deadline is running.
    pub fn running(&self) -> bool {
        self.0.is_some()
    }
}

fn arm(missed: Missed, within: Duration) -> Option<Pin<Box<Deadline>>> {
    (!within.is_zero()).then(|| {
        Box::pin(Deadline {
            sleep: tokio::time::sleep(within),
            missed,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    const FIRST: Duration = Duration::from_secs(30);
    const FRAME: Duration = Duration::from_secs(10);

    async fn missed(d: &mut Deadlines) -> Missed {
        poll_fn(|cx| d.poll(cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_misses_its_first_command() {
        let mut d = Deadlines::connected(FIRST);
        // Half a first command does not stop the clock.
        d.after_read(false, true, FRAME);
        let start = Instant::now();
        assert_eq!(missed(&mut d).await, Missed::FirstCommand(FIRST));
        assert_eq!(start.elapsed(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_ends_the_first_deadline_and_an_idle_connection_holds_none() {
        let mut d = Deadlines::connected(FIRST);
        d.after_read(true, false, FRAME);
        assert!(!d.running());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_frame_is_due_from_its_first_byte() {
        let mut d = Deadlines::connected(FIRST);
        d.after_read(true, true, FRAME);
        tokio::time::advance(Duration::from_secs(6)).await;
        // More of the same frame: the clock goes on.
        d.after_read(false, true, FRAME);
        let start = Instant::now();
        assert_eq!(missed(&mut d).await, Missed::Frame(FRAME));
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_publisher_that_keeps_finishing_frames_is_never_late() {
        let mut d = Deadlines::connected(FIRST);
        for _ in 0..10 {
            // Each read completes the frame the last one began, and begins another.
            d.after_read(true, true, FRAME);
            tokio::time::advance(Duration::from_secs(6)).await;
            assert!(poll_fn(|cx| Poll::Ready(d.poll(cx))).await.is_pending());
        }
        d.after_read(true, false, FRAME);
        assert!(!d.running());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_each_deadline_off() {
        let mut d = Deadlines::connected(Duration::ZERO);
        assert!(!d.running());
        d.after_read(true, true, Duration::ZERO);
        assert!(!d.running());
    }
}
