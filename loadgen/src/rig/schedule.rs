//! When and what the publishers send: the one schedule of a hold, pure data, shared by the
//! publishers here and those on agents' workers (sent to them in `control`).

use std::time::Duration;

/// When and what to publish: message `n` is due at `start_ns + n / rate` until `total`
/// messages, on channel `n % channels`, `size` bytes. Messages due in `counted` are the ones
/// a hold measures (what [`Published`] counts); those before it are the warm-up.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub rate: f64,
    pub start_ns: u64,
    pub total: u64,
    pub counted: (u64, u64),
    pub channels: u64,
    pub size: usize,
    /// These publishers' place among all of them: the first one's global index and how many
    /// there are in all (`None`: these are all of them). Publisher `g` sends messages
    /// `g, g + all, g + 2 × all, …`.
    #[serde(default)]
    pub publishers: Option<(u64, u64)>,
}

impl Schedule {
    /// `rate` from `start_ns`: `warmup`, then `hold` counted.
    pub fn new(rate: f64, start_ns: u64, warmup: Duration, hold: Duration) -> Self {
        let from = start_ns + warmup.as_nanos() as u64;
        Schedule {
            rate,
            start_ns,
            total: ((warmup + hold).as_secs_f64() * rate).round() as u64,
            counted: (from, from + hold.as_nanos() as u64),
            channels: 1,
            size: 64,
            publishers: None,
        }
    }

    pub fn due(&self, n: u64) -> u64 {
        self.start_ns + (n as f64 * 1e9 / self.rate) as u64
    }
}
