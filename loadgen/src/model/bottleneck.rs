//! What set a figure: the broker, the load generator, the in-flight window, or the machine.
//!
//! A rate measured on one machine is the rate of whichever part ran out first. The CPU of
//! every thread of the broker and of loadgen during the measured window says which: a side is
//! saturated when one of its threads was busy all the time (a serial bottleneck, which wins:
//! more cores would not lift it) or when it used (nearly) all the CPU it may; the machine is
//! saturated when the two together used (nearly) all its cores. When nothing was saturated, a closed-loop rate was set by how much
//! was in flight and how long each delivery took (Little's law: rate = window ÷ latency), and
//! an open-loop one by what was offered.

use serde::{Deserialize, Serialize};

/// At this share of what is available, a thread or a process counts as saturated.
pub const SATURATED: f64 = 0.9;

/// What one side (the broker, or loadgen) used during a measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// All its threads together, in % of one core (200 = two cores busy).
    pub total_pct: f64,
    /// Its busiest thread, in % of one core, and that thread's name.
    pub busiest_thread_pct: f64,
    pub busiest_thread: String,
    pub threads: usize,
    /// The cores it may use: the least of the machine's, its affinity and its cgroup quota.
    pub available_cores: f64,
}

impl Usage {
    /// One thread busy all the time, or (nearly) all the CPU it may have in use. A side that
    /// was not sampled (no process to watch: `available_cores` 0) is never saturated, so that
    /// its 0% of 0% does not read as a full broker.
    pub fn saturated(&self) -> bool {
        self.serial()
            || (self.sampled() && self.total_pct >= SATURATED * 100.0 * self.available_cores)
    }

    /// Whether anything was measured for this side.
    pub fn sampled(&self) -> bool {
        self.available_cores > 0.0
    }

    /// One thread busy all the time.
    pub fn serial(&self) -> bool {
        self.busiest_thread_pct >= SATURATED * 100.0
    }

    fn words(&self, who: &str) -> String {
        if !self.sampled() {
            return format!("{who} not sampled");
        }
        format!(
            "{who} {:.0}% of {:.0}% (busiest thread {} at {:.0}%)",
            self.total_pct,
            self.available_cores * 100.0,
            if self.busiest_thread.is_empty() {
                "-"
            } else {
                &self.busiest_thread
            },
            self.busiest_thread_pct
        )
    }
}

/// Which part set a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// The broker's threads were saturated: the figure is the broker's.
    BrokerBound,
    /// loadgen was saturated: the figure is a lower bound for the broker.
    ClientBound,
    /// Neither side nor the machine was saturated, with publishers held to an in-flight
    /// window: the window and the latency set the rate.
    WindowBound,
    /// Neither side nor the machine was saturated, with publishers at a fixed offered rate:
    /// the rate is the one offered, and the latency is the broker's at that load.
    RateBound,
    /// The cores together were saturated (or both sides were): the figure is the machine's.
    MachineBound,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::BrokerBound => "broker-bound",
            Class::ClientBound => "client-bound",
            Class::WindowBound => "window-bound",
            Class::RateBound => "rate-bound",
            Class::MachineBound => "machine-bound",
        }
    }

    /// What a reader should take from a figure of this class.
    pub fn meaning(self) -> &'static str {
        match self {
            Class::BrokerBound => "the broker's limit on this machine",
            Class::ClientBound => "a lower bound for the broker: loadgen ran out first",
            Class::WindowBound => {
                "set by the in-flight window and the latency, not by either side's CPU"
            }
            Class::RateBound => "the offered rate, with CPU to spare on both sides",
            Class::MachineBound => "the machine's: broker and loadgen together used its cores",
        }
    }
}

/// A figure's bottleneck, with the numbers it was judged from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    pub class: Class,
    pub evidence: String,
    pub broker: Usage,
    pub loadgen: Usage,
    /// The machine's cores.
    pub cores: f64,
}

/// How the publishers were paced, which decides what set a figure when nothing was saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// At most a window of messages ahead of the slowest subscriber (closed loop).
    Window,
    /// At a fixed rate whatever the deliveries (open loop).
    Offered,
}

