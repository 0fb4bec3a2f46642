//! The offset between the coordinator's monotonic clock and an agent's, from round trips.
//!
//! The coordinator reads its clock (`sent`), asks the agent for its own (`agent`), and reads
//! its clock again (`received`). If the answer was read at the midpoint of the round trip, the
//! offset is `agent - (sent + received) / 2`; wherever in the round trip it was read, the
//! error is at most half the round trip. Of several probes the one with the shortest round
//! trip bounds the error best, so it is the one taken (as NTP's clock filter does).
//!
//! Monotonic clocks on different machines also run at slightly different rates (parts per
//! million), so the offset is measured again at the end of a run and both are reported: the
//! difference is the drift over the run, and what a latency measured late in the run may be
//! off by beyond the uncertainty.

use serde::{Deserialize, Serialize};

/// One round trip, each time in nanoseconds on its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub sent_ns: u64,
    pub agent_ns: u64,
    pub received_ns: u64,
}

/// The agent's clock less the coordinator's, and how far off that may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Offset {
    pub offset_ns: i64,
    /// Half the shortest round trip: the true offset is within this of `offset_ns`.
    pub uncertainty_ns: u64,
    pub probes: usize,
}

/// The offset from the probe with the shortest round trip; `None` without probes.
pub fn estimate(probes: &[Probe]) -> Option<Offset> {
    let best = probes
        .iter()
        .filter(|p| p.received_ns >= p.sent_ns)
        .min_by_key(|p| p.received_ns - p.sent_ns)?;
    let rtt = best.received_ns - best.sent_ns;
    let midpoint = best.sent_ns + rtt / 2;
    Some(Offset {
        offset_ns: best.agent_ns as i64 - midpoint as i64,
        uncertainty_ns: rtt.div_ceil(2),
        probes: probes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_round_trip_sets_the_offset_and_its_bound() {
        // The agent's clock is 1,000,000 ns ahead; the answers are read at various points of
        // round trips of 400, 100 and 900 ns.
        let probes = [
            Probe {
                sent_ns: 10_000,
                agent_ns: 1_010_300,
                received_ns: 10_400,
            },
            Probe {
                sent_ns: 20_000,
                agent_ns: 1_020_040,
                received_ns: 20_100,
            },
            Probe {
                sent_ns: 30_000,
                agent_ns: 1_030_100,
                received_ns: 30_900,
            },
        ];
        let o = estimate(&probes).unwrap();
        assert_eq!(
            o,
            Offset {
                offset_ns: 1_000_000 - 10,
                uncertainty_ns: 50,
                probes: 3
            }
        );
        assert!((o.offset_ns - 1_000_000).unsigned_abs() <= o.uncertainty_ns);
    }

    #[test]
    fn an_agent_behind_gives_a_negative_offset_and_no_probes_none() {
        let p = Probe {
            sent_ns: 5_000_000,
            agent_ns: 1_000_100,
            received_ns: 5_000_200,
        };
        assert_eq!(estimate(&[p]).unwrap().offset_ns, -4_000_000);
        assert_eq!(estimate(&[]), None);
    }
}
