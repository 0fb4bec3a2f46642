//! A ramp is data: every flag normalises into a list of steps, and the engine has one path.
//! Also the rules that say which client goes where: its channel, its worker, its source.

/// The most worker processes loadgen starts: a `--per-process` so small that it would need
/// more is surely a mistake, and would fork for minutes before running out of something.
pub const MAX_WORKERS: usize = 256;

/// The name of channel `n`: subscriber `i` of a run listens on `channel_name(i % channels)`,
/// and message `m` is published on `channel_name(m % channels)`.
pub fn channel_name(n: u64) -> String {
    format!("ch-{n}")
}

/// Subscribers the ramp should have connected at the end of each step.
pub fn steps(max_clients: u64, step: u64) -> Vec<u64> {
    let step = step.max(1);
    let mut out: Vec<u64> = (1..)
        .map(|i| i * step)
        .take_while(|&n| n < max_clients)
        .collect();
    out.push(max_clients);
    out
}

/// How to spread `new` clients over workers that already hold `held` and can hold at most
/// `capacity` each: evenly, so that their CPU use stays even.
pub fn split(new: u64, held: &[u64], capacity: u64) -> Vec<u64> {
    let mut out = vec![0u64; held.len()];
    let mut left = new;
    while left > 0 {
        let open: Vec<usize> = (0..held.len())
            .filter(|&i| held[i] + out[i] < capacity)
            .collect();
        if open.is_empty() {
            break;
        }
        let share = (left / open.len() as u64).max(1);
        for i in open {
            let take = share.min(capacity - held[i] - out[i]).min(left);
            out[i] += take;
            left -= take;
        }
    }
    out
}

/// Worker processes needed for `clients`, `per_process` each.
pub fn workers_for(clients: u64, per_process: u64) -> usize {
    clients.div_ceil(per_process.max(1)).max(1) as usize
}

/// Brokers needed to hold `clients` when one holds at most `per_broker`: past one, the
/// embedded broker becomes a hub with this many leaves.
pub fn brokers_for(clients: u64, per_broker: u64) -> usize {
    workers_for(clients, per_broker)
}

/// How a run's subscribers are spread over several brokers (a hub's leaves).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Every channel's subscribers over every broker: each message crosses the hub to
    /// every leaf, which is what a hub's links are measured by.
    #[default]
    Spread,
    /// Each channel's subscribers on one broker (channel `c` on broker `c % brokers`): a
    /// message crosses the hub to the one leaf that has its channel, as a deployment that
    /// shards channels over brokers would have it. Even only with many more channels than
    /// brokers.
    ByChannel,
}

