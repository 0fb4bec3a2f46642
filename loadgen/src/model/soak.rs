//! What a soak measures (`loadgen soak`): healthy subscribers held for a long time beside
//! clients that misbehave, one row per counted window, and the checks of the verdict.
//!
//! A window's row is two flat records, [`Figures`] (the healthy traffic and the broker) and
//! [`AbuseCounts`] (what the misbehaving clients did and got), so that `soak.csv` is the two
//! side by side and `summary.json` keeps them apart.

use serde::{Deserialize, Serialize};

use super::limit::Limits;
use super::provenance::Provenance;
use super::StepResult;

/// Declares [`AbuseCounts`] from one list of its fields, with [`AbuseCounts::add`] over the
/// same list, so that a counter added to the list is summed too.
macro_rules! abuse_counts {
    ($($(#[doc = $doc:literal])+ $field:ident,)+) => {
        /// What the misbehaving clients did and what they got back, over one window (or,
        /// summed, the run). Every field is a count.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct AbuseCounts {
            $($(#[doc = $doc])+ #[serde(default)] pub $field: u64,)+
        }

        impl AbuseCounts {
            /// Adds `other`'s counts to these.
            pub fn add(&mut self, other: &AbuseCounts) {
                $(self.$field += other.$field;)+
            }
        }
    };
}

abuse_counts! {
    /// Churn connections that connected and had their SUBSCRIBE acknowledged.
    churn_connects,
    /// Churn connections closed by loadgen at the end of their life, as planned.
    churn_disconnects,
    /// Churn connections that failed to connect or subscribe, or that the broker closed.
    churn_failures,
    /// Bursts published (a burst is counted in the window it was sent in).
    bursts_sent,
    /// Of those, bursts that every burst reader received whole: every message, once.
    bursts_complete,
    /// Burst messages the burst readers received, all readers together.
    burst_messages_received,
    /// Burst readers whose connection ended (cut by the broker, or failed): each one is a
    /// failure, since a reader that keeps up must never be cut.
    burst_reader_cuts,
    /// Slow consumers the broker closed (found closed when they looked after their stall).
    slow_cuts,
    /// Of those, the ones that received the broker's ERROR before the close.
    slow_cuts_told,
    /// Slow consumers still connected at the end of their stall (not cut in time).
    slow_uncut,
    /// Malformed lines sent (bad JSON, unknown command, over-long channel, not an object).
    malformed_sent,
    /// ERROR replies the malformed clients received.
    malformed_errors,
    /// Malformed lines that got no ERROR in time.
    malformed_unanswered,
    /// Half frames (a frame's start, then silence) whose connection the broker closed.
    half_frames_closed,
    /// Of those, the ones closed with an ERROR first.
    half_frames_told,
    /// Half frames the broker still held when the malformed client gave up waiting.
    half_frames_held,
    /// Connects (and the acknowledgements they wait for) of misbehaving clients that failed.
    abuser_connect_failures,
}

/// One counted window: the healthy subscribers' traffic, the broker's resources and counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Windows count from 1.
    pub window: usize,
    /// The window's span, in seconds since the run started: from the end of the previous
    /// window (the first: from when the misbehaving clients started) to its own end. Counts
    /// of the misbehaving clients and resources belong to the span.
    pub start_secs: f64,
    pub end_secs: f64,
    /// When the counted traffic began (after the warm-up), and for how long it was counted.
    pub counted_from_secs: f64,
    pub counted_secs: f64,
    /// Healthy subscribers connected at the end of the window.
    pub clients: u64,
    pub published: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Deliveries later than the latency objective.
    pub late: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The broker's largest resident set in the span (MiB), its mean CPU while publishing.
    pub broker_rss_mib: f64,
    pub broker_cpu_pct: f64,
    /// loadgen's processes (the coordinator, which holds the misbehaving clients, and the
    /// workers, which hold the healthy ones): largest resident set in the span (MiB).
    pub loadgen_rss_mib: f64,
    /// From the broker's STATS (hubbub only): connections open at the end of the window,
    /// and over the span: slow consumers cut, and failed accepts (EMFILE: out of descriptors).
    pub broker_connections: u64,
    pub broker_slow_consumers: u64,
    pub broker_accept_errors: u64,
    /// Whether the broker was still running at the end of the window.
    pub broker_alive: bool,
}

/// A window: its figures and what the misbehaving clients did in its span.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub figures: Figures,
    pub abuse: AbuseCounts,
}

/// One burst: when it was sent, how many messages it had, and what each reader received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Burst {
    /// Bursts count from 0, in the order sent.
    pub id: u64,
    /// When its first message was written, in milliseconds since the run started.
    pub at_ms: u64,
    /// Messages in the burst; `sent_whole` is false when the publisher's connection failed
    /// in the middle of writing it.
    pub messages: u64,
    pub sent_whole: bool,
    /// Messages of this burst each burst reader received.
    pub received: Vec<u64>,
}

impl Burst {
    /// Every reader received every message, exactly once.
    pub fn complete(&self) -> bool {
        self.sent_whole && self.received.iter().all(|&n| n == self.messages)
    }
}

