//! Repeated wrong passwords are slowed down, per source address: a pure table with the clock
//! passed in, so its rules are tested without waiting.
//!
//! After `n` failures from an address, each further AUTH from it waits
//! `FIRST_DELAY × 2^(n-1)`, at most [`MOST_DELAY`], before it is checked, and AUTHs from it
//! are spaced that far apart even when they come on many connections at once (each reserves
//! its turn). A guesser on one address is held to a few guesses a minute within seconds,
//! while a user who mistyped once waits a tenth of a second.
//!
//! Why per address, not per user name: per name, anyone could lock a known user out by
//! failing on purpose. Why IPv6 by /64: one host usually holds a whole /64, and per address it
//! would have 2^64 fresh starts. A success does not clear an address: with one account of its
//! own, a guesser could otherwise clear its failures between guesses. Failures are forgotten
//! [`FORGET_AFTER`] after the last one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// The wait after an address's first failure; it doubles with each further one.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait.
pub const MOST_DELAY: Duration = Duration::from_secs(10);
/// An address is forgotten this long after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Addresses the table holds (about 64 bytes each).
pub const MOST_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// The earliest an AUTH from this address may be checked.
    not_before: Instant,
    last_failure: Instant,
}

/// Failures by source address.
///
/// Bounded at [`MOST_ADDRESSES`]: a failure from a new address when it is full first drops
/// the addresses forgotten anyway, then, if none were, the one whose last failure is oldest.
/// So a flood from many addresses can push an old guesser out (it starts again at no delay),
/// but cannot grow the broker.
#[derive(Debug)]
pub struct Throttle {
    entries: HashMap<IpAddr, Entry>,
    most: usize,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::with_bound(MOST_ADDRESSES)
    }
}

/// The wait after `failures` failures.
pub fn delay(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => FIRST_DELAY
            .checked_mul(1 << (n - 1).min(16))
            .map_or(MOST_DELAY, |d| d.min(MOST_DELAY)),
    }
}

/// The key an address is counted under: itself, an IPv6 address by its /64, an IPv4 address
/// mapped into IPv6 as the IPv4 address.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl Throttle {
    /// A table of at most `most` addresses.
    pub fn with_bound(most: usize) -> Self {
        Self {
            entries: HashMap::new(),
            most: most.max(1),
        }
    }

    /// An AUTH from `ip` arrives at `now`: how long it must wait before it is checked. Its
    /// turn is reserved, so the next one from the same address waits behind it.
    pub fn wait(&mut self, ip: IpAddr, now: Instant) -> Duration {
        let ip = key(ip);
        let Some(e) = self.entries.get_mut(&ip) else {
            return Duration::ZERO;
        };
        if now.duration_since(e.last_failure) >= FORGET_AFTER {
            self.entries.remove(&ip);
            return Duration::ZERO;
        }
        let start = e.not_before.max(now);
        e.not_before = start + delay(e.failures);
        start - now
    }

    /// An AUTH from `ip` failed at `now`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        let ip = key(ip);
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.most {
            self.make_room(now);
        }
        let e = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            not_before: now,
            last_failure: now,
        });
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        e.not_before = e.not_before.max(now + delay(e.failures));
    }

    /// Addresses held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops the forgotten addresses, or else the one failed longest ago. Walks the table:
    /// only on a failure from a new address with the table full.
    fn make_room(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.duration_since(e.last_failure) < FORGET_AFTER);
        if self.entries.len() >= self.most {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(ip, _)| *ip);
            if let Some(ip) = oldest {
                self.entries.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_delay_doubles_up_to_its_cap() {
        assert_eq!(delay(0), Duration::ZERO);
        assert_eq!(delay(1), 100 * MS);
        assert_eq!(delay(2), 200 * MS);
        assert_eq!(delay(7), 6400 * MS);
        assert_eq!(delay(8), MOST_DELAY);
        assert_eq!(delay(u32::MAX), MOST_DELAY);
    }

    #[test]
    fn each_failure_doubles_the_next_wait_from_that_address_only() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.wait(A, t0), Duration::ZERO);
        t.failed(A, t0);
        // A second attempt at once waits the first delay; the other address does not wait.
        assert_eq!(t.wait(A, t0), 100 * MS);
        assert_eq!(t.wait(B, t0), Duration::ZERO);
        let t1 = t0 + 100 * MS;
        t.failed(A, t1);
        assert_eq!(t.wait(A, t1), 200 * MS);
        let t2 = t1 + 200 * MS;
        t.failed(A, t2);
        assert_eq!(t.wait(A, t2), 400 * MS);
    }

    #[test]
    fn attempts_on_many_connections_at_once_are_spaced() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        t.failed(A, t0);
        t.failed(A, t0);
        // Three AUTHs arriving together after two failures: each waits its turn.
        assert_eq!(t.wait(A, t0), 200 * MS);
        assert_eq!(t.wait(A, t0), 400 * MS);
        assert_eq!(t.wait(A, t0), 600 * MS);
    }

    #[test]
    fn failures_are_forgotten_after_a_while() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        t.failed(A, t0);
        assert_eq!(t.wait(A, t0 + FORGET_AFTER), Duration::ZERO);
        assert!(t.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest() {
        let mut t = Throttle::with_bound(2);
        let t0 = Instant::now();
        t.failed(A, t0);
        t.failed(B, t0 + MS);
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        t.failed(c, t0 + 2 * MS);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.wait(A, t0 + 2 * MS),
            Duration::ZERO,
            "A, the oldest, went"
        );
        assert!(t.wait(B, t0 + 2 * MS) > Duration::ZERO);
        // Forgotten entries go first, before a live one is dropped.
        let d: IpAddr = "10.0.0.4".parse().unwrap();
        t.failed(d, t0 + FORGET_AFTER + 10 * MS);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn ipv6_counts_by_its_64_bit_prefix() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        t.failed("2001:db8::1".parse().unwrap(), t0);
        assert_eq!(t.wait("2001:db8::ffff:1".parse().unwrap(), t0), 100 * MS);
        assert_eq!(
            t.wait("2001:db8:0:1::1".parse().unwrap(), t0),
            Duration::ZERO
        );
        t.failed("::ffff:10.0.0.1".parse().unwrap(), t0);
        assert_eq!(
            t.wait(A, t0),
            100 * MS,
            "an IPv4-mapped address is its IPv4 one"
        );
    }
}
