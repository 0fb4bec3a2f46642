//! The clients of a soak that misbehave, beside the healthy subscribers the rig holds: churn
//! (connect, subscribe, leave), burst readers and their burst publisher, slow consumers and
//! malformed clients. Each population is a few tasks in this process that loop until the
//! soak's token is cancelled, and counts what it did and got into one [`AbuseCounts`], taken
//! window by window.
//!
//! They live in the coordinating process, not in the workers, so that nothing they do enters
//! the healthy subscribers' counts: the rig owes each healthy subscriber the messages
//! published on its channel, counted from its own subscriptions (not the broker's), so churn
//! connections on the same channels change no one's expected deliveries.
//!
//! # Layout
//! - this file: the populations' start and stop.
//! - [`shared`]: the options, and what the tasks share.
//! - [`churn`], [`burst`], [`slow`], [`malformed`]: one population each.

pub mod burst;
pub mod churn;
pub mod malformed;
pub mod shared;
pub mod slow;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::shared::Opts;
use self::shared::{until, Shared};
use crate::model::soak::{AbuseCounts, Burst};

/// How long the tasks may take to end once told to stop; their sockets close as they end.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The misbehaving clients, running.
pub struct Abusers {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    /// Stops the burst publisher alone, after the burst it is writing, so that the last
    /// bursts can be read to the end.
    stop_bursts: CancellationToken,
    ledger: Arc<burst::Ledger>,
}

impl Abusers {
    /// Starts every population against `target`: churn over the healthy `channels`, each
    /// connect given `timeout`, times counted from `origin`. They stop when `stop` is
    /// cancelled, or at [`Abusers::stop`].
    pub fn start(
        target: SocketAddr,
        opts: &Opts,
        (channels, timeout): (u64, Duration),
        origin: Instant,
        stop: CancellationToken,
    ) -> Abusers {
        let shared = Arc::new(Shared {
            target,
            stop,
            origin,
            timeout,
            counts: Mutex::default(),
        });
        let tracker = TaskTracker::new();
        let ledger = Arc::new(burst::Ledger::new(opts.burst_readers as usize));
        let stop_bursts = shared.stop.child_token();
        let (sh, t) = (&shared, &tracker);
        until(
            t,
            &sh.stop,
            churn::run(sh.clone(), t.clone(), opts.clone(), channels),
        );
        for reader in 0..opts.burst_readers as usize {
            until(t, &sh.stop, burst::read(sh.clone(), ledger.clone(), reader));
        }
        if opts.burst_readers + opts.slow > 0 {
            let (l, o) = (ledger.clone(), opts.clone());
            let publish = burst::publish(sh.clone(), l, o, stop_bursts.clone());
            until(t, &sh.stop, publish);
        }
        for _ in 0..opts.slow {
            until(t, &sh.stop, slow::run(sh.clone(), opts.slow_stall));
        }
        for _ in 0..opts.malformed {
            until(
                t,
                &sh.stop,
                malformed::run(sh.clone(), opts.half_frame_wait),
            );
        }
        Abusers {
            shared,
            tracker,
            stop_bursts,
            ledger,
        }
    }

    /// The counts since the last call: one window's.
    pub fn take_counts(&self) -> AbuseCounts {
        std::mem::take(&mut self.shared.counts.lock().expect("abuse counts lock"))
    }

    /// Every burst so far, with what each reader received of it.
    pub fn bursts(&self) -> Vec<Burst> {
        self.ledger.snapshot()
    }

    /// Stops the bursts (after the one being written), waits up to `settle` for it and for the
    /// readers to finish the last ones, then stops every task (closing its connections) and
    /// returns the bursts and the counts since the last [`Abusers::take_counts`].
    pub async fn stop(self, settle: Duration) -> (Vec<Burst>, AbuseCounts) {
        self.stop_bursts.cancel();
        let deadline = tokio::time::Instant::now() + settle;
        while !self.ledger.settled() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = self.shared.stop.cancelled() => break,
            }
        }
        self.shared.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(STOP_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            crate::rig::progress::say(&format!(
                "soak: some misbehaving clients' tasks were still running {STOP_GRACE:?} after \
                 the stop; they end with the process"
            ));
        }
        (self.ledger.snapshot(), self.take_counts())
    }
}