/// Decides what set a figure measured while `broker` and `loadgen` used what they did, on a
/// machine of `cores` cores, with publishers paced by `pacing`.
pub fn classify(broker: &Usage, loadgen: &Usage, cores: f64, pacing: Pacing) -> Bottleneck {
    let together = broker.total_pct + loadgen.total_pct;
    let machine = together >= SATURATED * 100.0 * cores;
    let class = match (broker.saturated(), loadgen.saturated()) {
        // A thread busy all the time is a serial limit more cores would not lift (Redis's
        // and Mosquitto's one thread), even when the cores are full besides.
        (true, false) if broker.serial() => Class::BrokerBound,
        (false, true) if loadgen.serial() => Class::ClientBound,
        _ if machine => Class::MachineBound,
        (true, true) => Class::MachineBound,
        (true, false) => Class::BrokerBound,
        (false, true) => Class::ClientBound,
        (false, false) => match pacing {
            Pacing::Window => Class::WindowBound,
            Pacing::Offered => Class::RateBound,
        },
    };
    let evidence = format!(
        "{}; {}; together {:.0}% of {:.0}%",
        broker.words("broker"),
        loadgen.words("loadgen"),
        together,
        cores * 100.0
    );
    Bottleneck {
        class,
        evidence,
        broker: broker.clone(),
        loadgen: loadgen.clone(),
        cores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(total: f64, busiest: f64, available: f64) -> Usage {
        Usage {
            total_pct: total,
            busiest_thread_pct: busiest,
            busiest_thread: "t".into(),
            threads: 2,
            available_cores: available,
        }
    }

    #[test]
    fn every_class_from_made_up_samples() {
        // Redis-like: one thread pinned at 97%, loadgen half a core, on 2 cores.
        let b = classify(
            &usage(97.0, 97.0, 2.0),
            &usage(55.0, 55.0, 2.0),
            2.0,
            Pacing::Window,
        );
        assert_eq!(b.class, Class::BrokerBound, "{}", b.evidence);
        // loadgen held to a fifth of a core and using all of it.
        let b = classify(
            &usage(40.0, 25.0, 2.0),
            &usage(19.0, 19.0, 0.2),
            2.0,
            Pacing::Window,
        );
        assert_eq!(b.class, Class::ClientBound, "{}", b.evidence);
        // loadgen's one thread busy all the time, with cores to spare.
        let b = classify(
            &usage(60.0, 35.0, 2.0),
            &usage(95.0, 94.0, 2.0),
            2.0,
            Pacing::Window,
        );
        assert_eq!(b.class, Class::ClientBound);
        // The independent client's 1→100 run: broker 88%, client 57%, nothing saturated.
        let b = classify(
            &usage(88.0, 50.0, 2.0),
            &usage(57.0, 57.0, 2.0),
            2.0,
            Pacing::Window,
        );
        assert_eq!(b.class, Class::WindowBound);
        let open = classify(
            &usage(88.0, 50.0, 2.0),
            &usage(57.0, 57.0, 2.0),
            2.0,
            Pacing::Offered,
        );
        assert_eq!(open.class, Class::RateBound);
        assert_eq!(
            b.evidence,
            "broker 88% of 200% (busiest thread t at 50%); loadgen 57% of 200% (busiest \
             thread t at 57%); together 145% of 200%"
        );
        // One broker thread pinned while loadgen fills the other core: the broker's serial
        // limit, not the machine's (Mosquitto at 1→100).
        let b = classify(
            &usage(100.0, 100.0, 2.0),
            &usage(86.0, 45.0, 2.0),
            2.0,
            Pacing::Window,
        );
        assert_eq!(b.class, Class::BrokerBound);
        // Both sides spread over both cores, nearly all of them in use.
        let b = classify(
            &usage(110.0, 60.0, 2.0),
            &usage(75.0, 40.0, 2.0),
            2.0,
            Pacing::Window,
        );
        assert_eq!(b.class, Class::MachineBound);
        // Both saturated within their own limits, the machine not.
        let b = classify(
            &usage(95.0, 95.0, 1.0),
            &usage(20.0, 20.0, 0.2),
            4.0,
            Pacing::Window,
        );
        assert_eq!(b.class, Class::MachineBound);
    }

    #[test]
    fn saturation_is_relative_to_what_is_available() {
        assert!(usage(19.0, 10.0, 0.2).saturated());
        assert!(!usage(19.0, 10.0, 2.0).saturated());
        assert!(
            usage(91.0, 91.0, 2.0).saturated(),
            "one thread busy all the time"
        );
        assert!(usage(185.0, 80.0, 2.0).saturated(), "both cores");
    }

    #[test]
    fn a_side_not_sampled_is_never_what_set_a_figure() {
        let unsampled = Usage::default();
        assert!(!unsampled.saturated());
        let b = classify(&unsampled, &usage(59.0, 59.0, 2.0), 2.0, Pacing::Offered);
        assert_eq!(b.class, Class::RateBound);
        assert!(
            b.evidence
                .starts_with("broker not sampled; loadgen 59% of 200%"),
            "{}",
            b.evidence
        );
    }
}
