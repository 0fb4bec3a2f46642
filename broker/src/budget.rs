//! The broker-wide memory budget: the bytes held in unfinished frames and in output queues,
//! all connections together.
//!
//! Each connection is bounded by itself (`--max-frame`, the slow-consumer limits), but twenty
//! thousand connections each within its bounds can still hold tens of gigabytes: 1 MiB frames
//! left unfinished, or 8 MiB of output allowed to wait for ten seconds. The budget bounds the
//! sum. Past it, new work is refused with an ERROR (a PUBLISH, a frame still growing) instead
//! of the process growing; what is held drains or is cut by the per-connection limits, and
//! work is accepted again.
//!
//! Counted in whole granules, each holder rounding down what it holds: a connection updates
//! the shared counter only when what it holds crosses a 16 KiB boundary, so the delivery path
//! (a few hundred bytes queued and written at once) never touches it, and the counter's cache
//! line is not bounced between cores once per message. What goes uncounted is under a granule
//! per connection. A frame queued to many subscribers is one allocation shared by all, counted
//! once for each: the budget is an upper bound on what is held.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// What one holder's count moves by: held bytes are counted in whole granules, rounded down.
pub const GRANULE: usize = 16 << 10;

/// The budget and what is held against it.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    held: AtomicUsize,
}

impl Budget {
    /// A budget of `limit` bytes (`usize::MAX`: none).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// Records that a holder went from holding `before` bytes to `after`; returns whether
    /// what it is counted for grew (by a granule or more).
    #[inline]
    pub fn change(&self, before: usize, after: usize) -> bool {
        let (before, after) = (before / GRANULE, after / GRANULE);
        if after > before {
            self.held.fetch_add((after - before) * GRANULE, Relaxed);
        } else if before > after {
            self.held.fetch_sub((before - after) * GRANULE, Relaxed);
        }
        after > before
    }

    /// Whether what is held is past the limit: new work is to be refused.
    #[inline]
    pub fn spent(&self) -> bool {
        self.held.load(Relaxed) > self.limit
    }

    /// Bytes held, as counted.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_whole_granules_and_gives_them_back() {
        let budget = Budget::new(2 * GRANULE);
        budget.change(0, GRANULE - 1);
        assert_eq!(budget.held(), 0, "under a granule is not counted");
        budget.change(GRANULE - 1, 3 * GRANULE + 5);
        assert_eq!(budget.held(), 3 * GRANULE);
        assert!(budget.spent());
        budget.change(3 * GRANULE + 5, 2 * GRANULE);
        assert_eq!(budget.held(), 2 * GRANULE);
        assert!(!budget.spent(), "at the limit is within it");
        budget.change(2 * GRANULE, 0);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn holders_add_up() {
        let budget = Budget::new(usize::MAX);
        budget.change(0, 5 * GRANULE);
        budget.change(0, GRANULE + 1);
        assert_eq!(budget.held(), 6 * GRANULE);
        budget.change(5 * GRANULE, 0);
        budget.change(GRANULE + 1, 0);
        assert_eq!(budget.held(), 0);
    }
}