/// The soak's clients: healthy subscribers and each misbehaving population.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Populations {
    /// Every client held at once: the healthy subscribers and the misbehaving ones.
    pub clients: u64,
    pub healthy: u64,
    /// Churn connections alive at once, and new ones started per second.
    pub churn: u64,
    pub churn_per_sec: f64,
    pub burst_readers: u64,
    /// Burst publisher: a burst of `burst_messages` messages of `burst_bytes` each, every
    /// `burst_every_secs`.
    pub burst_messages: u64,
    pub burst_bytes: u64,
    pub burst_every_secs: f64,
    pub slow: u64,
    /// How long a slow consumer stops reading before it looks whether it was cut.
    pub slow_stall_secs: f64,
    pub malformed: u64,
}

/// Which check of a soak's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Every healthy subscriber connected and stayed connected.
    Held,
    /// No healthy delivery was lost in any window.
    NoLoss,
    /// Every burst reader received every message of every burst.
    Bursts,
    /// The broker's memory stayed flat ([`RssRule`]).
    FlatRss,
    /// Every window's delivery p99 was within the objective.
    Latency,
}

impl CheckKind {
    /// What the check asks, in words.
    pub fn question(self) -> &'static str {
        match self {
            CheckKind::Held => "every healthy subscriber connected and stayed connected",
            CheckKind::NoLoss => "no healthy delivery lost in any window",
            CheckKind::Bursts => "every burst reader received every burst whole",
            CheckKind::FlatRss => "broker RSS flat",
            CheckKind::Latency => "delivery p99 within the objective in every window",
        }
    }
}

/// One check of the verdict, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub kind: CheckKind,
    pub passed: bool,
    pub evidence: String,
}

/// What "flat" means for the broker's RSS, and the figures it was judged on: the largest RSS
/// of the last third of the windows may exceed the largest of the first third (the first
/// window left out: it holds the connecting) by at most `growth` of it plus `slack_mib`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RssRule {
    pub growth: f64,
    pub slack_mib: f64,
    /// The windows (first and last, counting from 1) of the baseline and of the end.
    pub baseline_windows: (usize, usize),
    pub final_windows: (usize, usize),
    pub baseline_max_mib: f64,
    pub final_max_mib: f64,
    /// `baseline_max_mib × (1 + growth) + slack_mib`.
    pub limit_mib: f64,
}

/// `summary.json` of a soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakSummary {
    /// Every check passed, and the run went to its end.
    pub passed: bool,
    /// The run was stopped by Ctrl-C or SIGTERM; the windows are those measured before.
    pub interrupted: bool,
    pub checks: Vec<Check>,
    pub rss_rule: RssRule,
    pub populations: Populations,
    /// Healthy traffic: messages per second over `channels` channels, each window counted for
    /// `window_secs` after a warm-up, `windows` of them.
    pub rate: f64,
    pub channels: u64,
    pub window_secs: f64,
    pub windows_planned: usize,
    /// From the first connect to the end, in seconds.
    pub wall_secs: f64,
    pub slo_p99_us: u64,
    /// Set when loadgen raised the open-files hard limit (as root) so that the broker it
    /// starts could hold every client: (from, to).
    pub nofile_raised: Option<(u64, u64)>,
    /// How many clients the soak held instead of its default, and why, when the broker's
    /// open-files limit did not allow that many.
    #[serde(default)]
    pub clients_capped: Option<String>,
    pub windows: Vec<Window>,
    pub bursts: Vec<Burst>,
    /// What the rig measured of each window, in full (as the other commands' `steps`).
    pub steps: Vec<StepResult>,
    pub limits: Limits,
    pub command_line: String,
    pub provenance: Option<Provenance>,
}

impl SoakSummary {
    /// The misbehaving clients' counts over the whole run.
    pub fn abuse_total(&self) -> AbuseCounts {
        let mut total = AbuseCounts::default();
        for w in &self.windows {
            total.add(&w.abuse);
        }
        total
    }

    /// The check of `kind`, if it was judged.
    pub fn check(&self, kind: CheckKind) -> Option<&Check> {
        self.checks.iter().find(|c| c.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_field_by_field() {
        let mut a = AbuseCounts {
            churn_connects: 2,
            malformed_errors: 5,
            ..Default::default()
        };
        a.add(&AbuseCounts {
            churn_connects: 1,
            abuser_connect_failures: 4,
            ..Default::default()
        });
        assert_eq!(
            (
                a.churn_connects,
                a.malformed_errors,
                a.abuser_connect_failures
            ),
            (3, 5, 4)
        );
    }

    #[test]
    fn a_burst_is_complete_only_when_every_reader_got_every_message_once() {
        let burst = |received: Vec<u64>, sent_whole| Burst {
            messages: 10,
            sent_whole,
            received,
            ..Default::default()
        };
        assert!(burst(vec![10, 10], true).complete());
        assert!(!burst(vec![10, 9], true).complete());
        assert!(
            !burst(vec![10, 11], true).complete(),
            "a duplicate is no pass"
        );
        assert!(!burst(vec![10, 10], false).complete());
    }
}
