//! The slow-consumer policy: how much output a connection may have waiting, and for how long.
//!
//! A client that reads as fast as loopback allows still falls behind for a moment when a burst
//! arrives (20 MB published in one go is 20 MB queued before it can read it), and cutting it
//! then is wrong; a client that stays behind, or falls far behind, must be cut, or it would
//! hold the broker's memory. So two limits, as Redis's `client-output-buffer-limit` has: a
//! hard one, cut at once, and a soft one, cut only once the output waiting has stayed past it
//! for a while.

use std::time::{Duration, Instant};

use crate::budget::Budget;

/// The limits every client outbox of one broker is held to.
#[derive(Debug)]
pub struct PendingLimits {
    /// Bytes waiting past which a connection is cut at once.
    pub hard: usize,
    /// Bytes waiting past which a connection is cut if it stays past them for `soft_for`.
    pub soft: usize,
    pub soft_for: Duration,
    /// When the outboxes' clock starts. An outbox keeps when it went past `soft` as
    /// milliseconds since this in a `u32`, which fits in its padding where an `Instant` (16
    /// bytes) would grow every connection; it wraps after 49 days, far beyond any `soft_for`.
    epoch: Instant,
    /// What every outbox's pending bytes are counted against, with every unfinished frame.
    pub budget: Budget,
}

/// Milliseconds since [`PendingLimits`]'s epoch when an outbox went past the soft limit, or
/// 0 while it is under it.
pub type OverSince = u32;

impl PendingLimits {
    pub fn new(hard: usize, soft: usize, soft_for: Duration) -> Self {
        Self {
            hard,
            soft: soft.min(hard),
            soft_for,
            epoch: Instant::now(),
            budget: Budget::new(usize::MAX),
        }
    }

    /// The same limits, with the broker-wide memory budget of `limit` bytes.
    pub fn with_budget(self, limit: usize) -> Self {
        Self {
            budget: Budget::new(limit),
            ..self
        }
    }

    /// Only a hard limit (for a broker's own link upstream, which has no client to wait for).
    pub fn hard_only(hard: usize) -> Self {
        Self::new(hard, hard, Duration::ZERO)
    }

    /// Whether an outbox that would hold `pending` bytes is a slow consumer; keeps `since` up
    /// to date (when it went past the soft limit).
    pub fn exceeded(&self, pending: usize, since: &mut OverSince) -> bool {
        if pending > self.hard {
            return true;
        }
        if pending <= self.soft {
            *since = 0;
            return false;
        }
        let now = self.now();
        if *since == 0 {
            *since = now;
            return false;
        }
        u64::from(now.wrapping_sub(*since)) > self.soft_for.as_millis() as u64
    }

    /// After bytes were written: back under the soft limit, the clock stops.
    pub fn settle(&self, pending: usize, since: &mut OverSince) {
        if pending <= self.soft {
            *since = 0;
        }
    }

    /// The ERROR a cut client is sent, where its socket takes it.
    pub fn why(&self) -> String {
        if self.soft < self.hard {
            format!(
                "slow consumer: more than {} bytes waiting, or more than {} for {:?}; \
                 disconnected",
                self.hard, self.soft, self.soft_for
            )
        } else {
            format!(
                "slow consumer: more than {} bytes waiting; disconnected",
                self.hard
            )
        }
    }

    fn now(&self) -> OverSince {
        // Never 0, which means "not past the soft limit".
        (self.epoch.elapsed().as_millis() as u32).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hard_limit_cuts_at_once_the_soft_one_only_after_its_time() {
        let limits = PendingLimits::new(100, 10, Duration::from_millis(50));
        let mut since = 0;
        assert!(limits.exceeded(101, &mut since));
        assert!(!limits.exceeded(10, &mut since));
        assert_eq!(since, 0);
        assert!(!limits.exceeded(50, &mut since));
        assert_ne!(since, 0);
        std::thread::sleep(Duration::from_millis(60));
        assert!(limits.exceeded(50, &mut since));
    }

    #[test]
    fn falling_back_under_the_soft_limit_stops_the_clock() {
        let limits = PendingLimits::new(100, 10, Duration::from_millis(50));
        let mut since = 0;
        assert!(!limits.exceeded(50, &mut since));
        std::thread::sleep(Duration::from_millis(60));
        limits.settle(5, &mut since);
        assert_eq!(since, 0);
        assert!(!limits.exceeded(50, &mut since));
    }

    #[test]
    fn the_error_states_the_limits_that_apply() {
        assert_eq!(
            PendingLimits::new(100, 10, Duration::from_secs(10)).why(),
            "slow consumer: more than 100 bytes waiting, or more than 10 for 10s; disconnected"
        );
        assert_eq!(
            PendingLimits::new(100, 200, Duration::from_secs(10)).why(),
            "slow consumer: more than 100 bytes waiting; disconnected"
        );
    }

    #[test]
    fn hard_only_has_no_soft_limit() {
        let limits = PendingLimits::hard_only(100);
        let mut since = 0;
        assert!(!limits.exceeded(100, &mut since));
        assert!(limits.exceeded(101, &mut since));
    }
}