/// Where subscriber `n` goes: its channel, and the indexes of its broker among `targets` and
/// of its source address among `sources`.
///
/// Channel `n % channels`. [`Placement::Spread`]: broker `(n + n / L) % targets`, with `L` the
/// least common multiple of the channels and the brokers. Within each run of `L`
/// subscribers any `targets` consecutive ones go to different brokers, so every broker holds
/// the same share (within one) at every step, however the channels, the brokers and the
/// step compare; and a channel's subscribers of successive rounds go to different brokers,
/// the shift by `n / L` reaching the ones a common factor would skip. Source
/// `n / targets % sources`: each broker's share spread evenly over the sources.
/// [`Placement::ByChannel`]: broker `channel % targets`, source `n / channels % sources`.
pub fn placement(
    n: u64,
    channels: u64,
    (targets, sources): (usize, usize),
    how: Placement,
) -> (u64, usize, usize) {
    let (channels, targets, sources) = (
        channels.max(1),
        targets.max(1) as u64,
        sources.max(1) as u64,
    );
    let channel = n % channels;
    let (target, source) = match how {
        Placement::Spread => {
            let block = channels / gcd(channels, targets) * targets;
            ((n + n / block) % targets, n / targets % sources)
        }
        Placement::ByChannel => (channel % targets, n / channels % sources),
    };
    (channel, target as usize, source as usize)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Connections per (source address, broker) pair before loadgen adds a source address:
/// three quarters of half the ephemeral range `(low, high)`.
///
/// Half, because the kernel looks for a connecting socket's port among the range's even
/// ports first and turns to the odd ones only after trying every even one. Past half the
/// range used between one source and one destination, each connect checks some 14,000
/// ports before it finds one: measured here, 19,000 subscribers from one source took a
/// worker 6 s of CPU to connect (80% of it in `__inet_check_established`, connect p99
/// 240-285 ms), and from two sources 0.6 s (p99 28 ms).
pub fn per_source((low, high): (u32, u32)) -> u64 {
    let ports = u64::from(high.saturating_sub(low)) + 1;
    (ports / 2 * 3 / 4).max(1)
}

/// Loopback source addresses needed so that no (source, broker) pair needs more than
/// `per_source` connections.
pub fn sources_for(clients: u64, targets: usize, per_source: u64) -> usize {
    clients
        .div_ceil(targets.max(1) as u64)
        .div_ceil(per_source.max(1))
        .max(1) as usize
}

/// `publishers` spread over `workers` as evenly as they go, in blocks: each worker's first
/// publisher's global index and how many it runs (some may run none).
pub fn publisher_shares(publishers: u64, workers: usize) -> Vec<(u64, u64)> {
    let workers = workers.max(1) as u64;
    let mut first = 0;
    (0..workers)
        .map(|w| {
            let count = publishers / workers + u64::from(w < publishers % workers);
            let share = (first, count);
            first += count;
            share
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_are_spread_in_blocks_that_cover_every_index_once() {
        assert_eq!(publisher_shares(4, 2), [(0, 2), (2, 2)]);
        assert_eq!(publisher_shares(4, 3), [(0, 2), (2, 1), (3, 1)]);
        assert_eq!(publisher_shares(1, 3), [(0, 1), (1, 0), (1, 0)]);
    }

    #[test]
    fn one_broker_until_its_descriptors_are_spent() {
        assert_eq!(brokers_for(10_000, 19_900), 1);
        assert_eq!(brokers_for(19_900, 19_900), 1);
        assert_eq!(brokers_for(19_901, 19_900), 2);
        assert_eq!(brokers_for(1_000_004, 19_900), 51);
    }

    #[test]
    fn steps_end_exactly_at_the_maximum() {
        assert_eq!(steps(2000, 500), [500, 1000, 1500, 2000]);
        assert_eq!(steps(1200, 500), [500, 1000, 1200]);
        assert_eq!(steps(100, 500), [100]);
    }

    #[test]
    fn splits_evenly_within_capacity() {
        assert_eq!(split(10, &[0, 0, 0], 100), [4, 3, 3]);
        assert_eq!(split(10, &[95, 0], 100), [5, 5]);
        assert_eq!(split(10, &[100, 98], 100), [0, 2]);
        assert_eq!(split(7, &[0, 0], 100).iter().sum::<u64>(), 7);
    }

    /// Counts per broker and per (broker, source) after the first `clients` subscribers.
    fn shares(clients: u64, channels: u64, targets: usize, sources: usize) -> Vec<Vec<u64>> {
        let mut held = vec![vec![0; sources]; targets];
        for n in 0..clients {
            let (_, t, s) = placement(n, channels, (targets, sources), Placement::Spread);
            held[t][s] += 1;
        }
        held
    }

    #[test]
    fn every_broker_holds_an_even_share_at_every_step() {
        // The million's shape: 10,000 channels, steps of 100,000, 51 leaves, 2 sources. The
        // rule before placed a round of 10,000 on one broker each, 20,000 on some by step 6.
        for clients in [100_000, 600_000, 1_000_000] {
            let held = shares(clients, 10_000, 51, 2);
            let per_broker: Vec<u64> = held.iter().map(|s| s.iter().sum()).collect();
            let (lo, hi) = (per_broker.iter().min(), per_broker.iter().max());
            assert!(hi.unwrap() - lo.unwrap() <= 1, "{clients}: {lo:?}..{hi:?}");
            for s in &held {
                assert!(s[0].abs_diff(s[1]) <= 1, "{clients}: {s:?}");
            }
        }
        // Fewer channels than brokers, and more.
        let held = shares(7, 3, 7, 1);
        assert!(held.iter().all(|s| s == &[1]));
    }

    #[test]
    fn a_channels_subscribers_are_spread_over_the_brokers() {
        let brokers_of = |channel: u64, channels: u64, targets: usize, rounds: u64| {
            let mut seen: Vec<usize> = (0..rounds)
                .map(|round| {
                    placement(
                        round * channels + channel,
                        channels,
                        (targets, 1),
                        Placement::Spread,
                    )
                    .1
                })
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        // Channel 5 of 1,000 over 6 brokers (a common factor of 2): all six within 6 rounds.
        assert_eq!(brokers_of(5, 1_000, 6, 6), [0, 1, 2, 3, 4, 5]);
        // As many channels as a multiple of the brokers: still every broker.
        assert_eq!(brokers_of(7, 10_000, 50, 50).len(), 50);
        assert_eq!(brokers_of(0, 10_000, 51, 51).len(), 51);
        assert_eq!(placement(1_005, 1_000, (6, 1), Placement::Spread).0, 5);
    }

    #[test]
    fn by_channel_a_channel_stays_on_one_broker() {
        let mut held = vec![vec![0u64; 2]; 51];
        for n in 0..1_000_000 {
            let (channel, t, s) = placement(n, 10_000, (51, 2), Placement::ByChannel);
            assert_eq!(t, (channel % 51) as usize);
            held[t][s] += 1;
        }
        let per_broker: Vec<u64> = held.iter().map(|s| s.iter().sum()).collect();
        // 10,000 channels over 51 brokers: 196 or 197 channels, 100 subscribers each.
        assert_eq!(per_broker.iter().min(), Some(&19_600));
        assert_eq!(per_broker.iter().max(), Some(&19_700));
        assert!(held.iter().all(|s| s[0] == s[1]));
    }

    #[test]
    fn a_source_takes_under_half_the_ports() {
        assert_eq!(per_source((32_768, 60_999)), 10_587);
        assert_eq!(per_source((1024, 65_535)), 24_192);
        assert_eq!(per_source((5000, 5000)), 1);
        assert_eq!(sources_for(19_000, 1, per_source((32_768, 60_999))), 2);
    }

    #[test]
    fn processes_and_addresses() {
        assert_eq!(workers_for(50_000, 19_900), 3);
        assert_eq!(workers_for(10, 19_900), 1);
        assert_eq!(sources_for(50_000, 1, 25_000), 2);
        assert_eq!(sources_for(50_000, 4, 25_000), 1);
        assert_eq!(sources_for(50_001, 1, 25_000), 3);
    }
}
