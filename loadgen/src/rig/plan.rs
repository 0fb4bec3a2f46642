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

/// Loopback source addresses needed so that no (source, broker) pair needs more than
/// `per_source` connections.
pub fn sources_for(clients: u64, targets: usize, per_source: u64) -> usize {
    clients
        .div_ceil(targets.max(1) as u64)
        .div_ceil(per_source.max(1))
        .max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn processes_and_addresses() {
        assert_eq!(workers_for(50_000, 19_900), 3);
        assert_eq!(workers_for(10, 19_900), 1);
        assert_eq!(sources_for(50_000, 1, 25_000), 2);
        assert_eq!(sources_for(50_000, 4, 25_000), 1);
        assert_eq!(sources_for(50_001, 1, 25_000), 3);
    }
}
